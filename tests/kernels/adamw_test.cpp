// kernels::adamw_step against a hand-written double AdamW (torch.optim.AdamW's formula) over three
// steps, against the reference on random tensors, the bf16 copy-out, and errors; sizes that are not
// multiples of the vector (masked tails); RunsOnTheBuildsWidestVector prints the SIMD path.
#include "tsp/kernels/adamw.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "test_util.h"
#include "tsp/kernels/reference/pointwise_ref.h"
#include "tsp/kernels/simd.h"

namespace tsp::kernels {
namespace {

namespace ref = reference;
using testing::random_tensor;

// fp32 vs double, same (fp32-representable) hyper-parameters. Per step: v = b2 v + (1-b2) g^2 has
// positive terms (~3 roundings, relative 2e-7); m = m + (1-b1)(g - m) may cancel, so its error is
// ~3 * 2^-24 of the gradient scale |g|, not of |m|; p changes by lr/bc1 * m/denom (~8 roundings,
// ~5e-7 relative of an O(lr) step) and is rounded to fp32 (2^-24 |p|). Over 3 steps: tolerance
// 2e-6 relative, with absolute floors: |g| for m, lr for p, none for v.
constexpr double kTol = 2e-6;

TEST(AdamW, ThreeStepsMatchHandComputedDouble) {
  // One parameter, explicit numbers, the PyTorch formula written out by hand.
  const AdamWOptions opt{.lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f};
  const double lr = opt.lr, b1 = opt.beta1, b2 = opt.beta2, eps = opt.eps, wd = opt.weight_decay;
  const double grads[3] = {0.5, -1.25, 0.75};
  double p = 1.5, m = 0, v = 0;
  Tensor tp = Tensor::empty({1}, DType::f32, MemCategory::workspace);
  Tensor tm = Tensor::zeros({1}, DType::f32, MemCategory::workspace);
  Tensor tv = Tensor::zeros({1}, DType::f32, MemCategory::workspace);
  Tensor tg = Tensor::empty({1}, DType::f32, MemCategory::workspace);
  tp.fill(1.5f);
  for (int t = 1; t <= 3; ++t) {
    const double g = grads[t - 1];
    p = p * (1 - lr * wd);
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g * g;
    const double denom = std::sqrt(v) / std::sqrt(1 - std::pow(b2, t)) + eps;
    p = p - lr / (1 - std::pow(b1, t)) * m / denom;
    tg.fill(static_cast<float>(g));
    adamw_step(tp, tm, tv, tg, t, opt);
    EXPECT_NEAR(tp.item_f32(0), p, kTol * (std::fabs(p) + lr)) << "step " << t;
    EXPECT_NEAR(tm.item_f32(0), m, kTol * (std::fabs(m) + 1.25)) << "step " << t;
    EXPECT_NEAR(tv.item_f32(0), v, kTol * std::fabs(v)) << "step " << t;
  }
}

TEST(AdamW, RandomTensorsMatchReferenceOverThreeSteps) {
  const int64_t n = 37 * 24;
  Tensor p = random_tensor({37, 24}, DType::f32, 1);
  Tensor m = Tensor::zeros({37, 24}, DType::f32, MemCategory::workspace);
  Tensor v = Tensor::zeros({37, 24}, DType::f32, MemCategory::workspace);
  ref::Vec rp = ref::to_doubles(p), rm(n, 0.0), rv(n, 0.0);
  const AdamWOptions opt{.lr = 3e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.05f};
  Tensor w16 = Tensor::empty({37, 24}, DType::bf16, MemCategory::weights);
  for (int t = 1; t <= 3; ++t) {
    Tensor g = random_tensor({37, 24}, DType::f32, 10 + t, 0.1f);
    adamw_step(p, m, v, g, t, opt, w16);
    // Double reference with the same (fp32-representable) hyper-parameters.
    ref::adamw_step(rp, rm, rv, ref::to_doubles(g), t, opt.lr, opt.beta1, opt.beta2, opt.eps, opt.weight_decay);
  }
  EXPECT_CLOSE(p, ref::from_doubles(rp, {37, 24}), kTol, opt.lr);
  EXPECT_CLOSE(m, ref::from_doubles(rm, {37, 24}), kTol, 0.1);  // gradient scale
  EXPECT_CLOSE(v, ref::from_doubles(rv, {37, 24}), kTol, 1e-6);
  // The bf16 model copy is exactly the rounded master.
  EXPECT_CLOSE(w16, Tensor::copy_of(p, DType::bf16, MemCategory::workspace), 0.0, 1e-6);
}

TEST(AdamW, ZeroGradientOnlyDecays) {
  Tensor p = random_tensor({101}, DType::f32, 2);
  Tensor expected = p.to_f32();
  Tensor m = Tensor::zeros({101}, DType::f32, MemCategory::workspace);
  Tensor v = Tensor::zeros({101}, DType::f32, MemCategory::workspace);
  Tensor g = Tensor::zeros({101}, DType::f32, MemCategory::workspace);
  adamw_step(p, m, v, g, 1, {.lr = 0.1f, .weight_decay = 0.5f});
  for (int64_t i = 0; i < 101; ++i)
    expected.data<float>()[i] *= static_cast<float>(1.0 - static_cast<double>(0.1f) * static_cast<double>(0.5f));
  EXPECT_CLOSE(p, expected, 0.0, 1e-6);
}

TEST(AdamW, RunsOnTheBuildsWidestVector) {
  std::printf("[   simd   ] adamw: %s (%d fp32 lanes)\n", simd::kVecName, simd::kLanes);
  RecordProperty("simd", simd::kVecName);
  EXPECT_EQ(simd::kLanes, TSP_SIMD_AVX512 ? 16 : 8);
}

// n of 1, 15, 17, 33 and 4096 + 19 (a full parallel block, then a masked tail): the reference
// over three steps (kTol and the floors of RandomTensorsMatchReferenceOverThreeSteps), the bf16
// and f32 copies exactly the (rounded) master, and nothing written past n (the tensors are
// prefixes of longer buffers whose rest stays bit-identical).
TEST(AdamW, MaskedTailsMatchReference) {
  for (const int64_t n : {1, 15, 17, 33, 4096 + 19}) {
    SCOPED_TRACE(::testing::Message() << "n=" << n);
    const int64_t pad = 5;
    Tensor pbuf = random_tensor({n + pad}, DType::f32, 7);
    Tensor mbuf = Tensor::zeros({n + pad}, DType::f32, MemCategory::workspace);
    Tensor vbuf = Tensor::zeros({n + pad}, DType::f32, MemCategory::workspace);
    Tensor wbuf = Tensor::zeros({n + pad}, DType::bf16, MemCategory::workspace);
    Tensor fbuf = Tensor::zeros({n + pad}, DType::f32, MemCategory::workspace);
    const Tensor p_tail = pbuf.slice(0, n, pad).to_f32();
    Tensor p = pbuf.slice(0, 0, n), m = mbuf.slice(0, 0, n), v = vbuf.slice(0, 0, n);
    ref::Vec rp = ref::to_doubles(p), rm(n, 0.0), rv(n, 0.0);
    const AdamWOptions opt{.lr = 3e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.05f};
    for (int t = 1; t <= 3; ++t) {
      Tensor g = random_tensor({n}, DType::f32, 20 + t, 0.1f);
      adamw_step(p, m, v, g, t, opt, t == 3 ? fbuf.slice(0, 0, n) : wbuf.slice(0, 0, n));
      ref::adamw_step(rp, rm, rv, ref::to_doubles(g), t, opt.lr, opt.beta1, opt.beta2, opt.eps, opt.weight_decay);
    }
    EXPECT_CLOSE(p, ref::from_doubles(rp, {n}), kTol, opt.lr);
    EXPECT_CLOSE(m, ref::from_doubles(rm, {n}), kTol, 0.1);
    EXPECT_CLOSE(v, ref::from_doubles(rv, {n}), kTol, 1e-6);
    EXPECT_CLOSE(fbuf.slice(0, 0, n), p, 0.0, 1e-6);  // step 3's f32 copy is the master
    EXPECT_EQ(std::memcmp(pbuf.slice(0, n, pad).raw(), p_tail.raw(), pad * sizeof(float)), 0);
    for (int64_t i = n; i < n + pad; ++i) {
      EXPECT_EQ(mbuf.item_f32(i), 0.f);
      EXPECT_EQ(vbuf.item_f32(i), 0.f);
      EXPECT_EQ(wbuf.item_f32(i), 0.f);
      EXPECT_EQ(fbuf.item_f32(i), 0.f);
    }
  }
}

TEST(AdamW, BadInputsThrowTypedErrors) {
  Tensor p = random_tensor({37, 24}, DType::f32, 3);
  Tensor m = Tensor::zeros({37, 24}, DType::f32, MemCategory::workspace);
  Tensor v = Tensor::zeros({37, 24}, DType::f32, MemCategory::workspace);
  Tensor g = Tensor::zeros({37, 24}, DType::f32, MemCategory::workspace);
  EXPECT_THROW(adamw_step(p, m, v, g, 0, {}), InvalidArgument);
  try {
    adamw_step(p, m, v, Tensor::zeros({37, 40}, DType::f32, MemCategory::workspace), 1, {});
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("f32[37, 40]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("f32[37, 24]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(adamw_step(p, m, v, Tensor::zeros({37, 24}, DType::bf16, MemCategory::workspace), 1, {}),
               DTypeError);
  EXPECT_THROW(adamw_step(p, m, v, g, 1, {}, Tensor::zeros({37, 24}, DType::i32, MemCategory::workspace)),
               DTypeError);
  EXPECT_THROW(adamw_step(p, m, v, g, 1, {.beta1 = 1.0f}), InvalidArgument);
  Tensor big = Tensor::zeros({37, 48}, DType::f32, MemCategory::workspace);
  EXPECT_THROW(adamw_step(p, m, big.slice(1, 0, 24), g, 1, {}), LayoutError);
}

}  // namespace
}  // namespace tsp::kernels
