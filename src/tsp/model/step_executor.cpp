// run_forward / run_forward_backward: the step schedule every layout shares; the order of the
// allocations and releases here is what the activation-peak formulas of every layout assume.
#include "tsp/model/step_executor.h"

#include <vector>

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

}  // namespace

LossSum run_forward(StepStrategy& step) {
  const int64_t L = step.num_layers();
  Tensor x = step.embed_forward();
  step.begin_layers(false);
  for (int64_t l = 0; l < L; ++l) {
    Tensor next = Tensor::empty(x.shape(), x.dtype(), MemCategory::activations);
    step.acquire_layer(l);
    step.block_forward(l, x, next);
    step.release_activations(l);
    x = next;  // the block's input is released here
  }
  step.end_layers();
  return head_forward(step, x);
}

LossSum run_forward_backward(StepStrategy& step, bool recompute, float grad_scale) {
  const int64_t L = step.num_layers();
  std::vector<Tensor> xs(static_cast<size_t>(L + 1));
  xs[0] = step.embed_forward();
  step.begin_layers(false);
  for (int64_t l = 0; l < L; ++l) {
    xs[l + 1] = Tensor::empty(xs[l].shape(), xs[l].dtype(), MemCategory::activations);
    step.acquire_layer(l);
    step.block_forward(l, xs[l], xs[l + 1]);
    if (recompute) step.release_activations(l);
  }
  step.end_layers();

  Tensor dx;  // f32 gradient of the residual stream
  const LossSum loss = head_forward_backward(step, xs[L], grad_scale, dx);
  xs[L] = Tensor();
  step.begin_layers(true);
  for (int64_t l = L - 1; l >= 0; --l) {
    step.acquire_layer(l);
    if (recompute) step.block_forward(l, xs[l], Tensor());
    step.block_backward(l, xs[l], dx);
    step.release_activations(l);
    if (l > 0) xs[l] = Tensor();
  }
  step.end_layers();
  step.embed_backward(dx);
  return loss;
}

}  // namespace tsp::model
