// y = x @ W^T (+ beta y) for the few rows of a decode step (one per sequence): kernels::gemm, except
// for bf16 weights on CPUs without native bf16 matmul, where gemm would widen the whole weight.
#pragma once

#include "tsp/core/tensor.h"

namespace tsp::kernels {

// x: [M, K], w: [N, K] (HF [out, in]), y: [M, N]; unit inner strides, other strides free; x and w
// both f32 or both bf16, y f32 or (with bf16 inputs) bf16; beta 0 (overwrite) or 1 (accumulate);
// fp32 accumulation, y rounded once, as kernels::gemm. With bf16 inputs and no native bf16 matmul
// (kernels::gemm_native_bf16() false, e.g. AVX2-only Zen 3) kernels::gemm converts both operands
// to fp32 copies on every call: for M = 1 that is a full pass over the weight, allocations and page
// faults per token and layer. decode_linear then reads the bf16 rows in place instead (each
// weight row once for up to 4 rows of x, parallel over rows of W), which is what a weight-bandwidth
// bound decode needs. Otherwise it calls kernels::gemm.
void decode_linear(const Tensor& x, const Tensor& w, Tensor& y, float beta = 0.f);

}  // namespace tsp::kernels
