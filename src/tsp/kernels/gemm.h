// GEMM through oneDNN matmul: C = alpha * op(A) @ op(B) + beta * C on strided 2-D views, f32 or
// bf16 inputs with fp32 accumulation; primitives are created once per shape and cached.
#pragma once

#include "tsp/core/tensor.h"

namespace tsp::kernels {

struct GemmOptions {
  bool trans_a = false;  // use A^T: A is stored [K, M]
  bool trans_b = false;  // use B^T: B is stored [N, K] (HF weights [out, in] give x @ W^T)
  float alpha = 1.f;
  float beta = 0.f;      // 0 overwrites C; 1 accumulates into C
};

// A: [M, K] (or [K, M] if trans_a), B: [K, N] (or [N, K] if trans_b), C: [M, N].
// Every operand is a 2-D view whose last dimension has stride 1; row strides are free.
// Supported dtypes: A, B both f32 or both bf16; C f32, or bf16 when A and B are bf16.
// Throws ShapeError / DTypeError / LayoutError naming the operands.
void gemm(const Tensor& a, const Tensor& b, Tensor& c, const GemmOptions& options = {});

// True when oneDNN runs bf16 matmuls natively: it can (AVX-512 CPUs) and bf16_math() is native
// (bf16_math.h: not on Intel AVX512-BF16 without AMX, where it is slower than fp32). Otherwise bf16
// operands are widened to fp32 first (exact; fp32 accumulation as native; fp32 speed).
bool gemm_native_bf16();

// True when oneDNN's effective ISA (ONEDNN_MAX_CPU_ISA honoured) includes AMX tiles.
bool gemm_onednn_has_amx();

// Number of distinct oneDNN primitives created so far by this thread (for cache tests).
int64_t gemm_primitives_created();

}  // namespace tsp::kernels
