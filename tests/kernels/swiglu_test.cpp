// kernels::swiglu_forward/backward against the double reference (checked by finite differences):
// gate/up as column slices of a fused buffer, in-place backward, bf16, errors, widths that are not
// multiples of the vector (masked tails); RunsOnTheBuildsWidestVector prints the SIMD path.
#include "tsp/kernels/swiglu.h"

#include <gtest/gtest.h>

#include "kernels/finite_difference.h"
#include "test_util.h"
#include "tsp/kernels/reference/pointwise_ref.h"
#include "tsp/kernels/simd.h"

namespace tsp::kernels {
namespace {

namespace ref = reference;
using testing::random_tensor;

// fp32: expf (<= 1 ulp in glibc), one add, a divide and two multiplies: each output is within
// ~6 * 2^-24 ~ 4e-7 relative of exact; no cancellation in the forward (relative check, floor 1e-6).
// Backward: silu' = s (1 + g (1 - s)) cancels near g ~ -1.28, where the error is a few 2^-24 on
// the absolute scale of |dout * up| (O(1), up to ~10 here: gate ~ N(0, 9), up, dout ~ N(0, 1)):
// so relative 2e-5 with a floor of 0.1, i.e. ~2e-6 absolute near zero.
constexpr double kFwdTol = 2e-6;
constexpr double kBwdTol = 2e-5;
constexpr double kBwdFloor = 0.1;

TEST(SwiGluReference, BackwardMatchesFiniteDifferences) {
  const ref::Vec g = ref::to_doubles(random_tensor({5, 7}, DType::f32, 1, 3.f));
  const ref::Vec u = ref::to_doubles(random_tensor({5, 7}, DType::f32, 2));
  const ref::Vec dout = ref::to_doubles(random_tensor({5, 7}, DType::f32, 3));
  ref::Vec dg, du;
  ref::swiglu_backward(dout, g, u, dg, du);
  auto lg = [&](const ref::Vec& gv) { return testing::dot(dout, ref::swiglu_forward(gv, u)); };
  auto lu = [&](const ref::Vec& uv) { return testing::dot(dout, ref::swiglu_forward(g, uv)); };
  EXPECT_LT(testing::max_rel_diff(dg, testing::numeric_gradient(lg, g), testing::kFdFloor), testing::kFdTol);
  EXPECT_LT(testing::max_rel_diff(du, testing::numeric_gradient(lu, u), testing::kFdFloor), testing::kFdTol);
}

TEST(SwiGlu, ForwardMatchesReferenceOnFusedSlices) {
  for (int64_t f : {40, 300}) {  // 300: a full and a partial 256-column block
    const int64_t n = 37;
    SCOPED_TRACE(::testing::Message() << "F=" << f);
    Tensor fused = random_tensor({n, 2 * f}, DType::f32, 10, 3.f);
    Tensor gate = fused.slice(1, 0, f), up = fused.slice(1, f, f);
    Tensor out = Tensor::empty({n, f}, DType::f32, MemCategory::workspace);
    swiglu_forward(gate, up, out);
    const ref::Vec expected = ref::swiglu_forward(ref::to_doubles(gate), ref::to_doubles(up));
    EXPECT_CLOSE(out, ref::from_doubles(expected, {n, f}), kFwdTol, 1e-6);
    // In place into the gate half.
    swiglu_forward(gate, up, gate);
    EXPECT_CLOSE(gate, out, 0.0, 1e-6);
  }
}

TEST(SwiGlu, BackwardMatchesReferenceInPlace) {
  const int64_t n = 37, f = 300;
  Tensor fused = random_tensor({n, 2 * f}, DType::f32, 20, 3.f);
  Tensor dout = random_tensor({n, f}, DType::f32, 21);
  Tensor gate = fused.slice(1, 0, f), up = fused.slice(1, f, f);
  ref::Vec rdg, rdu;
  ref::swiglu_backward(ref::to_doubles(dout), ref::to_doubles(gate), ref::to_doubles(up), rdg, rdu);
  Tensor dgate = Tensor::empty({n, f}, DType::f32, MemCategory::workspace);
  Tensor dup = Tensor::empty({n, f}, DType::f32, MemCategory::workspace);
  swiglu_backward(dout, gate, up, dgate, dup);
  EXPECT_CLOSE(dgate, ref::from_doubles(rdg, {n, f}), kBwdTol, kBwdFloor);
  EXPECT_CLOSE(dup, ref::from_doubles(rdu, {n, f}), kBwdTol, kBwdFloor);
  swiglu_backward(dout, gate, up, gate, up);  // gradients overwrite the fused activations
  EXPECT_CLOSE(gate, dgate, 0.0, 1e-6);
  EXPECT_CLOSE(up, dup, 0.0, 1e-6);
}

// bf16 storage: inputs read exactly, fp32 math, outputs rounded once (relative 2^-9): against the
// fp32 kernel on the same inputs, tolerance 2^-8 (floors as for fp32).
TEST(SwiGlu, Bf16WithinRoundingOfFp32) {
  const int64_t n = 37, f = 40;
  Tensor gate = random_tensor({n, f}, DType::bf16, 30, 3.f);
  Tensor up = random_tensor({n, f}, DType::bf16, 31);
  Tensor dout = random_tensor({n, f}, DType::bf16, 32);
  Tensor out = Tensor::empty({n, f}, DType::bf16, MemCategory::workspace);
  Tensor outf = Tensor::empty({n, f}, DType::f32, MemCategory::workspace);
  swiglu_forward(gate, up, out);
  swiglu_forward(gate.to_f32(), up.to_f32(), outf);
  EXPECT_CLOSE(out, outf, 1.0 / 256, 1e-6);
  Tensor dg = Tensor::empty({n, f}, DType::bf16, MemCategory::workspace);
  Tensor du = Tensor::empty({n, f}, DType::bf16, MemCategory::workspace);
  Tensor dgf = Tensor::empty({n, f}, DType::f32, MemCategory::workspace);
  Tensor duf = Tensor::empty({n, f}, DType::f32, MemCategory::workspace);
  swiglu_backward(dout, gate, up, dg, du);
  swiglu_backward(dout.to_f32(), gate.to_f32(), up.to_f32(), dgf, duf);
  EXPECT_CLOSE(dg, dgf, 1.0 / 256 + kBwdTol, kBwdFloor);
  EXPECT_CLOSE(du, duf, 1.0 / 256 + kBwdTol, kBwdFloor);
}

TEST(SwiGlu, RunsOnTheBuildsWidestVector) {
  std::printf("[   simd   ] swiglu: %s (%d fp32 lanes)\n", simd::kVecName, simd::kLanes);
  RecordProperty("simd", simd::kVecName);
  EXPECT_EQ(simd::kLanes, TSP_SIMD_AVX512 ? 16 : 8);
}

// F of 1, 7, 15, 17 and 33 columns (masked tails of either width), gate/up/out as column slices
// of one buffer: forward and backward against the reference (kFwdTol, kBwdTol / kBwdFloor), bf16
// within one output rounding of fp32 (as Bf16WithinRoundingOfFp32), and the buffer's spare
// columns bit-identical (the masked stores write nothing past a row).
TEST(SwiGlu, MaskedTailsMatchReferenceAndStayInTheirRows) {
  const int64_t n = 11;
  for (const int64_t f : {1, 7, 15, 17, 33}) {
    for (const DType dt : {DType::f32, DType::bf16}) {
      SCOPED_TRACE(::testing::Message() << "F=" << f << " " << dt);
      Tensor buf = random_tensor({n, 3 * f + 3}, dt, 40 + f, 3.f);
      const Tensor original = Tensor::copy_of(buf, dt, MemCategory::workspace);
      Tensor gate = buf.slice(1, 0, f), up = buf.slice(1, f, f), out = buf.slice(1, 2 * f, f);
      Tensor dout = random_tensor({n, f}, dt, 50 + f);
      const Tensor gf = gate.to_f32(), uf = up.to_f32(), df = dout.to_f32();
      Tensor outf = Tensor::empty({n, f}, DType::f32, MemCategory::workspace);
      swiglu_forward(gf, uf, outf);
      EXPECT_CLOSE(outf, ref::from_doubles(ref::swiglu_forward(ref::to_doubles(gf), ref::to_doubles(uf)), {n, f}),
                   kFwdTol, 1e-6);
      swiglu_forward(gate, up, out);
      const double round = dt == DType::bf16 ? 1.0 / 256 : 0.0;
      EXPECT_CLOSE(out, outf, round, 1e-6);
      EXPECT_CLOSE(buf.slice(1, 3 * f, 3), original.slice(1, 3 * f, 3), 0.0, 1e-6);
      ref::Vec rdg, rdu;
      ref::swiglu_backward(ref::to_doubles(df), ref::to_doubles(gf), ref::to_doubles(uf), rdg, rdu);
      Tensor dgf = Tensor::empty({n, f}, DType::f32, MemCategory::workspace);
      Tensor duf = Tensor::empty({n, f}, DType::f32, MemCategory::workspace);
      swiglu_backward(df, gf, uf, dgf, duf);
      EXPECT_CLOSE(dgf, ref::from_doubles(rdg, {n, f}), kBwdTol, kBwdFloor);
      EXPECT_CLOSE(duf, ref::from_doubles(rdu, {n, f}), kBwdTol, kBwdFloor);
      // In place: dgate over gate, dup over up (the exact-alias form), in the storage type.
      swiglu_backward(dout, gate, up, gate, up);
      EXPECT_CLOSE(gate, dgf, round + kBwdTol, kBwdFloor);
      EXPECT_CLOSE(up, duf, round + kBwdTol, kBwdFloor);
      EXPECT_CLOSE(buf.slice(1, 3 * f, 3), original.slice(1, 3 * f, 3), 0.0, 1e-6);
    }
  }
}

TEST(SwiGlu, BadInputsThrowTypedErrors) {
  Tensor g = random_tensor({37, 40}, DType::f32, 1);
  Tensor out = Tensor::empty({37, 40}, DType::f32, MemCategory::workspace);
  try {
    swiglu_forward(g, random_tensor({37, 41}, DType::f32, 2), out);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("f32[37, 41]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("f32[37, 40]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(swiglu_forward(g, Tensor::zeros({37, 40}, DType::i64, MemCategory::workspace), out),
               DTypeError);
  EXPECT_THROW(swiglu_forward(random_tensor({40, 37}, DType::f32, 3).transpose(0, 1), g, out),
               LayoutError);
  EXPECT_THROW(swiglu_backward(g, g, g, out, Tensor::empty({36, 40}, DType::f32, MemCategory::workspace)),
               ShapeError);
}

}  // namespace
}  // namespace tsp::kernels
