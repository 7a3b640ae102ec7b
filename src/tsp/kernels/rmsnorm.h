// RMSNorm (Llama): y = x / sqrt(mean(x^2) + eps) * g over the last dimension, forward and backward.
// Storage f32 or bf16, math in fp32; the per-row rstd is saved for backward, dg accumulates in fp32.
#pragma once

#include "tsp/core/tensor.h"

namespace tsp::kernels {

struct RmsNormOptions {
  float eps = 1e-5f;  // Llama-2/3 use 1e-5 (HF config rms_norm_eps); 1e-6 for some checkpoints
};

// x: [N, h] f32|bf16 (unit inner stride, any row stride); gain: [h] f32|bf16 (contiguous);
// y: [N, h] f32|bf16 (may alias x exactly); rstd: [N] f32 receives 1/sqrt(mean(x^2)+eps), or an
// undefined Tensor when it need not be saved (inference).
void rmsnorm_forward(const Tensor& x, const Tensor& gain, const Tensor& y, const Tensor& rstd,
                     const RmsNormOptions& options = {});

// dy, x: [N, h]; gain: [h]; rstd: [N] f32 from the forward. dx: [N, h] f32|bf16 is OVERWRITTEN
// (may alias dy exactly); dgain: [h] f32 is ACCUMULATED (+=), so replicated gains can sum the
// contributions of several micro-batches before the reduction over ranks. Deterministic: the
// row reduction for dgain uses fixed row blocks whatever the thread count.
void rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& gain, const Tensor& rstd,
                      const Tensor& dx, const Tensor& dgain);

}  // namespace tsp::kernels
