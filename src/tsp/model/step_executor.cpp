// run_forward / run_forward_backward: the step schedule every layout shares; the order of the
// allocations and releases here is what the activation-peak formulas of every layout assume.
#include "tsp/model/step_executor.h"

#include <vector>

namespace tsp::model {

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
  return step.head_forward(x);
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
  const LossSum loss = step.head_forward_backward(xs[L], grad_scale, dx);
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
