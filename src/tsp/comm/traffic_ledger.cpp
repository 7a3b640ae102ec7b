// The ledger convention as arithmetic, and the ledger's report.
#include "tsp/comm/traffic_ledger.h"

#include <cstdio>

#include "tsp/core/check.h"

namespace tsp::comm {

std::string_view comm_op_name(CommOp op) {
  switch (op) {
    case CommOp::broadcast: return "broadcast";
    case CommOp::reduce: return "reduce";
    case CommOp::all_reduce: return "all_reduce";
    case CommOp::all_gather: return "all_gather";
    case CommOp::reduce_scatter: return "reduce_scatter";
    case CommOp::all_to_all: return "all_to_all";
    case CommOp::send: return "send";
    case CommOp::recv: return "recv";
    case CommOp::sendrecv: return "sendrecv";
    case CommOp::barrier: return "barrier";
  }
  return "?";
}

namespace traffic {

int64_t balanced_block(int64_t n, int D, int i) {
  TSP_ASSERT(D >= 1 && i >= 0 && i < D, "balanced_block(", n, ", ", D, ", ", i, ")");
  return n / D + (i < n % D ? 1 : 0);
}

TrafficBytes broadcast(int64_t n, int64_t elem_bytes, int D, int rank, int root) {
  const int64_t b = n * elem_bytes;
  return rank == root ? TrafficBytes{(D - 1) * b, 0} : TrafficBytes{0, b};
}

// Reduce = the reduce-scatter half of a bandwidth-optimal reduce (the spec's §5.1 convention):
// each rank ships (D-1)/D of its input and receives D-1 contributions to its own block.
TrafficBytes reduce(int64_t n, int64_t elem_bytes, int D, int rank) {
  const int64_t own = balanced_block(n, D, rank);
  return {(n - own) * elem_bytes, (D - 1) * own * elem_bytes};
}

// All-reduce = reduce-scatter + all-gather on the balanced blocks: n + (D-2) * own elements each
// way, which is 2(D-1)/D * n when D divides n.
TrafficBytes all_reduce(int64_t n, int64_t elem_bytes, int D, int rank) {
  const int64_t own = balanced_block(n, D, rank);
  const int64_t elems = (n - own) + (D - 1) * own;
  return {elems * elem_bytes, elems * elem_bytes};
}

namespace {
int64_t sum_except(std::span<const int64_t> counts, int rank) {
  int64_t s = 0;
  for (size_t i = 0; i < counts.size(); ++i)
    if (static_cast<int>(i) != rank) s += counts[i];
  return s;
}
}  // namespace

TrafficBytes all_gather(std::span<const int64_t> counts, int64_t elem_bytes, int rank) {
  const int64_t D = static_cast<int64_t>(counts.size());
  return {(D - 1) * counts[rank] * elem_bytes, sum_except(counts, rank) * elem_bytes};
}

TrafficBytes reduce_scatter(std::span<const int64_t> counts, int64_t elem_bytes, int rank) {
  const int64_t D = static_cast<int64_t>(counts.size());
  return {sum_except(counts, rank) * elem_bytes, (D - 1) * counts[rank] * elem_bytes};
}

TrafficBytes all_to_all(std::span<const int64_t> send_counts, std::span<const int64_t> recv_counts,
                        int64_t elem_bytes, int rank) {
  return {sum_except(send_counts, rank) * elem_bytes, sum_except(recv_counts, rank) * elem_bytes};
}

}  // namespace traffic

TrafficCounters TrafficLedger::total() const {
  TrafficCounters t;
  for (const TrafficCounters& c : counters_) t += c;
  return t;
}

std::string TrafficLedger::report(std::string_view label) const {
  std::string out;
  char line[256];
  for (int i = 0; i < kNumCommOps; ++i) {
    const TrafficCounters& c = counters_[i];
    if (c.calls == 0) continue;
    std::snprintf(line, sizeof line, "%.*s %.*s: %lld calls, sent %.3f MiB, received %.3f MiB\n",
                  static_cast<int>(label.size()), label.data(),
                  static_cast<int>(comm_op_name(static_cast<CommOp>(i)).size()),
                  comm_op_name(static_cast<CommOp>(i)).data(), static_cast<long long>(c.calls),
                  c.bytes_sent / 1048576.0, c.bytes_received / 1048576.0);
    out += line;
  }
  return out;
}

}  // namespace tsp::comm
