// Bytes one rank sends and receives in one collective call, by the engine's traffic-ledger
// convention (docs/running.md, "Traffic ledger"): bandwidth-optimal algorithms, exact block splits.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace tsp::plan {

// The engine's comm::CommOp names (barrier aside, which moves no bytes).
enum class CollectiveOp : uint8_t {
  broadcast,
  reduce,
  all_reduce,
  all_gather,
  reduce_scatter,
  all_to_all,
  send,
  recv,
  sendrecv,
};
inline constexpr int kNumCollectiveOps = 9;
std::string_view collective_op_name(CollectiveOp op);  // "broadcast", ..., "sendrecv"

struct Bytes {
  int64_t sent = 0;
  int64_t received = 0;
  Bytes& operator+=(const Bytes& o) {
    sent += o.sent;
    received += o.received;
    return *this;
  }
  friend Bytes operator*(int64_t k, Bytes b) { return {k * b.sent, k * b.received}; }
  friend bool operator==(const Bytes&, const Bytes&) = default;
};

// Rank r's block of the balanced split of n elements over g ranks: n / g, plus one for the first
// n % g ranks.
int64_t balanced_block(int64_t n, int64_t group, int64_t rank);

// One call on a group of `group` ranks, seen from rank `rank`. `wire` is bytes per element.
// broadcast of a buffer of `buffer_bytes`: the root sends (g-1) B and receives 0; others receive B.
Bytes ledger_broadcast(int64_t buffer_bytes, int64_t group, bool is_root);
// reduce to a root of n elements: receives (g-1) c_r w, sends (n - c_r) w (the reduce-scatter
// half, whatever the root).
Bytes ledger_reduce(int64_t n, int64_t wire, int64_t group, int64_t rank);
// all-reduce of n elements: sends and receives (n + (g-2) c_r) w.
Bytes ledger_all_reduce(int64_t n, int64_t wire, int64_t group, int64_t rank);
// all-gather with per-rank counts c_i: receives (sum c - c_r) w, sends (g-1) c_r w.
Bytes ledger_all_gather(std::span<const int64_t> counts, int64_t wire, int64_t rank);
Bytes ledger_all_gather(int64_t count_each, int64_t wire, int64_t group);
// reduce-scatter with per-rank result counts c_i (input sum c): receives (g-1) c_r w, sends
// (sum c - c_r) w.
Bytes ledger_reduce_scatter(std::span<const int64_t> counts, int64_t wire, int64_t rank);
Bytes ledger_reduce_scatter(int64_t count_each, int64_t wire, int64_t group);
// all-to-all: sends the counts addressed to others, receives the counts from others.
Bytes ledger_all_to_all(std::span<const int64_t> send_counts, std::span<const int64_t> recv_counts,
                        int64_t wire, int64_t rank);
// Point to point (send, recv or a ring shift): exactly the message; 0 on a group of one (a shift
// to oneself).
Bytes ledger_sendrecv(int64_t message_bytes, int64_t group);

}  // namespace tsp::plan
