// What one training step processes and in which precision: micro-batch, sequence length,
// gradient-accumulation count, bytes per element of every kind of state, and recomputation.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tsp/model/model_config.h"

namespace tsp::plan {

// Bytes per element of each kind of state. The engine's rules (docs/running.md): weights and
// activations share one storage dtype; gradients are f32; AdamW keeps two f32 moments and, for
// bf16 weights, f32 masters; bf16 reductions travel as f32 (reduce_bytes = 4).
struct Precision {
  std::string name;
  int64_t weight_bytes = 4;      // working copy of the weights; what weight broadcasts/gathers move
  int64_t activation_bytes = 4;  // saved activations, residual stream, K/V exchanges
  int64_t grad_bytes = 4;        // gradient accumulators (and gradients on the wire)
  int64_t master_bytes = 0;      // fp32 master weights (0 when the weights are f32 themselves)
  int64_t moment_bytes = 4;      // each of AdamW's two moments
  int64_t reduce_bytes = 4;      // wire size of all-reduces of activations and of their gradients
                                 // (TP); the engine reduces in f32, Megatron in bf16

  int64_t optimizer_bytes() const { return master_bytes + 2 * moment_bytes; }
  // True when matmuls run in bf16 (selects the cluster's bf16 throughput).
  bool bf16_math() const { return weight_bytes == 2; }
};

// "bf16": bf16 weights and activations, f32 grads, f32 AdamW masters and moments (18 B/param).
// "fp32" (or "f32"): everything f32, the weights are the masters (16 B/param).
// Throws InvalidArgument listing the known names.
Precision precision_preset(std::string_view name);
std::vector<std::string> precision_preset_names();

enum class Recompute { none, full };
std::string_view recompute_name(Recompute r);

// One optimizer step of one model replica: `micro_batches` micro-batches of `batch` sequences of
// `seq` tokens, i.e. batch * seq tokens per micro-batch per replica (a dp rank's share).
struct Workload {
  int64_t batch = 1;          // B: sequences per micro-batch per model replica
  int64_t seq = 0;            // S: tokens per sequence
  int64_t micro_batches = 1;  // gradient-accumulation steps (fills the pipeline when pp > 1)
  Precision precision = precision_preset("bf16");
  Recompute recompute = Recompute::none;
  int64_t vocab_chunk = 4096;  // cross-entropy vocabulary chunk (as TransformerOptions)

  int64_t tokens() const { return batch * seq; }  // T = B * S of one micro-batch
};

// Throws InvalidArgument unless every size is positive and the byte sizes are 2, 4 or 0 (masters).
void validate(const Workload& w);

// The planner's formulas multiply tokens, widths, layers, micro-batches and parameters in int64.
// This checks (with checked arithmetic) a bound of 16x the largest such quantity: tokens x
// (every per-token width of a layer and the head) x 4 bytes x (layers + 2) x micro-batches, plus
// parameters x 16 bytes x (micro-batches + 1) (weights and gradients moved per micro-batch).
// Below it every memory, traffic and byte count of the planner fits; above it SizeOverflow:
// "batch B x seq S on this model: the activation bytes overflow 64-bit; the largest seq at batch
// B with M micro-batches is N" (or that no seq fits at this batch).
void validate_sizes(const model::ModelConfig& config, const Workload& w);
// The largest seq that validate_sizes accepts at w's batch and micro-batches (0: none).
int64_t largest_plannable_seq(const model::ModelConfig& config, const Workload& w);

}  // namespace tsp::plan
