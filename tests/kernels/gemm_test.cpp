// kernels::gemm (oneDNN) against the naive reference: transposes, strided views, alpha/beta,
// f32 and bf16, odd sizes, primitive caching and error messages.
#include "tsp/kernels/gemm.h"

#include <gtest/gtest.h>

#include <oneapi/dnnl/dnnl.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <tuple>

#include "fp_bounds.h"
#include "test_util.h"
#include "tsp/kernels/reference/gemm_ref.h"

namespace tsp::kernels {
namespace {

using testing::random_tensor;

// Stored operand for op(X) of logical shape [rows, cols]: transposed storage when `trans`,
// and a padded row stride (a column slice of a wider buffer) when `padded`.
Tensor make_operand(int64_t rows, int64_t cols, bool trans, bool padded, DType dt, uint64_t seed) {
  const int64_t r = trans ? cols : rows, c = trans ? rows : cols;
  Tensor base = random_tensor({r, c + (padded ? 7 : 0)}, dt, seed);
  return base.slice(1, 0, c);
}

// Sum of the magnitudes of the terms of every element of C = alpha op(A) op(B) + beta C0:
// |alpha| sum_p |a_ip b_pj| + |beta c0_ij| (the reference on |A|, |B|, |C0|, in double).
Tensor term_magnitudes(const Tensor& a, const Tensor& b, const Tensor& c0, const GemmOptions& opt) {
  Tensor mag = testing::abs_of(c0);
  GemmOptions o = opt;
  o.alpha = std::fabs(opt.alpha);
  o.beta = std::fabs(opt.beta);
  reference::gemm(testing::abs_of(a), testing::abs_of(b), mag, o);
  return mag;
}

class GemmShapes : public ::testing::TestWithParam<std::tuple<bool, bool, bool, DType>> {};

TEST_P(GemmShapes, MatchesReference) {
  const auto [trans_a, trans_b, padded, dt] = GetParam();
  const int64_t m = 37, n = 53, k = 29;
  Tensor a = make_operand(m, k, trans_a, padded, dt, 1);
  Tensor b = make_operand(k, n, trans_b, padded, dt, 2);
  for (const float beta : {0.f, 1.f, 0.5f}) {
    Tensor c = random_tensor({m, n + (padded ? 5 : 0)}, DType::f32, 3).slice(1, 0, n);
    Tensor expected = Tensor::copy_of(c, DType::f32, MemCategory::workspace);
    const GemmOptions opt{.trans_a = trans_a, .trans_b = trans_b, .alpha = 0.75f, .beta = beta};
    const Tensor mag = term_magnitudes(a, b, c, opt);
    gemm(a, b, c, opt);
    reference::gemm(a, b, expected, opt);
    // fp32 summation error scales with the magnitude of the summed terms, sum_p |alpha a_ip b_pj| +
    // |beta c_ij| (~0.5 K = 14 here), not with |C|, which can cancel to ~0. Derived (Higham, any
    // order or blocking, any oneDNN kernel): |err| <= gamma_{K+2} * magnitude (K products, the
    // beta term, the alpha scaling), plus 2^-24 |C| for the reference's rounding to f32. bf16
    // inputs are exact in fp32 and their products too, so the same bound holds.
    EXPECT_TERMS_CLOSE(c, expected, mag, testing::gamma_n(k + 2), testing::kUnitF32);
  }
}

INSTANTIATE_TEST_SUITE_P(All, GemmShapes,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool(), ::testing::Bool(),
                                            ::testing::Values(DType::f32, DType::bf16)));

TEST(Gemm, Bf16OutputIsRoundedOnce) {
  Tensor a = random_tensor({17, 64}, DType::bf16, 4);
  Tensor b = random_tensor({33, 64}, DType::bf16, 5);
  Tensor c = Tensor::empty({17, 33}, DType::bf16, MemCategory::workspace);
  Tensor expected = Tensor::empty({17, 33}, DType::f32, MemCategory::workspace);
  const Tensor mag = term_magnitudes(a, b, expected, {.trans_b = true});
  gemm(a, b, c, {.trans_b = true});
  reference::gemm(a, b, expected, {.trans_b = true});
  // The fp32-accumulated value (within gamma_K of the magnitude of its K = 64 terms, as in
  // MatchesReference) rounded once to bf16 (2^-8 of itself): |c - C| <= (1 + 2^-8) gamma_K mag +
  // 2^-8 |C|, plus 2^-24 |C| for the reference's rounding to f32. (A relative bound with a small
  // floor fails where C cancels to ~0 while its fp32 error, on the scale of the terms, does not.)
  EXPECT_TERMS_CLOSE(c, expected, mag, (1 + testing::kUnitBf16) * testing::gamma_n(64),
                     testing::kUnitBf16 + 2 * testing::kUnitF32);
}

TEST(Gemm, Bf16OutputAccumulatesWithBeta) {
  // Runs the native bf16 path on AVX-512 CPUs and the widen-to-fp32 fallback elsewhere.
  SCOPED_TRACE(gemm_native_bf16() ? "native bf16 matmul" : "bf16 widened to fp32");
  Tensor a = random_tensor({19, 48}, DType::bf16, 14);
  Tensor b = random_tensor({48, 27}, DType::bf16, 15);
  Tensor c = random_tensor({19, 27 + 3}, DType::bf16, 16).slice(1, 0, 27);
  Tensor expected = c.to_f32();
  const Tensor mag = term_magnitudes(a, b, expected, {.alpha = 0.5f, .beta = 1.f});
  gemm(a, b, c, {.alpha = 0.5f, .beta = 1.f});
  reference::gemm(a, b, expected, {.alpha = 0.5f, .beta = 1.f});
  // The fp32 result (within gamma_{K+2} of the magnitude of its terms, K = 48, as in
  // MatchesReference) rounded once to bf16 (2^-8 of itself), plus the reference's f32 rounding.
  EXPECT_TERMS_CLOSE(c, expected, mag, (1 + testing::kUnitBf16) * testing::gamma_n(48 + 2),
                     testing::kUnitBf16 + 2 * testing::kUnitF32);
}

TEST(Gemm, Bf16InputsAgainstF32WithinRounding) {
  Tensor a32 = random_tensor({64, 96}, DType::f32, 6);
  Tensor b32 = random_tensor({96, 40}, DType::f32, 7);
  Tensor a16 = Tensor::copy_of(a32, DType::bf16, MemCategory::workspace);
  Tensor b16 = Tensor::copy_of(b32, DType::bf16, MemCategory::workspace);
  Tensor c32 = Tensor::empty({64, 40}, DType::f32, MemCategory::workspace);
  Tensor c16 = Tensor::empty({64, 40}, DType::f32, MemCategory::workspace);
  gemm(a32, b32, c32);
  gemm(a16, b16, c16);
  // Each input rounds with relative error <= 2^-9, so each product within ~2^-8; the sum of K=96
  // random-sign products errs like sqrt(K) * 2^-8 * |term| while |C| ~ sqrt(K) * |term|:
  // a relative L2 error of a few times 2^-8 / sqrt(3) ~ 2e-3. Allow 5e-3.
  EXPECT_LT(testing::relative_l2(c16, c32), 5e-3);
}

// `make test` runs the release suite a second time with ONEDNN_MAX_CPU_ISA=AVX2 on AVX-512 CPUs
// (Makefile: test-isa-avx2), so one machine checks both of oneDNN's GEMM paths. That pass is only
// worth something if oneDNN obeys: after a GEMM has run, its effective ISA must be AVX2.
TEST(Gemm, MaxIsaSwitchIsHonoured) {
  const char* max_isa = std::getenv("ONEDNN_MAX_CPU_ISA");
  if (max_isa == nullptr || std::string(max_isa) != "AVX2") GTEST_SKIP() << "ONEDNN_MAX_CPU_ISA is not AVX2";
  Tensor a = random_tensor({8, 8}, DType::f32, 1), b = random_tensor({8, 8}, DType::f32, 2);
  Tensor c = Tensor::zeros({8, 8}, DType::f32, MemCategory::workspace);
  gemm(a, b, c);
  EXPECT_EQ(dnnl_get_effective_cpu_isa(), dnnl_cpu_isa_avx2);
}

TEST(Gemm, EmptyAndZeroK) {
  Tensor a = Tensor::empty({4, 0}, DType::f32, MemCategory::workspace);
  Tensor b = Tensor::empty({0, 3}, DType::f32, MemCategory::workspace);
  Tensor c = Tensor::empty({4, 3}, DType::f32, MemCategory::workspace);
  c.fill(2.f);
  gemm(a, b, c, {.beta = 0.5f});
  for (int64_t i = 0; i < c.numel(); ++i) EXPECT_EQ(c.item_f32(i), 1.f);
  Tensor e = Tensor::empty({0, 3}, DType::f32, MemCategory::workspace);
  gemm(Tensor::empty({0, 5}, DType::f32, MemCategory::workspace), Tensor::empty({5, 3}, DType::f32, MemCategory::workspace), e);
}

TEST(Gemm, PrimitivesAreCachedByShape) {
  Tensor a = random_tensor({31, 16}, DType::f32, 8);
  Tensor b = random_tensor({16, 9}, DType::f32, 9);
  Tensor c = Tensor::empty({31, 9}, DType::f32, MemCategory::workspace);
  gemm(a, b, c);
  const int64_t created = gemm_primitives_created();
  for (int i = 0; i < 5; ++i) gemm(a, b, c);
  EXPECT_EQ(gemm_primitives_created(), created);
  Tensor c2 = Tensor::empty({31, 9}, DType::f32, MemCategory::workspace);
  gemm(a, b, c2, {.beta = 1.f});
  EXPECT_EQ(gemm_primitives_created(), created + 1);
}

TEST(Gemm, BadInputThrowsTypedErrorsNamingShapes) {
  Tensor a = Tensor::empty({4, 5}, DType::f32, MemCategory::workspace);
  Tensor b = Tensor::empty({6, 3}, DType::f32, MemCategory::workspace);
  Tensor c = Tensor::empty({4, 3}, DType::f32, MemCategory::workspace);
  try {
    gemm(a, b, c);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("[4, 5]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[6, 3]"), std::string::npos) << e.what();
  }
  Tensor b16 = Tensor::empty({5, 3}, DType::bf16, MemCategory::workspace);
  EXPECT_THROW(gemm(a, b16, c), DTypeError);
  Tensor c16 = Tensor::empty({4, 3}, DType::bf16, MemCategory::workspace);
  EXPECT_THROW(gemm(a, Tensor::empty({5, 3}, DType::f32, MemCategory::workspace), c16), DTypeError);
  EXPECT_THROW(gemm(a, Tensor::empty({5, 3}, DType::f32, MemCategory::workspace), c, {.trans_b = true}), ShapeError);
  EXPECT_THROW(gemm(a, Tensor::empty({5, 3, 1}, DType::f32, MemCategory::workspace), c), ShapeError);
  Tensor strided = Tensor::empty({3, 5}, DType::f32, MemCategory::workspace).transpose(0, 1);  // [5,3], inner stride 5
  EXPECT_THROW(gemm(a, strided, c), LayoutError);
  Tensor buf = Tensor::empty({4, 8}, DType::f32, MemCategory::workspace);
  Tensor a_alias = buf.slice(1, 0, 5), c_alias = buf.slice(1, 5, 3);
  EXPECT_THROW(gemm(a_alias, Tensor::empty({5, 3}, DType::f32, MemCategory::workspace), c_alias), LayoutError);
}

}  // namespace
}  // namespace tsp::kernels
