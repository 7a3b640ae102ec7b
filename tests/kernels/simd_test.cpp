// simd.h: exp2_8 and exp8 against double libm, bf16 load/store against the scalar bf16
// conversions (bit for bit), tails, select; on AVX-512 builds F16 against F8 lane for lane (so
// the F8 accuracy bounds carry over) and its masked tails. The F8 tests run on whichever branch
// the build compiled (AVX2 + FMA or the scalar fallback); the F16 ones say when they are skipped.
#include "tsp/kernels/simd.h"

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

namespace tsp::kernels {
namespace {

using namespace simd;

double worst_rel_error(const std::vector<float>& x, const std::vector<float>& y,
                       double (*ref_fn)(double), float* worst_x = nullptr) {
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double ref = ref_fn(static_cast<double>(x[i]));
    const double err = std::fabs(y[i] - ref) / ref;
    if (err > worst) {
      worst = err;
      if (worst_x) *worst_x = x[i];
    }
  }
  return worst;
}

double exp2_d(double x) { return std::exp2(x); }
double exp_d(double x) { return std::exp(x); }

TEST(SimdExp2, AccurateToFewUlp) {
  // The polynomial's truncation error is 5e-9; Horner in fp32 adds a few ulp (eps = 6e-8).
  std::vector<float> x, y;
  for (double t = -126.0; t <= 60.0; t += 0.00731) x.push_back(static_cast<float>(t));
  for (float t : {0.f, -0.5f, 0.5f, -1e-8f, 1e-8f, 0.49999997f, -125.9f}) x.push_back(t);
  y.resize(x.size());
  detail::exp2_array(x.data(), y.data(), static_cast<int64_t>(x.size()));
  EXPECT_LE(worst_rel_error(x, y, exp2_d), 3e-7);
  const float special[5] = {-INFINITY, -200.f, -1000.f, 0.f, NAN};
  float out[5];
  detail::exp2_array(special, out, 5);
  EXPECT_EQ(out[0], 0.f);
  EXPECT_EQ(out[1], 0.f);
  EXPECT_EQ(out[2], 0.f);
  EXPECT_EQ(out[3], 1.f);
  EXPECT_TRUE(std::isnan(out[4]));
}

// exp8 = 2^(x log2 e) with the product carried in two floats, so the error is its degree-6
// polynomial's (1.9e-8) plus fp32 Horner rounding: measured worst 9.1e-8 relative (1.5 ulp) over
// [-87, 88] (2.85M points: 1e-4 sweep + random floats) on the AVX2 path; asserted <= 2e-7.
TEST(SimdExp, RelativeErrorOverNormalRange) {
  std::vector<float> x;
  for (double t = -87.0; t <= 88.0; t += 1.0e-4) x.push_back(static_cast<float>(t));
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uni(-87.f, 88.f);
  for (int i = 0; i < 1000000; ++i) x.push_back(uni(rng));
  std::uniform_real_distribution<float> small(-1e-3f, 1e-3f);  // near 0: tiny reduced arguments
  for (int i = 0; i < 100000; ++i) x.push_back(small(rng));
  for (float t : {-87.f, 88.f, 0.f, -0.f, 1.f, -1.f, 0.34657359f, -0.34657359f, 1e-30f, -1e-30f,
                  88.0f, 88.7f, -87.3f})
    x.push_back(t);
  std::vector<float> y(x.size());
  detail::exp_array(x.data(), y.data(), static_cast<int64_t>(x.size()));
  float at = 0;
  const double worst = worst_rel_error(x, y, exp_d, &at);
  std::printf("exp8: worst relative error %.3g at x = %.9g over %zu points\n", worst, at,
              x.size());
  EXPECT_LE(worst, 2e-7);
  EXPECT_EQ(y[x.size() - 11], 1.f);  // exp(0) is exact
}

TEST(SimdExp, SpecialValues) {
  const float in[] = {-INFINITY, -104.f, -200.f, -1000.f, -FLT_MAX, NAN, -NAN,
                      INFINITY,  89.f,   1000.f, FLT_MAX,  0.f,    -0.f, 88.72f};
  constexpr int64_t n = sizeof(in) / sizeof(in[0]);
  float out[n];
  detail::exp_array(in, out, n);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(out[i], 0.f) << "x = " << in[i];
  EXPECT_TRUE(std::isnan(out[5]));
  EXPECT_TRUE(std::isnan(out[6]));
  for (int i = 7; i < 11; ++i) EXPECT_EQ(out[i], INFINITY) << "x = " << in[i];
  EXPECT_EQ(out[11], 1.f);
  EXPECT_EQ(out[12], 1.f);
  EXPECT_TRUE(std::isfinite(out[13]));  // 88.72 < ln(FLT_MAX) = 88.7228
  EXPECT_NEAR(out[13] / std::exp(static_cast<double>(88.72f)), 1.0, 2e-7);
}

TEST(SimdExp, GradualUnderflowIsMonotoneAndSmall) {
  // Below exp(-87.3) results are subnormal: absolute error <= one subnormal ulp-ish, never above
  // the true value by more than 2^-149 and never negative; reaches exactly 0 by x = -104.
  std::vector<float> x, y;
  for (double t = -104.0; t <= -87.0; t += 1e-3) x.push_back(static_cast<float>(t));
  y.resize(x.size());
  detail::exp_array(x.data(), y.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    const double ref = std::exp(static_cast<double>(x[i]));
    ASSERT_GE(y[i], 0.f);
    ASSERT_LE(std::fabs(y[i] - ref), std::max(2e-7 * ref, std::ldexp(1.0, -149))) << x[i];
    if (i > 0) {
      ASSERT_GE(y[i], y[i - 1]) << x[i];
    }
  }
}

TEST(SimdBf16, LoadStoreMatchScalarBitForBit) {
  std::vector<uint32_t> bits = {0u,          0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u,
                                0x7f800001u, 0xff800001u, 0x7fffffffu, 0xffffffffu, 0x7f7fffffu,
                                0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x3f808001u, 0x00008000u,
                                0x00018000u, 0x7f7f8000u};
  std::mt19937 rng(3);
  for (int i = 0; i < 200000; ++i) bits.push_back(static_cast<uint32_t>(rng()));
  while (bits.size() % 8) bits.push_back(0x40490fdbu);
  std::vector<float> f(bits.size());
  std::memcpy(f.data(), bits.data(), bits.size() * 4);
  std::vector<bf16> out(bits.size());
  for (size_t i = 0; i < f.size(); i += 8) store8(out.data() + i, load8(f.data() + i));
  for (size_t i = 0; i < f.size(); ++i)
    ASSERT_EQ(out[i].bits, bf16::round_from_float(f[i])) << std::hex << bits[i];
  std::vector<float> back(bits.size());
  for (size_t i = 0; i < f.size(); i += 8) store8(back.data() + i, load8(out.data() + i));
  for (size_t i = 0; i < f.size(); ++i) {
    const float ref = bf16::to_float(out[i].bits);
    ASSERT_EQ(std::memcmp(&back[i], &ref, 4), 0) << i;
  }
}

TEST(SimdTail, LoadsZeroAndStoresOnlyN) {
  const float src[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  for (int64_t n = 0; n <= 8; ++n) {
    float dst[8];
    for (float& v : dst) v = -1.f;
    store8_tail(dst, load8_tail(src, n) + set8(0.f), n);
    float lanes[8];
    store8(lanes, load8_tail(src, n));
    for (int i = 0; i < 8; ++i) {
      EXPECT_EQ(dst[i], i < n ? src[i] : -1.f);
      EXPECT_EQ(lanes[i], i < n ? src[i] : 0.f);
    }
  }
}

TEST(SimdSelect, GeAndSelectPerLane) {
  const float a[8] = {-1, 0, 1, -0.f, NAN, 2, -2, 3};
  const F8 m_src = load8(a);
  float out[8];
  store8(out, select8(ge8(m_src, set8(0.f)), set8(10.f), set8(20.f)));
  const float expect[8] = {20, 10, 10, 10, 20, 10, 20, 10};  // NaN >= 0 is false
  for (int i = 0; i < 8; ++i) EXPECT_EQ(out[i], expect[i]) << i;
}

TEST(SimdPath, NamesTheWidthThisBuildRuns) {
  std::printf("simd.h paths in this build: F8 %s, F16 %s, Vec = %s (%d lanes), vdpbf16ps %s\n",
              TSP_SIMD_AVX2 ? "avx2" : "scalar", TSP_SIMD_AVX512 ? "avx512" : "absent (skipped)",
              kVecName, kLanes, TSP_SIMD_AVX512_BF16 ? "present" : "absent");
  EXPECT_EQ(kLanes, TSP_SIMD_AVX512 ? 16 : 8);
  EXPECT_EQ(sizeof(Vec), sizeof(float) * kLanes);
}

#if TSP_SIMD_AVX512
// F16 runs the same algorithm with the same constants and operand order as F8, so every lane must
// equal F8's bit for bit; with that, F8's accuracy tests above bound F16 too. Checked on the exp
// sweeps (normal range, underflow, specials) and on random floats over the whole fp32 range.
std::vector<float> exp_inputs() {
  std::vector<float> x;
  for (double t = -130.0; t <= 130.0; t += 1.3e-3) x.push_back(static_cast<float>(t));
  for (float t : {-INFINITY, INFINITY, NAN, -NAN, 0.f, -0.f, FLT_MAX, -FLT_MAX, 1e-30f, -1e-30f,
                  88.72f, -103.97f, -104.f, 89.f, 127.f, -127.f, 0.49999997f})
    x.push_back(t);
  std::mt19937 rng(11);
  for (int i = 0; i < 200000; ++i) {
    const uint32_t b = static_cast<uint32_t>(rng());
    float f;
    std::memcpy(&f, &b, 4);
    x.push_back(f);
  }
  while (x.size() % 16) x.push_back(1.f);
  return x;
}

void expect_same_bits(const std::vector<float>& x, const std::vector<float>& a,
                      const std::vector<float>& b, const char* what) {
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;  // both NaN: payloads may differ by path
    ASSERT_EQ(std::memcmp(&a[i], &b[i], 4), 0) << what << " x = " << x[i] << ": " << a[i] << " vs " << b[i];
  }
}

TEST(SimdF16, Exp2AndExpEqualF8LaneForLane) {
  const std::vector<float> x = exp_inputs();
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<float> y8(x.size()), y16(x.size());
  detail::exp2_array(x.data(), y8.data(), n);
  detail::exp2_array16(x.data(), y16.data(), n);
  expect_same_bits(x, y8, y16, "exp2");
  detail::exp_array(x.data(), y8.data(), n);
  detail::exp_array16(x.data(), y16.data(), n);
  expect_same_bits(x, y8, y16, "exp");
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i])) {
      EXPECT_TRUE(std::isnan(y16[i]));
    }
  }
}

TEST(SimdF16, ArithmeticEqualsF8LaneForLane) {
  std::mt19937 rng(5);
  std::normal_distribution<float> g(0.f, 3.f);
  float a[16], b[16], c[16];
  for (int t = 0; t < 1000; ++t) {
    for (int i = 0; i < 16; ++i) a[i] = g(rng), b[i] = g(rng), c[i] = g(rng);
    if (t == 0) a[3] = NAN, b[5] = NAN;
    float r16[16], r8[16];
    auto both = [&](auto f16, auto f8, const char* what) {
      store16(r16, f16(load16(a), load16(b), load16(c)));
      store8(r8, f8(load8(a), load8(b), load8(c)));
      store8(r8 + 8, f8(load8(a + 8), load8(b + 8), load8(c + 8)));
      for (int i = 0; i < 16; ++i) {
        if (std::isnan(r16[i]) && std::isnan(r8[i])) continue;
        ASSERT_EQ(std::memcmp(&r16[i], &r8[i], 4), 0) << what << " lane " << i;
      }
    };
    both([](F16 x, F16 y, F16 z) { return fma16(x, y, z); }, [](F8 x, F8 y, F8 z) { return fma8(x, y, z); }, "fma");
    both([](F16 x, F16 y, F16) { return x + y; }, [](F8 x, F8 y, F8) { return x + y; }, "add");
    both([](F16 x, F16 y, F16) { return x - y; }, [](F8 x, F8 y, F8) { return x - y; }, "sub");
    both([](F16 x, F16 y, F16) { return x * y; }, [](F8 x, F8 y, F8) { return x * y; }, "mul");
    both([](F16 x, F16 y, F16) { return x / y; }, [](F8 x, F8 y, F8) { return x / y; }, "div");
    both([](F16 x, F16 y, F16) { return max16(x, y); }, [](F8 x, F8 y, F8) { return max8(x, y); }, "max");
    both([](F16 x, F16 y, F16) { return min16(x, y); }, [](F8 x, F8 y, F8) { return min8(x, y); }, "min");
    both([](F16 x, F16, F16) { return neg16(x); }, [](F8 x, F8, F8) { return neg8(x); }, "neg");
    both([](F16 x, F16 y, F16 z) { return select16(ge16(x, y), z, y); },
         [](F8 x, F8 y, F8 z) { return select8(ge8(x, y), z, y); }, "select");
    if (t > 0) {
      // Reductions: same value up to summation order (|error| <= 15 eps sum |a_i| for the sum).
      double sum = 0, abs_sum = 0;
      float mx = -INFINITY;
      for (int i = 0; i < 16; ++i) sum += a[i], abs_sum += std::fabs(a[i]), mx = std::max(mx, a[i]);
      EXPECT_NEAR(hsum16(load16(a)), sum, 15 * FLT_EPSILON * abs_sum);
      EXPECT_EQ(hmax16(load16(a)), mx);
    }
  }
}

TEST(SimdF16, Bf16LoadStoreMatchScalarBitForBit) {
  std::vector<uint32_t> bits = {0u,          0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u,
                                0x7f800001u, 0xff800001u, 0x7fffffffu, 0xffffffffu, 0x7f7fffffu,
                                0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x3f808001u, 0x00008000u,
                                0x00018000u, 0x7f7f8000u, 0x00000001u, 0x807fffffu};
  std::mt19937 rng(4);
  for (int i = 0; i < 200000; ++i) bits.push_back(static_cast<uint32_t>(rng()));
  while (bits.size() % 16) bits.push_back(0x40490fdbu);
  std::vector<float> f(bits.size());
  std::memcpy(f.data(), bits.data(), bits.size() * 4);
  std::vector<bf16> out(bits.size());
  for (size_t i = 0; i < f.size(); i += 16) store16(out.data() + i, load16(f.data() + i));
  for (size_t i = 0; i < f.size(); ++i)
    ASSERT_EQ(out[i].bits, bf16::round_from_float(f[i])) << std::hex << bits[i];
  std::vector<float> back(bits.size());
  for (size_t i = 0; i < f.size(); i += 16) store16(back.data() + i, load16(out.data() + i));
  for (size_t i = 0; i < f.size(); ++i) {
    const float ref = bf16::to_float(out[i].bits);
    ASSERT_EQ(std::memcmp(&back[i], &ref, 4), 0) << i;
  }
}

// Masked tails: lanes >= n load as 0 and are never stored; the source ends exactly at n elements
// before a guard page would be the strongest check, here the bytes past n are poisoned instead
// and must survive, for f32 and bf16.
TEST(SimdF16, MaskedTailsLoadZeroAndStoreOnlyN) {
  float src[16];
  bf16 src_h[16];
  for (int i = 0; i < 16; ++i) src[i] = static_cast<float>(i + 1), src_h[i].bits = bf16::round_from_float(src[i]);
  for (int64_t n = 0; n <= 16; ++n) {
    float dst[16], lanes[16];
    bf16 dst_h[16];
    for (float& v : dst) v = -1.f;
    for (bf16& v : dst_h) v.bits = 0xbf80;  // -1
    store16_tail(dst, load16_tail(src, n), n);
    store16_tail(dst_h, load16_tail(src_h, n), n);
    store16(lanes, load16_tail(src, n));
    for (int i = 0; i < 16; ++i) {
      EXPECT_EQ(dst[i], i < n ? src[i] : -1.f) << n << " " << i;
      EXPECT_EQ(dst_h[i].bits, i < n ? src_h[i].bits : 0xbf80) << n << " " << i;
      EXPECT_EQ(lanes[i], i < n ? src[i] : 0.f);
    }
  }
}
#else
TEST(SimdF16, SkippedWithoutAvx512) { GTEST_SKIP() << "build target has no AVX-512F/BW/VL/DQ: F16 not compiled"; }
#endif

}  // namespace
}  // namespace tsp::kernels
