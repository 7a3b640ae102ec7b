// AdamW step on fp32 master weights with fp32 moments, following torch.optim.AdamW exactly
// (decoupled weight decay first, then moments, bias-corrected denominator); optional bf16 copy-out.
#pragma once

#include <cstdint>

#include "tsp/core/tensor.h"

namespace tsp::kernels {

struct AdamWOptions {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 1e-2f;  // torch.optim.AdamW's default
};

// The optimizer's hyperparameters as a run gives them (the single-rank and the sharded AdamW
// share them), and the per-tensor options of one step: weight decay only on matrices (the
// logical tensor's rank >= 2; norm gains and biases are not decayed), every value converted to
// fp32 in one place so that both optimizers agree bit for bit.
struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
};
AdamWOptions adamw_options(const AdamWConfig& config, int64_t logical_rank, double lr);

// One step t (1-based), per element, in the order of PyTorch's single-tensor AdamW:
//   p  *= 1 - lr * wd
//   m   = m + (1 - b1) * (g - m)              (torch: m.lerp_(g, 1 - b1))
//   v   = b2 * v + (1 - b2) * g * g
//   denom = sqrt(v) / sqrt(1 - b2^t) + eps
//   p  -= lr / (1 - b1^t) * m / denom
// Scalars (1 - lr*wd, lr/(1-b1^t), sqrt(1-b2^t)) are computed in double as Python does, then used
// in fp32 like PyTorch's fp32 kernels. master, exp_avg, exp_avg_sq, grad: f32, same shape,
// contiguous. weight_out (optional: pass an undefined Tensor to skip): same shape, bf16 or f32,
// contiguous, receives the updated master (rounded to nearest even for bf16).
void adamw_step(const Tensor& master, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                const Tensor& grad, int64_t step, const AdamWOptions& options,
                const Tensor& weight_out = Tensor());

}  // namespace tsp::kernels
