// decode_linear against kernels::gemm (x @ W^T, beta 0 and 1) for f32 and bf16 operands, f32 and
// bf16 outputs, 1 to 6 rows (row groups of 4 plus a remainder), K with a tail, strided views.
#include "tsp/kernels/decode_linear.h"

#include <gtest/gtest.h>

#include "fp_bounds.h"
#include "test_util.h"
#include "tsp/kernels/reference/gemm_ref.h"
#include "tsp/core/error.h"
#include "tsp/kernels/gemm.h"
#include "tsp/kernels/simd.h"

namespace tsp::kernels {
namespace {

using tsp::testing::random_tensor;

void expect_matches_gemm(DType in, DType out, int64_t m, int64_t k, int64_t n, float beta) {
  SCOPED_TRACE(::testing::Message() << in << " -> " << out << " M=" << m << " K=" << k << " N=" << n
                                    << " beta=" << beta);
  // x and y are column slices of wider buffers: row strides differ from the widths.
  const Tensor x = random_tensor({m, k + 3}, in, 1).slice(1, 1, k);
  const Tensor w = random_tensor({n, k}, in, 2, 0.3f);
  const Tensor y0 = random_tensor({m, n + 5}, out, 3);
  Tensor y = Tensor::copy_of(y0, out, MemCategory::workspace).slice(1, 2, n);
  Tensor ref = Tensor::copy_of(y0, out, MemCategory::workspace).slice(1, 2, n);
  // Magnitude of the summed terms of each output: sum_k |x_k w_jk| + |beta y0_j| (double).
  Tensor mag = tsp::testing::abs_of(y);
  kernels::reference::gemm(tsp::testing::abs_of(x), tsp::testing::abs_of(w), mag,
                           {.trans_b = true, .beta = std::fabs(beta)});
  decode_linear(x, w, y, beta);
  kernels::gemm(x, w, ref, {.trans_b = true, .beta = beta});
  // Same fp32 products (bf16 inputs are exact in fp32, and so are their products) in other
  // summation orders: each within gamma_{K+1} of the magnitude of its terms (derived, any order),
  // so the two within twice that; it cancels to ~0 on the terms' scale, not its own. A bf16 output
  // rounds each once (2^-8 of itself): the two may sit on either side of a rounding boundary,
  // one bf16 ulp apart, <= 2^-8 (|y| + |ref|) ~ 2 * 2^-8 |ref|.
  const double g = 2 * tsp::testing::gamma_n(k + 1);
  if (out == DType::f32)
    EXPECT_TERMS_CLOSE(y, ref, mag, g, 0.0);
  else
    EXPECT_TERMS_CLOSE(y, ref, mag, (1 + 2 * tsp::testing::kUnitBf16) * g,
                       2 * tsp::testing::kUnitBf16 * (1 + tsp::testing::kUnitBf16));
}

TEST(DecodeLinear, MatchesGemm) {
  for (const int64_t m : {1, 3, 4, 6}) {
    for (const int64_t k : {16, 37, 128}) {
      for (const float beta : {0.f, 1.f}) {
        expect_matches_gemm(DType::f32, DType::f32, m, k, 33, beta);
        expect_matches_gemm(DType::bf16, DType::f32, m, k, 33, beta);
        expect_matches_gemm(DType::bf16, DType::bf16, m, k, 33, beta);
      }
    }
  }
  expect_matches_gemm(DType::bf16, DType::bf16, 2, 512, 1536, 0.f);  // the parallel path
}

// bf16 x bf16 runs the row kernel (simd.h Vec) only where oneDNN has no native bf16 matmul
// (e.g. AVX2 CPUs, or ONEDNN_MAX_CPU_ISA=AVX2 on an AVX-512 one); says which ran.
TEST(DecodeLinear, ReportsWhichPathRan) {
  const bool rows = !kernels::gemm_native_bf16();
  std::printf("[   simd   ] decode_linear bf16: %s\n",
              rows ? (std::string("row kernel, ") + kernels::simd::kVecName).c_str()
                   : "oneDNN native bf16 GEMM (row kernel skipped)");
  RecordProperty("simd", rows ? kernels::simd::kVecName : "onednn");
  EXPECT_EQ(kernels::simd::kLanes, TSP_SIMD_AVX512 ? 16 : 8);
}

TEST(DecodeLinear, RefusesMismatchedShapes) {
  const Tensor x = random_tensor({2, 8}, DType::bf16, 1), w = random_tensor({4, 9}, DType::bf16, 2);
  Tensor y = Tensor::empty({2, 4}, DType::f32, MemCategory::workspace);
  EXPECT_THROW(decode_linear(x, w, y), ShapeError);
  EXPECT_THROW(decode_linear(x, random_tensor({4, 8}, DType::bf16, 2), y, 0.5f), InvalidArgument);
}

}  // namespace
}  // namespace tsp::kernels
