// kernels::rope_forward/backward against the double reference: HF rotate_half convention, zigzag
// (shuffled) positions, strided q/k slices of a fused buffer, inverse property, bf16, errors, half
// widths that are not multiples of the vector (masked tails); RunsOnTheBuildsWidestVector prints
// the SIMD path (simd.h kVecName).
#include "tsp/kernels/rope.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>

#include "kernels/finite_difference.h"
#include "test_util.h"
#include "tsp/kernels/reference/pointwise_ref.h"
#include "tsp/kernels/simd.h"

namespace tsp::kernels {
namespace {

namespace ref = reference;
using testing::random_tensor;

// fp32: cos/sin are the exact (double) values rounded once (2^-24 relative); each output is
// x1 c - x2 s: two products and a sum, so |error| <= 4 * 2^-24 * (|x1| + |x2|) (rounded cos/sin,
// products, sum), on the scale of the terms, not of the output, which may cancel to ~0. The
// inputs are N(0, 1) (|x1| + |x2| < 12 for every sample drawn here), so |error| < 3e-6:
// judged as rel 1e-5 with an absolute floor of 1 (1e-5 (|e| + 1) >= 1e-5 > 3e-6).
constexpr double kTol = 1e-5;
constexpr double kFloor = 1.0;

Tensor positions_tensor(const std::vector<int64_t>& p, DType dt = DType::i32) {
  Tensor t = Tensor::empty({static_cast<int64_t>(p.size())}, dt, MemCategory::workspace);
  for (size_t i = 0; i < p.size(); ++i) {
    if (dt == DType::i32) t.data<int32_t>()[i] = static_cast<int32_t>(p[i]);
    else t.data<int64_t>()[i] = p[i];
  }
  return t;
}

// Zigzag-like global positions of one rank: chunk p and chunk 2D-1-p of a long sequence.
std::vector<int64_t> zigzag_positions(int64_t s_local, int64_t offset_a, int64_t offset_b) {
  std::vector<int64_t> p;
  for (int64_t i = 0; i < s_local / 2; ++i) p.push_back(offset_a + i);
  for (int64_t i = 0; i < s_local - s_local / 2; ++i) p.push_back(offset_b + i);
  return p;
}

TEST(Rope, ForwardMatchesReference) {
  const int64_t B = 2, S = 7, H = 3;
  for (int64_t d : {24, 40}) {
    for (double theta : {10000.0, 500000.0}) {
      SCOPED_TRACE(::testing::Message() << "d=" << d << " theta=" << theta);
      const std::vector<int64_t> pos = zigzag_positions(S, 3, 8187);
      Tensor x = random_tensor({B, S, H, d}, DType::f32, 1);
      const ref::Vec expected = ref::rope(ref::to_doubles(x), B, S, H, d, pos, theta);
      rope_forward(x, positions_tensor(pos, DType::i64), {.theta = theta});
      EXPECT_CLOSE(x, ref::from_doubles(expected, {B, S, H, d}), kTol, kFloor);
    }
  }
}

TEST(Rope, PositionZeroIsIdentityAndPairsFollowRotateHalf) {
  // d = 4: pairs (0, 2) and (1, 3); inv_freq = {1, theta^-1/2}. Position 1, theta 100.
  Tensor x = Tensor::empty({1, 2, 1, 4}, DType::f32, MemCategory::workspace);
  const float v[8] = {1, 2, 3, 4, 1, 2, 3, 4};
  std::memcpy(x.data<float>(), v, sizeof(v));
  rope_forward(x, positions_tensor({0, 1}), {.theta = 100.0});
  const float* y = x.data<float>();
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(y[i], v[i]);
  const double a0 = 1.0, a1 = 0.1;
  EXPECT_NEAR(y[4], 1 * std::cos(a0) - 3 * std::sin(a0), 1e-6);
  EXPECT_NEAR(y[6], 3 * std::cos(a0) + 1 * std::sin(a0), 1e-6);
  EXPECT_NEAR(y[5], 2 * std::cos(a1) - 4 * std::sin(a1), 1e-6);
  EXPECT_NEAR(y[7], 4 * std::cos(a1) + 2 * std::sin(a1), 1e-6);
}

TEST(Rope, ShuffledPositionsEqualPermutedOrderedPositions) {
  const int64_t B = 2, S = 16, H = 3, d = 24;
  std::vector<int64_t> ordered(S);
  std::iota(ordered.begin(), ordered.end(), 0);
  std::vector<int64_t> perm = ordered;
  Rng rng(7);
  for (int64_t i = S - 1; i > 0; --i) std::swap(perm[i], perm[rng.below(static_cast<uint64_t>(i + 1))]);
  Tensor x = random_tensor({B, S, H, d}, DType::f32, 2);
  Tensor xp = Tensor::empty({B, S, H, d}, DType::f32, MemCategory::workspace);
  for (int64_t s = 0; s < S; ++s) xp.slice(1, s, 1).copy_from(x.slice(1, perm[s], 1));
  rope_forward(x, positions_tensor(ordered));
  rope_forward(xp, positions_tensor(perm));
  // Same position, same table entry, same arithmetic: bit-identical.
  for (int64_t s = 0; s < S; ++s) EXPECT_CLOSE(xp.slice(1, s, 1), x.slice(1, perm[s], 1), 0.0, 1e-6);
}

TEST(RopeReference, BackwardIsTheGradientOfForward) {
  // The loss sum(dy * rope(x)) is linear in x, so its gradient is rope^T(dy) = rope(dy, -angle).
  const int64_t B = 1, S = 3, H = 2, d = 8;
  const std::vector<int64_t> pos = {5, 0, 1234};
  const ref::Vec x = ref::to_doubles(random_tensor({B, S, H, d}, DType::f32, 3));
  const ref::Vec dy = ref::to_doubles(random_tensor({B, S, H, d}, DType::f32, 4));
  auto loss = [&](const ref::Vec& xv) { return testing::dot(dy, ref::rope(xv, B, S, H, d, pos, 1e4)); };
  const ref::Vec fd = testing::numeric_gradient(loss, x);
  EXPECT_LT(testing::max_rel_diff(ref::rope(dy, B, S, H, d, pos, 1e4, -1.0), fd, testing::kFdFloor), testing::kFdTol);
}

TEST(Rope, BackwardMatchesReferenceAndInvertsForward) {
  const int64_t B = 2, S = 6, H = 5, d = 40;
  const std::vector<int64_t> pos = zigzag_positions(S, 100, 30000);
  Tensor dy = random_tensor({B, S, H, d}, DType::f32, 5);
  const ref::Vec expected = ref::rope(ref::to_doubles(dy), B, S, H, d, pos, 1e4, -1.0);
  Tensor g = dy.to_f32();
  const RopeTable table(positions_tensor(pos), d);
  rope_backward(g, table);
  EXPECT_CLOSE(g, ref::from_doubles(expected, {B, S, H, d}), kTol, kFloor);
  // forward then backward: a rotation and its inverse. Each output rounds 2 products and a sum of
  // terms up to |x1| + |x2| ~ 6, twice: |error| <= ~6 * 6 * 2^-24 ~ 2e-6 in the worst case, on the
  // absolute scale of the O(1) inputs (floor 1).
  Tensor x = random_tensor({B, S, H, d}, DType::f32, 6);
  Tensor y = x.to_f32();
  rope_forward(y, table);
  rope_backward(y, table);
  EXPECT_CLOSE(y, x, 2e-6, 1.0);
}

TEST(Rope, StridedQkSlicesOfFusedBuffer) {
  const int64_t B = 2, S = 5, H = 4, Hkv = 2, d = 24;
  Tensor fused = random_tensor({B, S, H + 2 * Hkv, d}, DType::f32, 8);
  Tensor original = fused.to_f32();
  Tensor q = fused.slice(2, 0, H), k = fused.slice(2, H, Hkv);
  Tensor qc = q.to_f32(), kc = k.to_f32();
  const Tensor pos = positions_tensor(zigzag_positions(S, 0, 17));
  const RopeTable table(pos, d);
  rope_forward(q, table);
  rope_forward(k, table);
  rope_forward(qc, table);
  rope_forward(kc, table);
  EXPECT_CLOSE(q, qc, 0.0, 1e-6);
  EXPECT_CLOSE(k, kc, 0.0, 1e-6);
  EXPECT_CLOSE(fused.slice(2, H + Hkv, Hkv), original.slice(2, H + Hkv, Hkv), 0.0, 1e-6);  // v untouched
}

// bf16 storage: fp32 math on bf16 inputs (exact), one rounding of each output: relative 2^-9.
// Against the fp32 kernel on the same inputs: tolerance 2^-8 with the fp32 floor.
TEST(Rope, Bf16WithinRoundingOfFp32) {
  const int64_t B = 2, S = 7, H = 3, d = 24;
  Tensor x = random_tensor({B, S, H, d}, DType::bf16, 9);
  Tensor xf = x.to_f32();
  const Tensor pos = positions_tensor(zigzag_positions(S, 40, 900));
  rope_forward(x, pos);
  rope_forward(xf, pos);
  EXPECT_CLOSE(x, xf, 1.0 / 256, kFloor);
}

TEST(Rope, RunsOnTheBuildsWidestVector) {
  std::printf("[   simd   ] rope: %s (%d fp32 lanes)\n", simd::kVecName, simd::kLanes);
  RecordProperty("simd", simd::kVecName);
  EXPECT_EQ(simd::kLanes, TSP_SIMD_AVX512 ? 16 : 8);
}

// half = d / 2 of 1, 7, 17, 32 and 33 columns: tail-only rows, one full vector plus a masked
// tail, full vectors only; forward and backward against the reference (kTol / kFloor as above),
// bf16 within one output rounding of fp32 (as Bf16WithinRoundingOfFp32), and the neighbouring
// heads of a fused buffer (v) bit-identical: the masked stores write nothing past the row.
TEST(Rope, MaskedTailsMatchReferenceAndStayInTheirRows) {
  const int64_t B = 1, S = 5, H = 2;
  for (const int64_t d : {2, 14, 34, 64, 66}) {
    SCOPED_TRACE(::testing::Message() << "d=" << d);
    const std::vector<int64_t> pos = zigzag_positions(S, 11, 4000);
    const RopeTable table(positions_tensor(pos), d);
    for (const DType dt : {DType::f32, DType::bf16}) {
      SCOPED_TRACE(::testing::Message() << dt);
      Tensor fused = random_tensor({B, S, H + 1, d}, dt, 70 + d);
      const Tensor original = Tensor::copy_of(fused, dt, MemCategory::workspace);
      Tensor x = fused.slice(2, 0, H);
      Tensor xf = x.to_f32();
      const ref::Vec fwd = ref::rope(ref::to_doubles(x), B, S, H, d, pos, 1e4);
      const ref::Vec bwd = ref::rope(ref::to_doubles(x), B, S, H, d, pos, 1e4, -1.0);
      rope_forward(x, table);
      rope_forward(xf, table);
      EXPECT_CLOSE(xf, ref::from_doubles(fwd, {B, S, H, d}), kTol, kFloor);
      EXPECT_CLOSE(x, xf, dt == DType::bf16 ? 1.0 / 256 : 0.0, kFloor);
      EXPECT_CLOSE(fused.slice(2, H, 1), original.slice(2, H, 1), 0.0, 1e-6);
      Tensor gb = original.slice(2, 0, H).to_f32();
      rope_backward(gb, table);
      EXPECT_CLOSE(gb, ref::from_doubles(bwd, {B, S, H, d}), kTol, kFloor);
    }
  }
}

TEST(Rope, BadInputsThrowTypedErrors) {
  Tensor x = random_tensor({2, 7, 3, 24}, DType::f32, 10);
  const Tensor pos = positions_tensor({0, 1, 2, 3, 4, 5, 6});
  EXPECT_THROW((void)RopeTable(pos, 23), InvalidArgument);
  try {
    rope_forward(x, positions_tensor({0, 1, 2}));
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("f32[2, 7, 3, 24]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(rope_forward(x, Tensor::zeros({7}, DType::f32, MemCategory::workspace)), DTypeError);
  EXPECT_THROW(rope_forward(x, positions_tensor({0, 1, 2, -3, 4, 5, 6})), InvalidArgument);
  EXPECT_THROW(rope_forward(random_tensor({2, 7, 24, 3}, DType::f32, 2).transpose(2, 3), pos), LayoutError);
  EXPECT_THROW(rope_forward(random_tensor({7, 3, 24}, DType::f32, 1), pos), ShapeError);
}

}  // namespace
}  // namespace tsp::kernels
