// Traffic ledger: per communication operation, the bytes this rank sent and received and the number
// of calls, on one communicator (one mesh axis). Layouts are compared on these numbers, so they
// follow one documented convention (docs/running.md, "Traffic ledger"), which assumes the
// bandwidth-optimal algorithm and counts the bytes that actually travel on the wire:
//   broadcast       non-root receives B; root sends (D-1)*B
//   reduce          every rank sends and receives the reduce-scatter part: (D-1)/D of the input
//   all_reduce      2(D-1)/D of the buffer sent and received per rank
//   all_gather      (D-1)/D of the result received; own block sent to each of the D-1 others
//   reduce_scatter  (D-1)/D of the input sent; D-1 contributions to own block received
//   all_to_all      every block that leaves (sent) or arrives (received), self block excluded
//   send / recv     exactly the message; sendrecv (ring shift) both, in one entry
// with fractions made exact by the balanced block split of comm/traffic_ledger.cpp. bf16
// reductions travel as f32 (4 bytes per element), everything else at its storage size.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace tsp::comm {

enum class CommOp : uint8_t {
  broadcast,
  reduce,
  all_reduce,
  all_gather,
  reduce_scatter,
  all_to_all,
  send,
  recv,
  sendrecv,  // one call that both sends and receives (ring shift, exchanges)
  barrier,
};
inline constexpr int kNumCommOps = 10;

std::string_view comm_op_name(CommOp op);

struct TrafficCounters {
  int64_t calls = 0;
  int64_t bytes_sent = 0;
  int64_t bytes_received = 0;

  TrafficCounters& operator+=(const TrafficCounters& o) {
    calls += o.calls;
    bytes_sent += o.bytes_sent;
    bytes_received += o.bytes_received;
    return *this;
  }
  friend bool operator==(const TrafficCounters&, const TrafficCounters&) = default;
};

// Bytes one rank sends and receives in one call, under the ledger convention.
struct TrafficBytes {
  int64_t sent = 0;
  int64_t received = 0;
  friend bool operator==(const TrafficBytes&, const TrafficBytes&) = default;
};

// The convention as pure functions (the collectives record exactly these; tests check them).
// `elem_bytes` is the wire size of one element; `D` the group size, `rank` this rank in the group.
namespace traffic {
// Block `i` of `n` elements split over D ranks as evenly as possible (the first n % D blocks get
// one element more): the split used to make "(D-1)/D of the buffer" exact for any n.
int64_t balanced_block(int64_t n, int D, int i);
TrafficBytes broadcast(int64_t n, int64_t elem_bytes, int D, int rank, int root);
TrafficBytes reduce(int64_t n, int64_t elem_bytes, int D, int rank);
TrafficBytes all_reduce(int64_t n, int64_t elem_bytes, int D, int rank);
// counts[i]: elements of rank i's block (all-gather input on rank i / reduce-scatter output).
TrafficBytes all_gather(std::span<const int64_t> counts, int64_t elem_bytes, int rank);
TrafficBytes reduce_scatter(std::span<const int64_t> counts, int64_t elem_bytes, int rank);
// send_counts[j]: elements this rank sends to rank j; recv_counts[j]: elements it receives from j.
TrafficBytes all_to_all(std::span<const int64_t> send_counts, std::span<const int64_t> recv_counts,
                        int64_t elem_bytes, int rank);
}  // namespace traffic

// Counters of one communicator. Not thread safe: a communicator is driven by one thread.
class TrafficLedger {
 public:
  void record(CommOp op, TrafficBytes bytes) {
    TrafficCounters& c = counters_[static_cast<int>(op)];
    c.calls += 1;
    c.bytes_sent += bytes.sent;
    c.bytes_received += bytes.received;
  }
  const TrafficCounters& get(CommOp op) const { return counters_[static_cast<int>(op)]; }
  TrafficCounters total() const;
  void reset() { counters_ = {}; }
  // One line per operation that was called: "<label> all_reduce: 3 calls, sent 1.50 MiB, ...".
  std::string report(std::string_view label) const;

 private:
  std::array<TrafficCounters, kNumCommOps> counters_{};
};

}  // namespace tsp::comm
