// The single-rank Llama model: forward and backward of the whole model in logical (unsharded)
// shapes on the kernel layer. The reference every parallel layout is tested against.
#pragma once

#include <cstdint>
#include <memory>

#include "tsp/core/tensor.h"
#include "tsp/model/model_config.h"
#include "tsp/model/model_weights.h"
#include "tsp/model/step_executor.h"
#include "tsp/model/token_batch.h"  // kIgnoreIndex

namespace tsp::model {

struct TransformerOptions {
  // Activation storage dtype; must equal the weights' dtype (f32, or bf16 with fp32 math inside
  // every kernel and fp32 gradients).
  DType dtype = DType::f32;
  // Full activation recomputation: keep only each block's input during the forward, redo the
  // block's forward in the backward.
  bool recompute = false;
  int64_t vocab_chunk = 4096;  // cross-entropy vocabulary chunk (never [tokens, V] logits)
};

// Count of targets != kIgnoreIndex; the trainer sums it over micro-batches (and ranks) first so
// that every gradient is scaled by 1 / n_valid of the whole global batch.
int64_t count_valid_targets(const Tensor& targets);

// Peak bytes of MemCategory::activations during forward_backward on [batch, seq] tokens (exact
// for this implementation; docs/model.md derives it): the residual stream x_0..x_L, plus every
// block's saved tensors (or only one block's with recompute), plus the head's [T] f32 lse.
int64_t predicted_activation_peak_bytes(const ModelConfig& config,
                                        const TransformerOptions& options, int64_t batch,
                                        int64_t seq);

class Transformer {
 public:
  Transformer(const ModelConfig& config, const TransformerOptions& options = {});

  const ModelConfig& config() const { return config_; }
  const TransformerOptions& options() const { return options_; }

  // tokens, targets: [B, S] i32; targets may hold kIgnoreIndex. S <= max_position_embeddings.
  // Loss only (evaluation); activations are freed as soon as they are used.
  LossSum forward(const ModelWeights& w, const Tensor& tokens, const Tensor& targets);

  // Forward + backward. Gradients of (grad_scale * loss_sum) are ACCUMULATED (+=) into `grads`
  // (f32, same config), so micro-batches accumulate; pass grad_scale = 1 / n_valid_global.
  LossSum forward_backward(const ModelWeights& w, const Tensor& tokens, const Tensor& targets,
                           ModelWeights& grads, float grad_scale);

  // The step strategy of one batch (checked as forward / forward_backward check it; grads null
  // for a forward-only step), for running a range of the layers: a pipeline stage's StagePass or
  // run_stage_forward. w, tokens, targets and grads must outlive it.
  std::unique_ptr<StepStrategy> step(const ModelWeights& w, const Tensor& tokens,
                                     const Tensor& targets, ModelWeights* grads) const;

 private:
  ModelConfig config_;
  TransformerOptions options_;
};

}  // namespace tsp::model
