// Chunked cross-entropy against the full-logit double reference (itself checked by finite
// differences): chunk sizes, order independence of the merge, ignore_index, shard offsets, bf16, errors.
#include "tsp/kernels/cross_entropy.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "kernels/finite_difference.h"
#include "test_util.h"
#include "tsp/kernels/reference/cross_entropy_ref.h"

namespace tsp::kernels {
namespace {

namespace ref = reference;
using testing::random_tensor;

constexpr int64_t kN = 37, kH = 24, kV = 101;

// fp32 error budget: logits are h-term fp32 dot products (|error| <= ~h 2^-24 sum|x_k w_k| ~ 2e-5
// worst case, ~1e-6 typical for x ~ N(0,1), w ~ N(0, 0.25)); exp/log and the online merge add a
// few 2^-24 relative. lse and loss (O(1..10)) are therefore within ~2e-5 absolute: tolerance 1e-5
// relative with floor 1 (i.e. 1e-5 absolute for losses below 1). Gradients: softmax probabilities
// with the same absolute logit error, accumulated by fp32 GEMMs over <= V (dx) or N (dw) terms:
// relative 1e-4 with a floor at 1e-2 of the gradient scale (scale = 1/n_valid ~ 0.03, so
// per-element gradients are O(0.03)): floor 1e-3.
constexpr double kLossTol = 1e-5;
constexpr double kGradTol = 1e-4;
constexpr double kGradFloor = 1e-3;

Tensor targets_tensor(const std::vector<int64_t>& v, DType dt) {
  Tensor t = Tensor::empty({static_cast<int64_t>(v.size())}, dt, MemCategory::workspace);
  for (size_t i = 0; i < v.size(); ++i) {
    if (dt == DType::i32) t.data<int32_t>()[i] = static_cast<int32_t>(v[i]);
    else t.data<int64_t>()[i] = v[i];
  }
  return t;
}

// Random targets with every 5th token ignored.
std::vector<int64_t> make_targets(int64_t n, int64_t v, uint64_t seed, int64_t ignore = -100) {
  Rng rng(seed);
  std::vector<int64_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[i] = (i % 5 == 3) ? ignore : static_cast<int64_t>(rng.below(static_cast<uint64_t>(v)));
  return t;
}

struct Problem {
  Tensor x, w;
  std::vector<int64_t> targets;
  ref::CrossEntropyRef expected;
  ref::Vec dx, dw;
  double scale;
};

Problem make_problem(DType dt, uint64_t seed, int64_t ignore = -100) {
  Problem p;
  p.x = random_tensor({kN, kH}, dt, seed);
  p.w = random_tensor({kV, kH}, dt, seed + 1, 0.5f);
  p.targets = make_targets(kN, kV, seed + 2, ignore);
  const ref::Vec xd = ref::to_doubles(p.x), wd = ref::to_doubles(p.w);
  p.expected = ref::cross_entropy_forward(xd, wd, kN, kH, kV, p.targets, ignore);
  p.scale = 1.0 / static_cast<double>(p.expected.n_valid);
  ref::cross_entropy_backward(xd, wd, kN, kH, kV, p.targets, ignore, p.scale, p.dx, p.dw);
  return p;
}

TEST(CrossEntropyReference, BackwardMatchesFiniteDifferences) {
  const int64_t n = 4, h = 5, v = 7;
  const ref::Vec x = ref::to_doubles(random_tensor({n, h}, DType::f32, 1));
  const ref::Vec w = ref::to_doubles(random_tensor({v, h}, DType::f32, 2));
  const std::vector<int64_t> t = {3, -100, 0, 6};
  ref::Vec dx, dw;
  ref::cross_entropy_backward(x, w, n, h, v, t, -100, 1.0 / 3, dx, dw);
  auto lx = [&](const ref::Vec& xv) { return ref::cross_entropy_forward(xv, w, n, h, v, t, -100).loss_sum / 3; };
  auto lw = [&](const ref::Vec& wv) { return ref::cross_entropy_forward(x, wv, n, h, v, t, -100).loss_sum / 3; };
  EXPECT_LT(testing::max_rel_diff(dx, testing::numeric_gradient(lx, x), testing::kFdFloor), testing::kFdTol);
  EXPECT_LT(testing::max_rel_diff(dw, testing::numeric_gradient(lw, w), testing::kFdFloor), testing::kFdTol);
}

TEST(CrossEntropy, ChunkedMatchesFullLogitReference) {
  const Problem p = make_problem(DType::f32, 10);
  for (int64_t chunk : {1, 7, 32, 100, 101, 4096}) {
    for (DType tdt : {DType::i32, DType::i64}) {
      SCOPED_TRACE(::testing::Message() << "chunk=" << chunk << " targets " << tdt);
      const CrossEntropyOptions opt{.chunk_size = chunk};
      const Tensor targets = targets_tensor(p.targets, tdt);
      Tensor lse = Tensor::empty({kN}, DType::f32, MemCategory::workspace);
      Tensor loss = Tensor::empty({kN}, DType::f32, MemCategory::workspace);
      const CrossEntropyTotals tot = cross_entropy_forward(p.x, p.w, targets, lse, loss, opt);
      EXPECT_EQ(tot.n_valid, p.expected.n_valid);
      EXPECT_NEAR(tot.loss_sum, p.expected.loss_sum, kLossTol * (1 + std::fabs(p.expected.loss_sum)));
      EXPECT_CLOSE(lse, ref::from_doubles(p.expected.lse, {kN}), kLossTol, 1.0);
      EXPECT_CLOSE(loss, ref::from_doubles(p.expected.loss, {kN}), kLossTol, 1.0);
      Tensor dx = Tensor::zeros({kN, kH}, DType::f32, MemCategory::workspace);
      Tensor dw = Tensor::zeros({kV, kH}, DType::f32, MemCategory::workspace);
      cross_entropy_backward(p.x, p.w, targets, lse, static_cast<float>(p.scale), dx, dw, opt);
      EXPECT_CLOSE(dx, ref::from_doubles(p.dx, {kN, kH}), kGradTol, kGradFloor);
      EXPECT_CLOSE(dw, ref::from_doubles(p.dw, {kV, kH}), kGradTol, kGradFloor);
    }
  }
}

// The LM-head ring: D = 4 vocabulary shards [0,26) [26,52) [52,78) [78,101) of w, folded in a
// shuffled order with their vocab_offset, and backward per shard into slices of dw.
TEST(CrossEntropy, VocabShardsInShuffledOrderMatchWholeVocabulary) {
  const Problem p = make_problem(DType::f32, 20);
  const Tensor targets = targets_tensor(p.targets, DType::i64);
  const int64_t bounds[5] = {0, 26, 52, 78, kV};
  const CrossEntropyOptions opt{.chunk_size = 16};
  Tensor lse_ordered = Tensor::empty({kN}, DType::f32, MemCategory::workspace);
  {
    CrossEntropyState st(kN);
    for (int r = 0; r < 4; ++r)
      cross_entropy_chunk_forward(p.x, p.w.slice(0, bounds[r], bounds[r + 1] - bounds[r]), bounds[r], targets, st, opt);
    cross_entropy_finalize(st, targets, lse_ordered, Tensor(), opt);
  }
  for (const std::vector<int>& order : {std::vector<int>{2, 0, 3, 1}, std::vector<int>{3, 2, 1, 0}}) {
    CrossEntropyState st(kN);
    for (int r : order)
      cross_entropy_chunk_forward(p.x, p.w.slice(0, bounds[r], bounds[r + 1] - bounds[r]), bounds[r], targets, st, opt);
    Tensor lse = Tensor::empty({kN}, DType::f32, MemCategory::workspace);
    Tensor loss = Tensor::empty({kN}, DType::f32, MemCategory::workspace);
    const CrossEntropyTotals tot = cross_entropy_finalize(st, targets, lse, loss, opt);
    // A different merge order only reorders fp32 rounding (a few 2^-24 relative of lse).
    EXPECT_CLOSE(lse, lse_ordered, 1e-6, 1.0);
    EXPECT_CLOSE(lse, ref::from_doubles(p.expected.lse, {kN}), kLossTol, 1.0);
    EXPECT_CLOSE(loss, ref::from_doubles(p.expected.loss, {kN}), kLossTol, 1.0);
    EXPECT_EQ(tot.n_valid, p.expected.n_valid);
    Tensor dx = Tensor::zeros({kN, kH}, DType::f32, MemCategory::workspace);
    Tensor dw = Tensor::zeros({kV, kH}, DType::f32, MemCategory::workspace);
    for (int r : order) {
      const int64_t len = bounds[r + 1] - bounds[r];
      cross_entropy_chunk_backward(p.x, p.w.slice(0, bounds[r], len), bounds[r], targets, lse,
                                   static_cast<float>(p.scale), dx, dw.slice(0, bounds[r], len), opt);
    }
    EXPECT_CLOSE(dx, ref::from_doubles(p.dx, {kN, kH}), kGradTol, kGradFloor);
    EXPECT_CLOSE(dw, ref::from_doubles(p.dw, {kV, kH}), kGradTol, kGradFloor);
  }
}

TEST(CrossEntropy, IgnoredTokensContributeNothing) {
  const int64_t ignore = -1;  // a custom ignore_index
  const Problem p = make_problem(DType::f32, 30, ignore);
  const CrossEntropyOptions opt{.ignore_index = ignore, .chunk_size = 32};
  const Tensor targets = targets_tensor(p.targets, DType::i32);
  Tensor lse = Tensor::empty({kN}, DType::f32, MemCategory::workspace);
  Tensor loss = Tensor::empty({kN}, DType::f32, MemCategory::workspace);
  const CrossEntropyTotals tot = cross_entropy_forward(p.x, p.w, targets, lse, loss, opt);
  Tensor dx = Tensor::zeros({kN, kH}, DType::f32, MemCategory::workspace);
  Tensor dw = Tensor::zeros({kV, kH}, DType::f32, MemCategory::workspace);
  cross_entropy_backward(p.x, p.w, targets, lse, 1.f / static_cast<float>(tot.n_valid), dx, dw, opt);
  // The same problem with the ignored tokens removed.
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < kN; ++i)
    if (p.targets[i] != ignore) keep.push_back(i);
  const int64_t nk = static_cast<int64_t>(keep.size());
  EXPECT_EQ(tot.n_valid, nk);
  Tensor xk = Tensor::empty({nk, kH}, DType::f32, MemCategory::workspace);
  std::vector<int64_t> tk;
  for (int64_t j = 0; j < nk; ++j) {
    xk.slice(0, j, 1).copy_from(p.x.slice(0, keep[j], 1));
    tk.push_back(p.targets[keep[j]]);
  }
  Tensor lse_k = Tensor::empty({nk}, DType::f32, MemCategory::workspace);
  const CrossEntropyTotals tot_k = cross_entropy_forward(xk, p.w, targets_tensor(tk, DType::i32), lse_k, Tensor(), opt);
  EXPECT_NEAR(tot.loss_sum, tot_k.loss_sum, 1e-9 * std::fabs(tot_k.loss_sum));
  Tensor dw_k = Tensor::zeros({kV, kH}, DType::f32, MemCategory::workspace);
  cross_entropy_backward(xk, p.w, targets_tensor(tk, DType::i32), lse_k, 1.f / static_cast<float>(nk), Tensor(), dw_k, opt);
  EXPECT_CLOSE(dw, dw_k, kGradTol, kGradFloor);
  for (int64_t i = 0; i < kN; ++i) {
    if (p.targets[i] != ignore) continue;
    EXPECT_EQ(loss.item_f32(i), 0.f);
    for (int64_t k = 0; k < kH; ++k) EXPECT_EQ(dx.item_f32(i * kH + k), 0.f);
  }
}

// bf16 x and w: logits are exact products of bf16 values accumulated in fp32, so lse and loss
// match the double reference on the same bf16 inputs to the fp32 tolerance. The backward rounds
// dlogits to bf16 for the GEMMs (relative 2^-9 per element, random signs), so dx and dw are within
// a few 2^-9 in relative L2 norm: tolerance 1e-2.
TEST(CrossEntropy, Bf16MatchesReferenceWithinRounding) {
  const Problem p = make_problem(DType::bf16, 40);
  const Tensor targets = targets_tensor(p.targets, DType::i64);
  const CrossEntropyOptions opt{.chunk_size = 32};
  Tensor lse = Tensor::empty({kN}, DType::f32, MemCategory::workspace);
  Tensor loss = Tensor::empty({kN}, DType::f32, MemCategory::workspace);
  const CrossEntropyTotals tot = cross_entropy_forward(p.x, p.w, targets, lse, loss, opt);
  EXPECT_NEAR(tot.loss_sum, p.expected.loss_sum, kLossTol * (1 + std::fabs(p.expected.loss_sum)));
  EXPECT_CLOSE(lse, ref::from_doubles(p.expected.lse, {kN}), kLossTol, 1.0);
  EXPECT_CLOSE(loss, ref::from_doubles(p.expected.loss, {kN}), kLossTol, 1.0);
  Tensor dx = Tensor::zeros({kN, kH}, DType::f32, MemCategory::workspace);
  Tensor dw = Tensor::zeros({kV, kH}, DType::f32, MemCategory::workspace);
  cross_entropy_backward(p.x, p.w, targets, lse, static_cast<float>(p.scale), dx, dw, opt);
  EXPECT_LT(testing::relative_l2(dx, ref::from_doubles(p.dx, {kN, kH})), 1e-2);
  EXPECT_LT(testing::relative_l2(dw, ref::from_doubles(p.dw, {kV, kH})), 1e-2);
}

TEST(CrossEntropy, BadInputsThrowTypedErrors) {
  const Problem p = make_problem(DType::f32, 50);
  const Tensor targets = targets_tensor(p.targets, DType::i64);
  Tensor lse = Tensor::empty({kN}, DType::f32, MemCategory::workspace);
  try {
    cross_entropy_forward(p.x, random_tensor({kV, 40}, DType::f32, 1), targets, lse, Tensor());
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("f32[37, 24]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("f32[101, 40]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(cross_entropy_forward(p.x, Tensor::copy_of(p.w, DType::bf16, MemCategory::workspace), targets, lse, Tensor()),
               DTypeError);
  EXPECT_THROW(cross_entropy_forward(p.x, p.w, Tensor::zeros({kN}, DType::f32, MemCategory::workspace), lse, Tensor()),
               DTypeError);
  EXPECT_THROW(cross_entropy_forward(p.x, p.w, targets.slice(0, 0, 5), lse, Tensor()), ShapeError);
  std::vector<int64_t> bad = p.targets;
  bad[4] = kV;
  try {
    cross_entropy_forward(p.x, p.w, targets_tensor(bad, DType::i32), lse, Tensor());
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("target 101"), std::string::npos) << e.what();
  }
  // Ring use: a target outside every folded shard is caught at finalize.
  CrossEntropyState st(kN);
  cross_entropy_chunk_forward(p.x, p.w.slice(0, 0, 50), 0, targets, st);
  EXPECT_THROW(cross_entropy_finalize(st, targets, lse, Tensor()), InvalidArgument);
  Tensor dx_bf = Tensor::zeros({kN, kH}, DType::bf16, MemCategory::workspace);
  EXPECT_THROW(cross_entropy_backward(p.x, p.w, targets, lse, 1.f, dx_bf, Tensor()), DTypeError);
  EXPECT_THROW(cross_entropy_forward(p.x, p.w, targets, lse, Tensor(), {.chunk_size = 0}), InvalidArgument);
}

}  // namespace
}  // namespace tsp::kernels
