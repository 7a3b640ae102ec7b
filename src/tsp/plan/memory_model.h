// Per-device peak memory of a training step by the engine's MemCategory, for every layout; the
// activations mirror model::predicted_activation_peak_bytes on the layout's local tokens and heads.
#pragma once

#include <array>
#include <cstdint>

#include "tsp/core/memory.h"
#include "tsp/model/model_config.h"
#include "tsp/plan/layout.h"
#include "tsp/plan/workload.h"

namespace tsp::plan {

// Peak bytes per category on one device (each category's own peak; their sum bounds the total
// peak from above, since e.g. the LM head's and a block's workspaces never coexist).
struct MemoryEstimate {
  std::array<int64_t, kNumMemCategories> bytes{};
  int64_t stage = 0;  // the pipeline stage described (memory() returns the heaviest)

  int64_t& operator[](MemCategory c) { return bytes[static_cast<size_t>(c)]; }
  int64_t operator[](MemCategory c) const { return bytes[static_cast<size_t>(c)]; }
  int64_t total() const;
};

// The heaviest pipeline stage's memory (rank 0 of its groups). Throws InvalidArgument when the
// layout does not divide the model or the sequence.
MemoryEstimate memory(const model::ModelConfig& config, const Workload& work, const Layout& layout);
MemoryEstimate memory_of_stage(const model::ModelConfig& config, const Workload& work,
                               const Layout& layout, int64_t stage);

// The activations category alone: the residual stream x_0..x_L (t h e each), every block's saved
// tensors (t (h + qkv + attn + 2F) e + 4 H t, head-sharded widths divided by tp) or only one
// block's with recomputation, and the head's f32 lse (4 t), on the t local tokens; times the
// micro-batches in flight on this stage (1F1B: min(pp - stage, micro_batches)).
int64_t activation_peak_bytes(const model::ModelConfig& config, const Workload& work,
                              const Layout& layout, int64_t stage = 0);

}  // namespace tsp::plan
