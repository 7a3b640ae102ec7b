// run_forward / run_forward_backward: the step schedule every layout shares; the order of the
// allocations and releases here is what the activation-peak formulas of every layout assume.
#include "tsp/model/step_executor.h"

#include <utility>
#include <vector>

#include "tsp/core/check.h"
#include "tsp/kernels/rmsnorm.h"

namespace tsp::model {

namespace {

kernels::RmsNormOptions norm_options(const StepStrategy& step) {
  return {.eps = static_cast<float>(step.rms_norm_eps())};
}

// Final norm in place on x_L, then the loss.
LossSum head_forward(StepStrategy& step, Tensor& x) {
  kernels::rmsnorm_forward(x, step.final_norm_weight(), x, Tensor(), norm_options(step));
  Tensor lse = Tensor::empty({x.dim(0)}, DType::f32, MemCategory::workspace);
  return step.loss_forward(x, lse);
}

// The same with the backward: dx = d(grad_scale * loss)/d(x_L) (f32, workspace).
LossSum head_forward_backward(StepStrategy& step, const Tensor& x, float grad_scale, Tensor& dx) {
  const int64_t T = x.dim(0);
  const Tensor norm_weight = step.final_norm_weight();
  Tensor nf = Tensor::empty(x.shape(), x.dtype(), MemCategory::workspace);
  Tensor rstd = Tensor::empty({T}, DType::f32, MemCategory::workspace);
  kernels::rmsnorm_forward(x, norm_weight, nf, rstd, norm_options(step));
  Tensor lse = Tensor::empty({T}, DType::f32, MemCategory::activations);
  const LossSum loss = step.loss_forward(nf, lse);
  dx = Tensor::zeros(x.shape(), DType::f32, MemCategory::workspace);
  step.loss_backward(nf, lse, grad_scale, dx);
  lse = Tensor();
  nf = Tensor();
  const Tensor norm_grad = step.final_norm_grad();
  kernels::rmsnorm_backward(dx, x, norm_weight, rstd, dx, norm_grad);
  step.final_norm_grad_done(norm_grad);
  return loss;
}

// 0 <= first_layer < end_layer <= num_layers.
void check_range(const StepStrategy& step, StageRange range) {
  TSP_CHECK(0 <= range.first_layer && range.first_layer < range.end_layer &&
                range.end_layer <= step.num_layers(),
            "pipeline stage: layers [", range.first_layer, ", ", range.end_layer,
            ") are not a non-empty range of the model's ", step.num_layers(), " layers");
}

}  // namespace

StagePass::StagePass(StepStrategy& step, StageRange range, bool recompute, float grad_scale)
    : step_(step), range_(range), recompute_(recompute), grad_scale_(grad_scale) {
  check_range(step, range);
}

Tensor StagePass::forward(Tensor x_in) {
  TSP_CHECK(!forward_done_, "StagePass::forward: called twice");
  TSP_CHECK(x_in.defined() != range_.embeds(), "StagePass::forward: the stage starting at layer ",
            range_.first_layer, x_in.defined() ? " embeds its tokens and takes no input"
                                               : " needs the previous stage's output");
  forward_done_ = true;
  const int64_t first = range_.first_layer, end = range_.end_layer;
  xs_.resize(static_cast<size_t>(end - first + 1));
  xs_[0] = range_.embeds() ? step_.embed_forward() : std::move(x_in);
  step_.begin_layers(false);
  for (int64_t l = first; l < end; ++l) {
    const size_t i = static_cast<size_t>(l - first);
    xs_[i + 1] = Tensor::empty(xs_[i].shape(), xs_[i].dtype(), MemCategory::activations);
    step_.acquire_layer(l);
    step_.block_forward(l, xs_[i], xs_[i + 1]);
    if (recompute_) step_.release_activations(l);
  }
  step_.end_layers();
  if (!range_.has_head(step_)) return xs_.back();  // the next stage's input; ours until backward
  loss_ = head_forward_backward(step_, xs_.back(), grad_scale_, dx_head_);
  xs_.back() = Tensor();
  return Tensor();
}

Tensor StagePass::backward(Tensor dx_out) {
  TSP_CHECK(forward_done_ && !backward_done_, "StagePass::backward: needs one forward before it");
  const bool head = range_.has_head(step_);
  TSP_CHECK(dx_out.defined() != head, "StagePass::backward: the stage ending at layer ",
            range_.end_layer, head ? " computed its own loss gradient and takes none"
                                   : " needs the next stage's gradient");
  backward_done_ = true;
  Tensor dx = head ? std::move(dx_head_) : std::move(dx_out);
  const int64_t first = range_.first_layer;
  xs_.back() = Tensor();
  step_.begin_layers(true);
  for (int64_t l = range_.end_layer - 1; l >= first; --l) {
    const size_t i = static_cast<size_t>(l - first);
    step_.acquire_layer(l);
    if (recompute_) step_.block_forward(l, xs_[i], Tensor());
    step_.block_backward(l, xs_[i], dx);
    step_.release_activations(l);
    if (i > 0) xs_[i] = Tensor();
  }
  step_.end_layers();
  xs_.clear();
  if (!range_.embeds()) return dx;
  step_.embed_backward(dx);
  return Tensor();
}

Tensor run_stage_forward(StepStrategy& step, StageRange range, Tensor x_in, LossSum& loss) {
  check_range(step, range);
  TSP_CHECK(x_in.defined() != range.embeds(), "run_stage_forward: the stage starting at layer ",
            range.first_layer, x_in.defined() ? " embeds its tokens and takes no input"
                                              : " needs the previous stage's output");
  Tensor x = range.embeds() ? step.embed_forward() : std::move(x_in);
  step.begin_layers(false);
  for (int64_t l = range.first_layer; l < range.end_layer; ++l) {
    Tensor next = Tensor::empty(x.shape(), x.dtype(), MemCategory::activations);
    step.acquire_layer(l);
    step.block_forward(l, x, next);
    step.release_activations(l);
    x = next;  // the block's input is released here
  }
  step.end_layers();
  if (!range.has_head(step)) return x;
  loss = head_forward(step, x);
  return Tensor();
}

LossSum run_forward(StepStrategy& step) {
  LossSum loss;
  (void)run_stage_forward(step, StageRange::whole_model(step), Tensor(), loss);
  return loss;
}

LossSum run_forward_backward(StepStrategy& step, bool recompute, float grad_scale) {
  StagePass pass(step, StageRange::whole_model(step), recompute, grad_scale);
  (void)pass.forward(Tensor());
  (void)pass.backward(Tensor());
  return pass.loss();
}

}  // namespace tsp::model
