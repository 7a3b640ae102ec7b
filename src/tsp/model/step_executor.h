// The one schedule of a training or evaluation step: embedding, the blocks in order, head and
// loss, then the backward in reverse with the recompute policy. Layouts plug in as a StepStrategy.
#pragma once

#include <cstdint>

#include "tsp/core/tensor.h"

namespace tsp::model {

// Loss of a step (or of this rank's share of it).
struct LossSum {
  double loss_sum = 0;  // sum over valid tokens of -log p(target)
  int64_t n_valid = 0;  // tokens whose target != kIgnoreIndex
  double mean() const { return n_valid ? loss_sum / static_cast<double>(n_valid) : 0.0; }
};

// What a placement of the model (single rank, TSP, TP+SP, FSDP over SP, ...) supplies for ONE
// step on one batch: it is built per step from the batch (token placement, per-step contexts) and
// owns the per-layer activations it saves. Its hooks never allocate the residual stream: the
// executor owns x_0..x_L, so every layout gets the same liveness (and activation peak).
// Single rank is the degree-1 strategy (model/transformer.cpp).
class StepStrategy {
 public:
  virtual ~StepStrategy() = default;

  virtual int64_t num_layers() const = 0;

  // x_0 [T_local, h] (MemCategory::activations) for this rank's tokens.
  virtual Tensor embed_forward() = 0;
  // Accumulates the embedding's gradient from dx [T_local, h] f32 (the residual stream's).
  virtual void embed_backward(const Tensor& dx) = 0;

  // A pass over the layers begins (backward: the layers come in reverse order) / ends. Layouts
  // that gather weights per layer (FSDP) set up and tear down their prefetch here.
  virtual void begin_layers(bool backward) { (void)backward; }
  virtual void end_layers() {}
  // Layer l's weights are needed for the calls that follow (its forward, or its recompute and
  // backward); called once per layer and pass, in the pass's order.
  virtual void acquire_layer(int64_t layer) { (void)layer; }

  // y = block_l(x) into `y` (same shape and dtype as x), saving the activations its backward
  // needs. With `y` undefined: only the activations are recomputed (the recompute policy).
  virtual void block_forward(int64_t layer, const Tensor& x, const Tensor& y) = 0;
  // Frees what block_forward saved for `layer`.
  virtual void release_activations(int64_t layer) = 0;
  // dx (f32, in place): the residual stream's gradient at block l's output becomes the one at its
  // input; the weights' gradients are accumulated. Needs block_forward's activations of `layer`.
  virtual void block_backward(int64_t layer, const Tensor& x, Tensor& dx) = 0;

  // Final norm + LM head + cross-entropy on x_L, loss only (x_L may be overwritten).
  virtual LossSum head_forward(Tensor& x_last) = 0;
  // The same with the backward of grad_scale * loss: returns dx = d(loss)/d(x_L) [T_local, h] f32
  // (MemCategory::workspace) and accumulates the head's and final norm's gradients.
  virtual LossSum head_forward_backward(const Tensor& x_last, float grad_scale, Tensor& dx) = 0;
};

// Loss of the batch the strategy was built for; activations are freed as soon as they are used.
LossSum run_forward(StepStrategy& step);

// Forward then backward: keeps the residual stream x_0..x_L and (unless `recompute`) every
// block's activations through the forward; with `recompute` each block's forward is redone just
// before its backward. Gradients of grad_scale * loss are accumulated by the strategy.
LossSum run_forward_backward(StepStrategy& step, bool recompute, float grad_scale);

}  // namespace tsp::model
