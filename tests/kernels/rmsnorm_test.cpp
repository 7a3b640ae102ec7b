// kernels::rmsnorm_forward/backward against the double reference (itself checked by finite
// differences): odd sizes, strided and in-place views, dgain accumulation, bf16, thread independence,
// widths that are not multiples of the vector (masked tails) in every storage type. The SIMD path
// that ran (simd.h kVecName) is printed by RunsOnTheBuildsWidestVector.
#include "tsp/kernels/rmsnorm.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cstring>

#include "kernels/finite_difference.h"
#include "fp_bounds.h"
#include "test_util.h"
#include "tsp/kernels/reference/pointwise_ref.h"
#include "tsp/kernels/simd.h"

namespace tsp::kernels {
namespace {

namespace ref = reference;
using testing::random_tensor;

constexpr double kEps = 1e-5;

// fp32 forward: sum of h squares (relative error <= h * 2^-24 ~ 2.4e-6 at h = 40, all terms
// positive so no cancellation), a sqrt, a divide and two multiplies: every y element is within
// ~(h/2 + 4) * 2^-24 < 1e-5 relative of the exact value. Tolerance 2e-5.
constexpr double kFwdTol = 2e-5;
// fp32 backward against the double reference: per-element bounds on the magnitude of the summed
// terms (check_backward). kBwdTol / kBwdFloor: the bf16 kernel against the fp32 kernel on the same
// inputs (Bf16WithinRoundingOfFp32), which share their fp32 sums: the difference is the bf16
// rounding of the outputs plus at most 1e-4 of |dx| + 1e-2.
constexpr double kBwdTol = 1e-4;
constexpr double kBwdFloor = 1e-2;

TEST(RmsNormReference, BackwardMatchesFiniteDifferences) {
  const int64_t n = 3, h = 24;
  const ref::Vec x = ref::to_doubles(random_tensor({n, h}, DType::f32, 1));
  const ref::Vec g = ref::to_doubles(random_tensor({h}, DType::f32, 2));
  const ref::Vec dy = ref::to_doubles(random_tensor({n, h}, DType::f32, 3));
  ref::Vec dx, dg;
  ref::rmsnorm_backward(dy, x, g, n, h, kEps, dx, dg);
  auto loss_x = [&](const ref::Vec& xv) {
    ref::Vec y, r;
    ref::rmsnorm_forward(xv, g, n, h, kEps, y, r);
    return testing::dot(dy, y);
  };
  auto loss_g = [&](const ref::Vec& gv) {
    ref::Vec y, r;
    ref::rmsnorm_forward(x, gv, n, h, kEps, y, r);
    return testing::dot(dy, y);
  };
  EXPECT_LT(testing::max_rel_diff(dx, testing::numeric_gradient(loss_x, x), testing::kFdFloor), testing::kFdTol);
  EXPECT_LT(testing::max_rel_diff(dg, testing::numeric_gradient(loss_g, g), testing::kFdFloor), testing::kFdTol);
}

void check_forward(int64_t n, int64_t h, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "n=" << n << " h=" << h);
  Tensor x = random_tensor({n, h}, DType::f32, seed);
  Tensor g = random_tensor({h}, DType::f32, seed + 1);
  Tensor y = Tensor::empty({n, h}, DType::f32, MemCategory::workspace);
  Tensor rstd = Tensor::empty({n}, DType::f32, MemCategory::workspace);
  rmsnorm_forward(x, g, y, rstd, {.eps = static_cast<float>(kEps)});
  ref::Vec ry, rr;
  ref::rmsnorm_forward(ref::to_doubles(x), ref::to_doubles(g), n, h, kEps, ry, rr);
  EXPECT_CLOSE(y, ref::from_doubles(ry, {n, h}), kFwdTol, 1e-6);
  EXPECT_CLOSE(rstd, ref::from_doubles(rr, {n}), kFwdTol, 1e-6);
}

TEST(RmsNorm, ForwardMatchesReference) {
  check_forward(37, 24, 10);
  check_forward(37, 40, 11);
  check_forward(5, 600, 12);  // several 256-column blocks, the last partial
  check_forward(1, 1, 13);
}

void check_backward(int64_t n, int64_t h, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "n=" << n << " h=" << h);
  Tensor x = random_tensor({n, h}, DType::f32, seed);
  Tensor g = random_tensor({h}, DType::f32, seed + 1);
  Tensor dy = random_tensor({n, h}, DType::f32, seed + 2);
  Tensor y = Tensor::empty({n, h}, DType::f32, MemCategory::workspace);
  Tensor rstd = Tensor::empty({n}, DType::f32, MemCategory::workspace);
  rmsnorm_forward(x, g, y, rstd, {.eps = static_cast<float>(kEps)});
  Tensor dx = Tensor::empty({n, h}, DType::f32, MemCategory::workspace);
  Tensor dg = Tensor::empty({h}, DType::f32, MemCategory::workspace);
  dg.fill(0.5f);  // dgain accumulates
  rmsnorm_backward(dy, x, g, rstd, dx, dg);
  ref::Vec rdx, rdg;
  ref::rmsnorm_backward(ref::to_doubles(dy), ref::to_doubles(x), ref::to_doubles(g), n, h, kEps, rdx, rdg);
  for (double& v : rdg) v += 0.5;
  // Derived per-element bounds on the magnitude of the summed terms (any summation order):
  // dx_nk = r g_k dy_nk - (r^3 / h) x_nk sum_j g_j dy_nj x_nj: the h-term sum errs by gamma_h of
  // sum_j |g dy x|, r (itself from an h-term sum of squares, a sqrt and a divide) by
  // gamma_{h+3} relative, so |err| <= gamma_{3h+12} (|r g_k dy_nk| + (r^3 / h) |x_nk| sum_j |g dy x|),
  // plus the reference's f32 rounding. dg_k = 0.5 + sum_n dy_nk x_nk r_n (n terms, each with r's
  // error): gamma_{n+h+6} (0.5 + sum_n |dy x r|).
  const ref::Vec xd = ref::to_doubles(x), gd = ref::to_doubles(g), dyd = ref::to_doubles(dy);
  ref::Vec mdx(static_cast<size_t>(n * h)), mdg(static_cast<size_t>(h), 0.5);
  for (int64_t i = 0; i < n; ++i) {
    double ss = 0, sgdx = 0;
    for (int64_t k = 0; k < h; ++k) ss += xd[i * h + k] * xd[i * h + k];
    const double r = 1 / std::sqrt(ss / static_cast<double>(h) + kEps);
    for (int64_t k = 0; k < h; ++k) sgdx += std::fabs(gd[k] * dyd[i * h + k] * xd[i * h + k]);
    for (int64_t k = 0; k < h; ++k) {
      mdx[i * h + k] = std::fabs(r * gd[k] * dyd[i * h + k]) + r * r * r / static_cast<double>(h) * std::fabs(xd[i * h + k]) * sgdx;
      mdg[k] += std::fabs(dyd[i * h + k] * xd[i * h + k] * r);
    }
  }
  EXPECT_TERMS_CLOSE(dx, ref::from_doubles(rdx, {n, h}), ref::from_doubles(mdx, {n, h}),
                     testing::gamma_n(3 * h + 12), testing::kUnitF32);
  EXPECT_TERMS_CLOSE(dg, ref::from_doubles(rdg, {h}), ref::from_doubles(mdg, {h}), testing::gamma_n(n + h + 6),
                     testing::kUnitF32);
}

TEST(RmsNorm, BackwardMatchesReferenceAndAccumulatesGain) {
  check_backward(37, 24, 20);
  check_backward(37, 40, 21);
  check_backward(130, 300, 22);  // several 64-row dgain blocks, the last partial
}

TEST(RmsNorm, StridedAndInPlaceViews) {
  const int64_t n = 37, h = 40;
  Tensor buf = random_tensor({n, 3 * h}, DType::f32, 30);
  Tensor x = buf.slice(1, h, h);  // a column slice: row stride 3h
  Tensor g = random_tensor({h}, DType::f32, 31);
  Tensor xc = x.to_f32();
  Tensor y_ref = Tensor::empty({n, h}, DType::f32, MemCategory::workspace);
  Tensor r_ref = Tensor::empty({n}, DType::f32, MemCategory::workspace);
  rmsnorm_forward(xc, g, y_ref, r_ref);
  Tensor rstd = Tensor::empty({n}, DType::f32, MemCategory::workspace);
  rmsnorm_forward(x, g, x, rstd);  // in place on the strided view
  EXPECT_CLOSE(x, y_ref, 0.0, 1e-6);
  EXPECT_CLOSE(rstd, r_ref, 0.0, 1e-6);
  // Columns outside the slice are untouched.
  Tensor fresh = random_tensor({n, 3 * h}, DType::f32, 30);
  EXPECT_CLOSE(buf.slice(1, 0, h), fresh.slice(1, 0, h), 0.0, 1e-6);
  EXPECT_CLOSE(buf.slice(1, 2 * h, h), fresh.slice(1, 2 * h, h), 0.0, 1e-6);
  // Undefined rstd: inference, nothing saved.
  Tensor y2 = Tensor::empty({n, h}, DType::f32, MemCategory::workspace);
  rmsnorm_forward(xc, g, y2, Tensor());
  EXPECT_CLOSE(y2, y_ref, 0.0, 1e-6);
}

// bf16 storage: the kernel reads bf16 inputs exactly and rounds outputs once, so against the fp32
// kernel run on the same (bf16-rounded) inputs the only extra error is the output rounding,
// relative 2^-9 ~ 2e-3 (round to nearest with an 8-bit significand). Tolerance 2^-8 (plus the fp32
// tolerance); backward judged on the same floor as the fp32 backward.
TEST(RmsNorm, Bf16WithinRoundingOfFp32) {
  const int64_t n = 37, h = 40;
  Tensor x = random_tensor({n, h}, DType::bf16, 40);
  Tensor g = random_tensor({h}, DType::bf16, 41);
  Tensor dy = random_tensor({n, h}, DType::bf16, 42);
  Tensor y = Tensor::empty({n, h}, DType::bf16, MemCategory::workspace);
  Tensor rstd = Tensor::empty({n}, DType::f32, MemCategory::workspace);
  rmsnorm_forward(x, g, y, rstd);
  Tensor xf = x.to_f32(), gf = g.to_f32(), dyf = dy.to_f32();
  Tensor yf = Tensor::empty({n, h}, DType::f32, MemCategory::workspace);
  Tensor rstdf = Tensor::empty({n}, DType::f32, MemCategory::workspace);
  rmsnorm_forward(xf, gf, yf, rstdf);
  EXPECT_CLOSE(y, yf, 1.0 / 256 + kFwdTol, 1e-6);
  EXPECT_CLOSE(rstd, rstdf, 1e-6, 1e-6);
  Tensor dx = Tensor::empty({n, h}, DType::bf16, MemCategory::workspace);
  Tensor dg = Tensor::zeros({h}, DType::f32, MemCategory::workspace);
  rmsnorm_backward(dy, x, g, rstd, dx, dg);
  Tensor dxf = Tensor::empty({n, h}, DType::f32, MemCategory::workspace);
  Tensor dgf = Tensor::zeros({h}, DType::f32, MemCategory::workspace);
  rmsnorm_backward(dyf, xf, gf, rstdf, dxf, dgf);
  EXPECT_CLOSE(dx, dxf, 1.0 / 256 + kBwdTol, kBwdFloor);
  EXPECT_CLOSE(dg, dgf, kBwdTol, kBwdFloor);
}

TEST(RmsNorm, ResultsDoNotDependOnThreadCount) {
  const int64_t n = 300, h = 72;
  Tensor x = random_tensor({n, h}, DType::f32, 50);
  Tensor g = random_tensor({h}, DType::f32, 51);
  Tensor dy = random_tensor({n, h}, DType::f32, 52);
  Tensor rstd = Tensor::empty({n}, DType::f32, MemCategory::workspace);
  Tensor y = Tensor::empty({n, h}, DType::f32, MemCategory::workspace);
  rmsnorm_forward(x, g, y, rstd);
  Tensor dg[2], dx[2];
  const int saved = omp_get_max_threads();
  for (int k = 0; k < 2; ++k) {
    omp_set_num_threads(k == 0 ? 1 : 3);
    dx[k] = Tensor::empty({n, h}, DType::f32, MemCategory::workspace);
    dg[k] = Tensor::zeros({h}, DType::f32, MemCategory::workspace);
    rmsnorm_backward(dy, x, g, rstd, dx[k], dg[k]);
  }
  omp_set_num_threads(saved);
  EXPECT_EQ(std::memcmp(dg[0].raw(), dg[1].raw(), dg[0].nbytes()), 0);
  EXPECT_EQ(std::memcmp(dx[0].raw(), dx[1].raw(), dx[0].nbytes()), 0);
}

// The kernel is written once against simd.h Vec: 16 lanes where the build target has AVX-512,
// else 8 (AVX2 or the scalar fallback). Names the path in the log and the XML report.
TEST(RmsNorm, RunsOnTheBuildsWidestVector) {
  std::printf("[   simd   ] rmsnorm: %s (%d fp32 lanes)\n", simd::kVecName, simd::kLanes);
  RecordProperty("simd", simd::kVecName);
  EXPECT_EQ(simd::kLanes, TSP_SIMD_AVX512 ? 16 : 8);
}

// Widths around and between vector multiples for both widths (1, 7, 15, 17, 31, 33; 205 = three
// 64-column unrolled steps + 13): the masked tails against the double reference with the bounds
// of ForwardMatchesReference / check_backward ((h/2 + 4) 2^-24 < 2e-5 still holds at h = 205).
TEST(RmsNorm, MaskedTailsMatchReference) {
  uint64_t seed = 100;
  for (const int64_t h : {1, 7, 15, 17, 31, 33, 205}) {
    check_forward(19, h, seed++);
    check_backward(70, h, seed++);
  }
}

// Tails must not touch memory past the row: rows of width h as column slices of a wider buffer
// whose other columns stay bit-identical, for f32 and bf16 storage (forward and backward), and
// the bf16 results within one output rounding (2^-8 relative, as Bf16WithinRoundingOfFp32) of
// the fp32 kernel on the same inputs, with mixed storage types (bf16 x, f32 gain, f32 dx).
TEST(RmsNorm, MaskedTailsWriteOnlyTheRow) {
  for (const DType dt : {DType::f32, DType::bf16}) {
    for (const int64_t h : {1, 15, 17, 33}) {
      SCOPED_TRACE(::testing::Message() << dt << " h=" << h);
      const int64_t n = 9, w = 3 * h + 5;
      Tensor xbuf = random_tensor({n, w}, dt, 200 + h);
      Tensor ybuf = random_tensor({n, w}, dt, 300 + h);
      Tensor dbuf = random_tensor({n, w}, dt, 400 + h);
      const Tensor y_before = Tensor::copy_of(ybuf, dt, MemCategory::workspace);
      const Tensor d_before = Tensor::copy_of(dbuf, dt, MemCategory::workspace);
      Tensor x = xbuf.slice(1, h, h), y = ybuf.slice(1, h, h), dx = dbuf.slice(1, h, h);
      Tensor g = random_tensor({h}, DType::f32, 500 + h);
      Tensor dy = random_tensor({n, h}, dt, 600 + h);
      Tensor rstd = Tensor::empty({n}, DType::f32, MemCategory::workspace);
      Tensor dg = Tensor::zeros({h}, DType::f32, MemCategory::workspace);
      rmsnorm_forward(x, g, y, rstd);
      rmsnorm_backward(dy, x, g, rstd, dx, dg);
      for (const int64_t c0 : {int64_t{0}, 2 * h}) {
        const int64_t cw = c0 == 0 ? h : w - 2 * h;
        EXPECT_CLOSE(ybuf.slice(1, c0, cw), y_before.slice(1, c0, cw), 0.0, 1e-6);
        EXPECT_CLOSE(dbuf.slice(1, c0, cw), d_before.slice(1, c0, cw), 0.0, 1e-6);
      }
      // The same inputs through the fp32 kernel (exact for bf16: widening is exact).
      Tensor xf = x.to_f32(), dyf = dy.to_f32();
      Tensor yf = Tensor::empty({n, h}, DType::f32, MemCategory::workspace);
      Tensor rf = Tensor::empty({n}, DType::f32, MemCategory::workspace);
      Tensor dxf = Tensor::empty({n, h}, DType::f32, MemCategory::workspace);
      Tensor dxm = Tensor::empty({n, h}, DType::f32, MemCategory::workspace);
      Tensor dgf = Tensor::zeros({h}, DType::f32, MemCategory::workspace);
      Tensor dgm = Tensor::zeros({h}, DType::f32, MemCategory::workspace);
      rmsnorm_forward(xf, g, yf, rf);
      rmsnorm_backward(dyf, xf, g, rf, dxf, dgf);
      rmsnorm_backward(dy, x, g, rstd, dxm, dgm);  // dt inputs, f32 dx: no output rounding
      const double out_tol = dt == DType::bf16 ? 1.0 / 256 : 0.0;
      EXPECT_CLOSE(y, yf, out_tol + kFwdTol, 1e-6);
      EXPECT_CLOSE(dx, dxf, out_tol + kBwdTol, kBwdFloor);
      EXPECT_CLOSE(dxm, dxf, kBwdTol, kBwdFloor);
      EXPECT_CLOSE(dgm, dgf, kBwdTol, kBwdFloor);
    }
  }
}

TEST(RmsNorm, BadInputsThrowTypedErrors) {
  Tensor x = random_tensor({37, 40}, DType::f32, 60);
  Tensor g = random_tensor({40}, DType::f32, 61);
  Tensor y = Tensor::empty({37, 40}, DType::f32, MemCategory::workspace);
  Tensor rstd = Tensor::empty({37}, DType::f32, MemCategory::workspace);
  Tensor y_bad = Tensor::empty({37, 24}, DType::f32, MemCategory::workspace);
  try {
    rmsnorm_forward(x, g, y_bad, rstd);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("f32[37, 40]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("f32[37, 24]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(rmsnorm_forward(x, random_tensor({24}, DType::f32, 1), y, rstd), ShapeError);
  EXPECT_THROW(rmsnorm_forward(x, g, y, Tensor::empty({37}, DType::bf16, MemCategory::workspace)),
               DTypeError);
  EXPECT_THROW(rmsnorm_forward(Tensor::zeros({37, 40}, DType::i32, MemCategory::workspace), g, y, rstd),
               DTypeError);
  Tensor xt = random_tensor({40, 37}, DType::f32, 62).transpose(0, 1);  // column-major view
  EXPECT_THROW(rmsnorm_forward(xt, g, y, rstd), LayoutError);
  Tensor dg_bf = Tensor::zeros({40}, DType::bf16, MemCategory::workspace);
  EXPECT_THROW(rmsnorm_backward(x, x, g, rstd, y, dg_bf), DTypeError);
}

}  // namespace
}  // namespace tsp::kernels
