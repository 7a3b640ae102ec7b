// The ledger formulas of docs/running.md, one function per collective.
#include "tsp/plan/collective_bytes.h"

#include <numeric>

#include "tsp/core/check.h"

namespace tsp::plan {

std::string_view collective_op_name(CollectiveOp op) {
  switch (op) {
    case CollectiveOp::broadcast: return "broadcast";
    case CollectiveOp::reduce: return "reduce";
    case CollectiveOp::all_reduce: return "all_reduce";
    case CollectiveOp::all_gather: return "all_gather";
    case CollectiveOp::reduce_scatter: return "reduce_scatter";
    case CollectiveOp::all_to_all: return "all_to_all";
    case CollectiveOp::send: return "send";
    case CollectiveOp::recv: return "recv";
    case CollectiveOp::sendrecv: return "sendrecv";
  }
  return "?";
}

namespace {

void check_group(int64_t group, int64_t rank) {
  TSP_CHECK(group >= 1 && rank >= 0 && rank < group, "collective: rank ", rank,
            " outside a group of ", group);
}

int64_t sum(std::span<const int64_t> v) { return std::accumulate(v.begin(), v.end(), int64_t{0}); }

}  // namespace

int64_t balanced_block(int64_t n, int64_t group, int64_t rank) {
  check_group(group, rank);
  return n / group + (rank < n % group ? 1 : 0);
}

Bytes ledger_broadcast(int64_t buffer_bytes, int64_t group, bool is_root) {
  check_group(group, 0);
  if (is_root) return {.sent = (group - 1) * buffer_bytes, .received = 0};
  return {.sent = 0, .received = buffer_bytes};
}

Bytes ledger_reduce(int64_t n, int64_t wire, int64_t group, int64_t rank) {
  const int64_t c = balanced_block(n, group, rank);
  return {.sent = (n - c) * wire, .received = (group - 1) * c * wire};
}

Bytes ledger_all_reduce(int64_t n, int64_t wire, int64_t group, int64_t rank) {
  const int64_t c = balanced_block(n, group, rank);
  const int64_t b = (n + (group - 2) * c) * wire;
  return {.sent = b, .received = b};
}

Bytes ledger_all_gather(std::span<const int64_t> counts, int64_t wire, int64_t rank) {
  const auto g = static_cast<int64_t>(counts.size());
  check_group(g, rank);
  const int64_t c = counts[static_cast<size_t>(rank)];
  return {.sent = (g - 1) * c * wire, .received = (sum(counts) - c) * wire};
}

Bytes ledger_all_gather(int64_t count_each, int64_t wire, int64_t group) {
  check_group(group, 0);
  const int64_t b = (group - 1) * count_each * wire;
  return {.sent = b, .received = b};
}

Bytes ledger_reduce_scatter(std::span<const int64_t> counts, int64_t wire, int64_t rank) {
  const auto g = static_cast<int64_t>(counts.size());
  check_group(g, rank);
  const int64_t c = counts[static_cast<size_t>(rank)];
  return {.sent = (sum(counts) - c) * wire, .received = (g - 1) * c * wire};
}

Bytes ledger_reduce_scatter(int64_t count_each, int64_t wire, int64_t group) {
  return ledger_all_gather(count_each, wire, group);  // same numbers when the split is exact
}

Bytes ledger_all_to_all(std::span<const int64_t> send_counts, std::span<const int64_t> recv_counts,
                        int64_t wire, int64_t rank) {
  TSP_CHECK(send_counts.size() == recv_counts.size(), "all_to_all: ", send_counts.size(),
            " send counts but ", recv_counts.size(), " receive counts");
  check_group(static_cast<int64_t>(send_counts.size()), rank);
  const auto r = static_cast<size_t>(rank);
  return {.sent = (sum(send_counts) - send_counts[r]) * wire,
          .received = (sum(recv_counts) - recv_counts[r]) * wire};
}

Bytes ledger_sendrecv(int64_t message_bytes, int64_t group) {
  check_group(group, 0);
  if (group == 1) return {};
  return {.sent = message_bytes, .received = message_bytes};
}

}  // namespace tsp::plan
