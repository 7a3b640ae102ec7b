// The online-softmax primitives and merge_partials: merging by log-sum-exp equals the softmax over
// the union; empty partials (lse = -inf) are neutral; in-place aliasing; bf16 outputs; validation.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "test_util.h"
#include "tsp/core/error.h"
#include "tsp/kernels/softmax_merge.h"

namespace tsp::kernels {
namespace {

using tsp::testing::random_tensor;

TEST(SoftmaxMerge, MergeLseMatchesDirectFormula) {
  const LseMerge m = merge_lse(1.0f, 2.5f);
  EXPECT_NEAR(m.lse, std::log(std::exp(1.0) + std::exp(2.5)), 1e-6);
  EXPECT_NEAR(m.wa, std::exp(1.0 - m.lse), 1e-6);
  EXPECT_NEAR(m.wb, std::exp(2.5 - m.lse), 1e-6);
  const LseMerge a_empty = merge_lse(kNegInf, 0.3f);
  EXPECT_EQ(a_empty.lse, 0.3f);
  EXPECT_EQ(a_empty.wa, 0.f);
  EXPECT_EQ(a_empty.wb, 1.f);
  const LseMerge both = merge_lse(kNegInf, kNegInf);
  EXPECT_EQ(both.lse, kNegInf);
  EXPECT_EQ(both.wa, 0.f);
  EXPECT_EQ(both.wb, 0.f);
  // Large magnitudes do not overflow.
  const LseMerge big = merge_lse(1000.f, 999.f);
  EXPECT_NEAR(big.lse, 1000.f + std::log1p(std::exp(-1.0)), 1e-3);
}

TEST(SoftmaxMerge, OnlineSoftmaxEqualsTwoPass) {
  const std::vector<float> s = {0.3f, -1.2f, 4.0f, 2.2f, -7.f, 3.9f, 0.f};
  OnlineSoftmax os;
  for (size_t i = 0; i < s.size(); i += 3) {
    float bm = kNegInf;
    for (size_t j = i; j < std::min(s.size(), i + 3); ++j) bm = std::max(bm, s[j]);
    os.raise_max(bm);
    for (size_t j = i; j < std::min(s.size(), i + 3); ++j) os.l += std::exp(s[j] - os.m);
  }
  double ref = 0;
  for (float x : s) ref += std::exp(double(x));
  EXPECT_NEAR(os.lse(), std::log(ref), 1e-6);
  EXPECT_EQ(OnlineSoftmax{}.lse(), kNegInf);
}

// Builds two "partials" over disjoint random score sets per row, plus the union, directly.
struct Partials {
  Tensor oa, la, ob, lb, o, l;
};
Partials make_partials(int64_t B, int64_t S, int64_t H, int64_t d, uint64_t seed) {
  Partials p;
  p.oa = random_tensor({B, S, H, d}, DType::f32, seed);
  p.ob = random_tensor({B, S, H, d}, DType::f32, seed + 1);
  p.la = random_tensor({B, H, S}, DType::f32, seed + 2, 3.f);
  p.lb = random_tensor({B, H, S}, DType::f32, seed + 3, 3.f);
  // Some rows where one or both partials are empty (o = 0 by contract).
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      float* la = p.la.data<float>() + (b * H + h) * S;
      float* lb = p.lb.data<float>() + (b * H + h) * S;
      la[0] = kNegInf;
      lb[1] = kNegInf;
      la[2] = lb[2] = kNegInf;
      for (int64_t x = 0; x < d; ++x) {
        p.oa.data<float>()[((b * S + 0) * H + h) * d + x] = 0.f;
        p.ob.data<float>()[((b * S + 1) * H + h) * d + x] = 0.f;
        p.oa.data<float>()[((b * S + 2) * H + h) * d + x] = 0.f;
        p.ob.data<float>()[((b * S + 2) * H + h) * d + x] = 0.f;
      }
    }
  // Expected: o = (e^la oa + e^lb ob) / (e^la + e^lb), in double.
  p.o = Tensor::empty({B, S, H, d}, DType::f32, MemCategory::workspace);
  p.l = Tensor::empty({B, H, S}, DType::f32, MemCategory::workspace);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < S; ++s)
      for (int64_t h = 0; h < H; ++h) {
        const double la = p.la.data<float>()[(b * H + h) * S + s];
        const double lb = p.lb.data<float>()[(b * H + h) * S + s];
        const double ea = std::exp(la), eb = std::exp(lb);
        p.l.data<float>()[(b * H + h) * S + s] =
            ea + eb == 0 ? kNegInf : static_cast<float>(std::log(ea + eb));
        for (int64_t x = 0; x < d; ++x) {
          const int64_t i = ((b * S + s) * H + h) * d + x;
          p.o.data<float>()[i] =
              ea + eb == 0 ? 0.f
                           : static_cast<float>((ea * p.oa.data<float>()[i] +
                                                 eb * p.ob.data<float>()[i]) / (ea + eb));
        }
      }
  return p;
}

TEST(SoftmaxMerge, MergePartialsMatchesUnionIncludingEmptyRows) {
  // fp32 math: o = wa oa + wb ob with weights exp(l - m) / sum: the exponents' arguments carry an
  // absolute error of ~2^-24 (|la| + |lb|) (lse ~ N(0, 9), |l| < 15 here), i.e. ~30 * 2^-24 = 2e-6
  // relative in the weights with exp, divide and sum, on the scale of the terms |wa oa| + |wb ob|
  // <= max |o| < 5 (N(0, 1) values), not of o, which may cancel to ~0: 1e-5 relative with a
  // floor of 1 (>= 2e-6 * 5).
  Partials p = make_partials(2, 13, 3, 20, 1);
  Tensor o = Tensor::empty(p.o.shape(), DType::f32, MemCategory::workspace);
  Tensor l = Tensor::empty(p.l.shape(), DType::f32, MemCategory::workspace);
  merge_partials(p.oa, p.la, p.ob, p.lb, o, l);
  EXPECT_CLOSE(o, p.o, 1e-5, 1.0);
  for (int64_t i = 0; i < l.numel(); ++i) {
    const float e = p.l.data<float>()[i];
    if (e == kNegInf) EXPECT_EQ(l.data<float>()[i], kNegInf);
    else EXPECT_NEAR(l.data<float>()[i], e, 1e-5 * (1 + std::fabs(e)));
  }
  // In place: o aliases o_a, lse aliases lse_a.
  merge_partials(p.oa, p.la, p.ob, p.lb, p.oa, p.la);
  EXPECT_CLOSE(p.oa, o, 0.0, 1e-30);
  for (int64_t i = 0; i < l.numel(); ++i) EXPECT_EQ(p.la.data<float>()[i], l.data<float>()[i]);
}

TEST(SoftmaxMerge, EmptyPartialIsNeutralEvenIfItsOutputIsGarbage) {
  Partials p = make_partials(1, 5, 2, 8, 3);
  p.oa.data<float>()[0] = NAN;  // row 0 of partial a is empty (lse -inf): never read
  Tensor o = Tensor::empty(p.o.shape(), DType::f32, MemCategory::workspace);
  Tensor l = Tensor::empty(p.l.shape(), DType::f32, MemCategory::workspace);
  merge_partials(p.oa, p.la, p.ob, p.lb, o, l);
  EXPECT_EQ(o.data<float>()[0], p.ob.data<float>()[0]);
}

TEST(SoftmaxMerge, Bf16OutputsAndStridedViews) {
  Partials p = make_partials(1, 9, 4, 16, 5);
  // bf16 o: rounded once (at most 2^-8 relative: bf16 keeps 8 significant bits).
  Tensor ob = Tensor::empty(p.o.shape(), DType::bf16, MemCategory::workspace);
  Tensor l = Tensor::empty(p.l.shape(), DType::f32, MemCategory::workspace);
  merge_partials(p.oa, p.la, p.ob, p.lb, ob, l);
  // The fp32 bound above (1e-5 (|o| + 1)), plus the rounding to bf16 (2^-8 |o|).
  Tensor ones = Tensor::empty(p.o.shape(), DType::f32, MemCategory::workspace);
  ones.fill(1.f);
  EXPECT_TERMS_CLOSE(ob, p.o, ones, 1e-5, 1.0 / 256 + 1e-5);
  // Strided views (heads 1..2 of each partial).
  Tensor o2 = Tensor::empty({1, 9, 2, 16}, DType::f32, MemCategory::workspace);
  Tensor l2 = Tensor::empty({1, 2, 9}, DType::f32, MemCategory::workspace);
  merge_partials(p.oa.slice(2, 1, 2), p.la.slice(1, 1, 2), p.ob.slice(2, 1, 2),
                 p.lb.slice(1, 1, 2), o2, l2);
  EXPECT_CLOSE(o2, p.o.slice(2, 1, 2), 1e-5, 1.0);
}

TEST(SoftmaxMerge, BadShapesThrowNamingShapes) {
  Partials p = make_partials(1, 4, 2, 8, 7);
  Tensor o = Tensor::empty({1, 4, 2, 7}, DType::f32, MemCategory::workspace);
  Tensor l = Tensor::empty(p.l.shape(), DType::f32, MemCategory::workspace);
  try {
    merge_partials(p.oa, p.la, p.ob, p.lb, o, l);
    ADD_FAILURE() << "no exception";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find(o.describe()), std::string::npos) << e.what();
  }
  Tensor o_ok = Tensor::empty(p.o.shape(), DType::f32, MemCategory::workspace);
  Tensor l_bad = Tensor::empty(p.l.shape(), DType::bf16, MemCategory::workspace);
  EXPECT_THROW(merge_partials(p.oa, p.la, p.ob, p.lb, o_ok, l_bad), DTypeError);
}

}  // namespace
}  // namespace tsp::kernels
