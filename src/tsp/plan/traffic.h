// Bytes per collective per rank for one decoder layer and for the rest of a step, named like the
// engine's CommOp and mesh axes so that they can be compared with its TrafficLedger exactly.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tsp/model/model_config.h"
#include "tsp/plan/collective_bytes.h"
#include "tsp/plan/layout.h"
#include "tsp/plan/workload.h"

namespace tsp::plan {

// One kind of transfer in a phase: `calls` calls of `op` on the `axis` group, with the bytes this
// rank sends and receives summed over the calls.
struct CollectiveTraffic {
  std::string what;           // "attention shard", "K|V of head group", "MLP grad accumulator", ...
  Axis axis = Axis::tsp;
  CollectiveOp op = CollectiveOp::broadcast;
  int64_t group = 1;          // ranks in the group (the axis degree)
  int64_t calls = 0;
  int64_t bytes_sent = 0;
  int64_t bytes_received = 0;
  bool overlaps_compute = false;  // the schedule hides it behind the phase's compute
};
// Bytes of one message of a collective, per peer and call: what a transport's eager limit
// applies to. send, recv, sendrecv: one neighbour per call; broadcast: the whole buffer to or from a parent
// (this rank sends (g - 1) copies in the calls where it is the root and receives one in the
// others); reduce: the whole buffer (a tree passes it whole; the ledger counts the reduce-scatter +
// gather algorithm's blocks, 2 (g - 1) / g buffers per call); all-gather, reduce-scatter,
// all-to-all and all-reduce: the larger direction split over the g - 1 peers.
double message_bytes(const CollectiveTraffic& t);
using PhaseTraffic = std::vector<CollectiveTraffic>;

// Per decoder layer and micro-batch. recompute is empty without recomputation.
struct LayerTraffic {
  PhaseTraffic forward, backward, recompute;
};

// Per step, outside the decoder layers.
struct StepTraffic {
  PhaseTraffic forward;        // per micro-batch: embedding lookup, LM head / loss
  PhaseTraffic backward;       // per micro-batch: LM head and embedding gradients
  PhaseTraffic pipeline;       // per micro-batch: activations and their gradients between stages
  PhaseTraffic gradient_sync;  // once per step: replicated-norm, sp and dp gradient reductions
};

// The rank whose traffic is wanted, by mesh coordinate (results differ between ranks only
// through balanced block splits, the root of a reduction, and the pipeline stage).
struct RankCoords {
  int64_t dp = 0, pp = 0, sp = 0, tp = 0, tsp = 0;
  int64_t on(Axis axis) const;
};

// Throws InvalidArgument when the layout does not divide the model or the sequence
// (divisibility_problems) or the rank is outside the mesh.
LayerTraffic layer_traffic(const model::ModelConfig& config, const Workload& work,
                           const Layout& layout, const RankCoords& rank = {});
StepTraffic step_traffic(const model::ModelConfig& config, const Workload& work,
                         const Layout& layout, const RankCoords& rank = {});

struct TrafficTotals {
  int64_t calls = 0;
  int64_t bytes_sent = 0;
  int64_t bytes_received = 0;
  TrafficTotals& operator+=(const CollectiveTraffic& t);
};
TrafficTotals totals(const PhaseTraffic& phase);
TrafficTotals totals(const PhaseTraffic& phase, Axis axis);
TrafficTotals totals(const PhaseTraffic& phase, Axis axis, CollectiveOp op);
// A whole micro-batch of one stage: layers * (forward + backward + recompute) + the step's
// forward/backward/pipeline traffic; gradient_sync is per step and not included.
TrafficTotals micro_batch_totals(const LayerTraffic& layer, const StepTraffic& step,
                                 int64_t layers);

}  // namespace tsp::plan
