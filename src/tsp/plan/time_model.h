// Predicted step time: compute from FLOPs and the cluster's achieved matmul rate, communication
// from each collective's bytes over the link it crosses, overlapped where the schedule allows it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tsp/model/model_config.h"
#include "tsp/plan/cluster.h"
#include "tsp/plan/layout.h"
#include "tsp/plan/workload.h"

namespace tsp::plan {

// FLOPs one rank performs per micro-batch.
struct Flops {
  double forward = 0, backward = 0, recompute = 0;
};
// One decoder layer: matmuls 2 * matrix_params * T plus causal attention 2 * B * S^2 * qd
// (half of 4 B S^2 qd), divided by the model-parallel degree; backward 2x, recompute 1x forward.
Flops layer_flops(const model::ModelConfig& config, const Workload& work, const Layout& layout);
// The attention's part of layer_flops (2 B S^2 qd / model-parallel forward, the same multiples),
// timed at the cluster's attention rate; the rest at its matmul rate.
Flops layer_attention_flops(const model::ModelConfig& config, const Workload& work, const Layout& layout);
// LM head: 2 V h T / model-parallel forward; backward 3x (the chunked cross-entropy recomputes the
// logits, then dX and dW).
Flops head_flops(const model::ModelConfig& config, const Workload& work, const Layout& layout);

// The model FLOPs of one forward and backward pass of the whole model (no model parallelism) over
// one micro-batch: the numerator of MFU. Layers: forward + backward (= 3x layer_flops' forward);
// head: forward, dX and dW (3x head_flops' forward). Recomputation is not counted: neither
// --recompute's second layer forward nor the cross-entropy's recomputed logits (model FLOPs, not
// hardware FLOPs). docs/training.md derives it.
double model_flops(const model::ModelConfig& config, const Workload& work);

struct TimeTerm {
  std::string name;
  double seconds = 0;
};

struct StepTime {
  double step_s = 0;
  double tokens_per_s = 0;
  int64_t tokens_per_step = 0;  // dp * micro_batches * B * S
  // Per layer and micro-batch on the slowest stage, communication included as scheduled.
  double layer_forward_s = 0, layer_backward_s = 0, layer_recompute_s = 0;
  // Additive parts of step_s: "compute", "<axis> comm (exposed)", "pipeline bubble",
  // "gradient sync (exposed)"; dominant names the largest.
  std::vector<TimeTerm> terms;
  std::string dominant;
  // Communication per step if nothing overlapped, per axis ("tsp", "tp", ...): the raw cost.
  std::vector<TimeTerm> comm_by_axis;
};

// Throws InvalidArgument when the layout does not divide the model or the sequence.
StepTime step_time(const model::ModelConfig& config, const Workload& work, const Layout& layout,
                   const Cluster& cluster);

}  // namespace tsp::plan
