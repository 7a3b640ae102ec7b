// The one schedule of a training or evaluation step: embedding, the blocks in order, head and
// loss, then the backward in reverse with the recompute policy. Layouts plug in as a StepStrategy.
#pragma once

#include <cstdint>
#include <vector>

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
  // The residual stream on this rank: [T_local, h] in the activation dtype (what a pipeline stage
  // receives from the previous one; its gradient travels back in f32).
  virtual Shape residual_shape() const = 0;
  virtual DType residual_dtype() const = 0;

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

// The layers a pipeline stage runs, [first_layer, end_layer): the embedding belongs to the stage
// that starts at layer 0, the final norm, LM head and loss to the one that ends at L. The whole
// model is one stage (whole_model); a pipeline cuts [0, L) into consecutive stages.
struct StageRange {
  int64_t first_layer = 0;
  int64_t end_layer = 0;

  static StageRange whole_model(int64_t num_layers) { return {0, num_layers}; }
  static StageRange whole_model(const StepStrategy& step) { return whole_model(step.num_layers()); }
  bool embeds() const { return first_layer == 0; }
  bool has_head(int64_t num_layers) const { return end_layer == num_layers; }
  bool has_head(const StepStrategy& step) const { return has_head(step.num_layers()); }
  bool holds_layer(int64_t layer) const { return first_layer <= layer && layer < end_layer; }
  int64_t layers() const { return end_layer - first_layer; }
  friend bool operator==(const StageRange&, const StageRange&) = default;
};

// One micro-batch's forward and backward through one stage: the schedule below written once, so
// a whole step (run_forward_backward) and a pipeline stage's share of it run the same code. The
// pass owns the stage's residual stream x_first..x_end between its forward and its backward (a
// pipeline keeps several passes alive, one per micro-batch in flight); the strategy owns the
// blocks' saved activations. `step` must outlive the pass.
class StagePass {
 public:
  // Checks 0 <= first_layer < end_layer <= num_layers. Allocates nothing.
  StagePass(StepStrategy& step, StageRange range, bool recompute, float grad_scale);

  // x_in: the previous stage's output x_first [T_local, h] (undefined on the embedding stage,
  // which embeds). Returns x_end for the next stage, or, on the head's stage, undefined: there
  // the loss and the gradient at x_end are computed at once (loss()).
  Tensor forward(Tensor x_in);
  // dx_out: d(grad_scale * loss)/d(x_end) f32 from the next stage (undefined on the head's
  // stage). Returns d/d(x_first) for the previous stage, or, on the embedding stage, undefined:
  // it went into the embedding's gradient. After forward(); once.
  Tensor backward(Tensor dx_out);

  // The loss computed by forward() on the head's stage (zero elsewhere).
  const LossSum& loss() const { return loss_; }

 private:
  StepStrategy& step_;
  StageRange range_;
  bool recompute_;
  float grad_scale_;
  std::vector<Tensor> xs_;  // x_first..x_end (index l - first_layer)
  Tensor dx_head_;          // f32 gradient at x_end, on the head's stage
  LossSum loss_;
  bool forward_done_ = false, backward_done_ = false;
};

// Forward only through one stage: x_in as for StagePass::forward (undefined on the embedding
// stage); returns x_end (undefined on the head's stage, where `loss` receives the loss).
// Activations are freed as soon as they are used.
Tensor run_stage_forward(StepStrategy& step, StageRange range, Tensor x_in, LossSum& loss);

// Loss of the batch the strategy was built for; activations are freed as soon as they are used.
LossSum run_forward(StepStrategy& step);

// Forward then backward: keeps the residual stream x_0..x_L and (unless `recompute`) every
// block's activations through the forward; with `recompute` each block's forward is redone just
// before its backward. Gradients of grad_scale * loss are accumulated by the strategy.
LossSum run_forward_backward(StepStrategy& step, bool recompute, float grad_scale);

}  // namespace tsp::model
