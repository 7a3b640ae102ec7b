// decode_linear against kernels::gemm (x @ W^T, beta 0 and 1) for f32 and bf16 operands, f32 and
// bf16 outputs, 1 to 6 rows (row groups of 4 plus a remainder), K with a tail, strided views.
#include "tsp/infer/decode_linear.h"

#include <gtest/gtest.h>

#include "test_util.h"
#include "tsp/core/error.h"
#include "tsp/kernels/gemm.h"

namespace tsp::infer {
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
  decode_linear(x, w, y, beta);
  kernels::gemm(x, w, ref, {.trans_b = true, .beta = beta});
  // Same fp32 products in another summation order: ~sqrt(K) 2^-24 of the dot's scale in f32;
  // a bf16 output may round to the neighbouring bf16 value (2^-8).
  EXPECT_CLOSE(y, ref, out == DType::f32 ? 1e-5 : 8e-3, 0.5);
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

TEST(DecodeLinear, RefusesMismatchedShapes) {
  const Tensor x = random_tensor({2, 8}, DType::bf16, 1), w = random_tensor({4, 9}, DType::bf16, 2);
  Tensor y = Tensor::empty({2, 4}, DType::f32, MemCategory::workspace);
  EXPECT_THROW(decode_linear(x, w, y), ShapeError);
  EXPECT_THROW(decode_linear(x, random_tensor({4, 8}, DType::bf16, 2), y, 0.5f), InvalidArgument);
}

}  // namespace
}  // namespace tsp::infer
