// Projection biases (Qwen2's q/k/v): y += b broadcast over the rows, and the bias gradient
// db (+)= column sums of dy. Storage f32 or bf16, math in fp32.
#pragma once

#include "tsp/core/tensor.h"

namespace tsp::kernels {

// y [N, n] (unit inner stride, any row stride: a column slice of a fused buffer) += bias [n]
// (contiguous) on every row; bf16 y is rounded once after the f32 add.
void bias_add_forward(const Tensor& y, const Tensor& bias);

// dbias [n] (contiguous f32) := (or += when accumulate) the sum over the N rows of dy [N, n]
// (unit inner stride, any row stride), summed in f32 in row order.
void bias_backward(const Tensor& dy, const Tensor& dbias, bool accumulate);

}  // namespace tsp::kernels
