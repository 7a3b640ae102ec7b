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

  // The head: the executor applies the final RMSNorm (weight final_norm_weight(), epsilon
  // rms_norm_eps()) to x_L and its backward; the strategy supplies the LM head and loss on the
  // normed nf [T_local, h] and where the norm's gradient goes.
  virtual double rms_norm_eps() const = 0;
  // The final norm's gain [h] for this step (FSDP: all-gathered).
  virtual Tensor final_norm_weight() = 0;
  // LM head + cross-entropy of this rank's targets: the loss sum, with the per-token log-sum-exp
  // written to lse [T_local] f32 for loss_backward.
  virtual LossSum loss_forward(const Tensor& nf, const Tensor& lse) = 0;
  // After loss_forward on the same nf and lse: dx (f32 [T_local, h], zeros) += d(grad_scale *
  // loss)/d(nf) and the head's gradient is accumulated.
  virtual void loss_backward(const Tensor& nf, const Tensor& lse, float grad_scale, const Tensor& dx) = 0;
  // The f32 [h] tensor the final norm's gradient is accumulated into, and what happens to it after
  // (FSDP: a comm buffer reduce-scattered to the owner).
  virtual Tensor final_norm_grad() = 0;
  virtual void final_norm_grad_done(const Tensor& grad) { (void)grad; }
};

// Loss of the batch the strategy was built for; activations are freed as soon as they are used.
LossSum run_forward(StepStrategy& step);

// Forward then backward: keeps the residual stream x_0..x_L and (unless `recompute`) every
// block's activations through the forward; with `recompute` each block's forward is redone just
// before its backward. Gradients of grad_scale * loss are accumulated by the strategy.
LossSum run_forward_backward(StepStrategy& step, bool recompute, float grad_scale);

}  // namespace tsp::model
