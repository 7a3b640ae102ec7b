// Row access for the row-wise kernels whose operands are f32 or bf16 as chosen at run time
// (SwiGLU, biases): kLanes columns of a row loaded into / stored from a simd::Vec (masked tails).
#pragma once

#include <cstdint>

#include "tsp/core/tensor.h"
#include "tsp/kernels/simd.h"

namespace tsp::kernels::row_lanes {

// Columns [c, c + n) of a row stored as `t` (f32 or bf16), n <= kLanes (lanes >= n load as 0).
inline simd::Vec load(const char* row, DType t, int64_t c, int64_t n) {
  using namespace simd;
  if (t == DType::f32) {
    const float* p = reinterpret_cast<const float*>(row) + c;
    return n == kLanes ? vload(p) : vload_tail(p, n);
  }
  const bf16* p = reinterpret_cast<const bf16*>(row) + c;
  return n == kLanes ? vload(p) : vload_tail(p, n);
}

// Stores lanes [0, n) of v at columns [c, c + n) (bf16: rounded to nearest even).
inline void store(char* row, DType t, int64_t c, int64_t n, simd::Vec v) {
  using namespace simd;
  if (t == DType::f32) {
    float* p = reinterpret_cast<float*>(row) + c;
    if (n == kLanes) vstore(p, v);
    else vstore_tail(p, v, n);
  } else {
    bf16* p = reinterpret_cast<bf16*>(row) + c;
    if (n == kLanes) vstore(p, v);
    else vstore_tail(p, v, n);
  }
}

// Row r of a 2-D tensor with unit inner stride (any row stride).
inline char* row(const Tensor& t, int64_t r) {
  return static_cast<char*>(t.raw()) + r * t.stride(0) * static_cast<int64_t>(t.element_size());
}

}  // namespace tsp::kernels::row_lanes
