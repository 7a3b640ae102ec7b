// Chunked cross-entropy against the full-logit double reference (itself checked by finite
// differences): chunk sizes, order independence of the merge, ignore_index, shard offsets, bf16, errors.
#include "tsp/kernels/cross_entropy.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "kernels/finite_difference.h"
#include "fp_bounds.h"
#include "test_util.h"
#include "tsp/kernels/reference/cross_entropy_ref.h"
#include "tsp/kernels/simd.h"

namespace tsp::kernels {
namespace {

namespace ref = reference;
using testing::random_tensor;

constexpr int64_t kN = 37, kH = 24, kV = 101;

// fp32 error bounds, derived per element from the problem (derived_bounds below; issue #12: they
// hold for any summation order, i.e. any oneDNN kernel and chunking), instead of a relative
// tolerance with a small floor: a gradient element that cancels to ~0 errs on the scale of its
// terms, not its own.
using testing::gamma_n;
using testing::kUnitF32;

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

// Per-element bounds of the fp32 kernel against the double reference (rounded to f32 once):
//  - a logit z_nv = sum_k x_nk w_vk (h terms, any order) errs by <= gamma_h zmag_nv, zmag_nv =
//    sum_k |x_nk w_vk|; dz_n = gamma_h max_v zmag_nv bounds it over the row;
//  - lse_n = m + log sum_v exp(z_nv - m): the V positive terms' sum errs by gamma_V relative, exp
//    and log and the online merge of chunks by <= 10 more roundings, the logits shift it by dz_n:
//    |d lse_n| <= dz_n + gamma_{V+10} + u |lse_n| (absolute: log turns relative into absolute);
//  - loss_n = lse_n - z_ny: <= d lse_n + dz_n + u |loss_n|;
//  - p_nv = exp(z_nv - lse_n) errs by <= eps_n = dz_n + d lse_n + 4u relative;
//  - dx_nk = s sum_v (p_nv - y_nv) w_vk (V terms): <= s (gamma_V sum_v |p - y| |w_vk| +
//    eps_n sum_v p_nv |w_vk|) + u |dx_nk|; dw_vk = s sum_n (p_nv - y_nv) x_nk (N terms): the same
//    with gamma_N and the rows' eps_n;
//  - loss_sum: the rows' bounds plus gamma_N of the sum of |loss_n|.
// A kernel that drops a chunk, mis-merges lse or misses a term errs by >= 1e-2 of the terms.
struct Bounds {
  Tensor lse, loss, dx, dw;
  double loss_sum = 0;
};
Bounds derived_bounds(const Problem& p, int64_t ignore = -100) {
  const ref::Vec x = ref::to_doubles(p.x), w = ref::to_doubles(p.w);
  const double u = kUnitF32;
  ref::Vec blse(kN, 0.0), bloss(kN, 0.0), bdx(kN * kH, 0.0), bdw(kV * kH, 0.0), eps(kN, 0.0);
  double sum_loss = 0;
  for (int64_t n = 0; n < kN; ++n) {
    double zmax = 0;
    for (int64_t v = 0; v < kV; ++v) {
      double zmag = 0;
      for (int64_t k = 0; k < kH; ++k) zmag += std::fabs(x[n * kH + k] * w[v * kH + k]);
      zmax = std::max(zmax, zmag);
    }
    const double dz = gamma_n(kH) * zmax;
    blse[n] = dz + gamma_n(kV + 10) + u * std::fabs(p.expected.lse[n]);
    eps[n] = dz + blse[n] + 4 * u;
    if (p.targets[n] == ignore) continue;  // ignored rows: exactly 0 in both
    bloss[n] = blse[n] + dz + u * std::fabs(p.expected.loss[n]);
    sum_loss += std::fabs(p.expected.loss[n]);
    for (int64_t v = 0; v < kV; ++v) {
      double z = 0;
      for (int64_t k = 0; k < kH; ++k) z += x[n * kH + k] * w[v * kH + k];
      const double pv = std::exp(z - p.expected.lse[n]), g = std::fabs(pv - (v == p.targets[n] ? 1.0 : 0.0));
      for (int64_t k = 0; k < kH; ++k) {
        bdx[n * kH + k] += p.scale * (gamma_n(kV) * g + eps[n] * pv) * std::fabs(w[v * kH + k]);
        bdw[v * kH + k] += p.scale * (gamma_n(kN) * g + eps[n] * pv) * std::fabs(x[n * kH + k]);
      }
    }
  }
  for (int64_t i = 0; i < kN * kH; ++i) bdx[i] += u * std::fabs(p.dx[i]);
  for (int64_t i = 0; i < kV * kH; ++i) bdw[i] += u * std::fabs(p.dw[i]);
  Bounds b{ref::from_doubles(blse, {kN}), ref::from_doubles(bloss, {kN}), ref::from_doubles(bdx, {kN, kH}),
           ref::from_doubles(bdw, {kV, kH}), gamma_n(kN) * sum_loss};
  for (double l : bloss) b.loss_sum += l;
  return b;
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
  const Bounds bound = derived_bounds(p);
  for (int64_t chunk : {1, 7, 32, 100, 101, 4096}) {
    for (DType tdt : {DType::i32, DType::i64}) {
      SCOPED_TRACE(::testing::Message() << "chunk=" << chunk << " targets " << tdt);
      const CrossEntropyOptions opt{.chunk_size = chunk};
      const Tensor targets = targets_tensor(p.targets, tdt);
      Tensor lse = Tensor::empty({kN}, DType::f32, MemCategory::workspace);
      Tensor loss = Tensor::empty({kN}, DType::f32, MemCategory::workspace);
      const CrossEntropyTotals tot = cross_entropy_forward(p.x, p.w, targets, lse, loss, opt);
      EXPECT_EQ(tot.n_valid, p.expected.n_valid);
      EXPECT_NEAR(tot.loss_sum, p.expected.loss_sum, bound.loss_sum);
      EXPECT_TERMS_CLOSE(lse, ref::from_doubles(p.expected.lse, {kN}), bound.lse, 1.0, 0.0);
      EXPECT_TERMS_CLOSE(loss, ref::from_doubles(p.expected.loss, {kN}), bound.loss, 1.0, 0.0);
      Tensor dx = Tensor::zeros({kN, kH}, DType::f32, MemCategory::workspace);
      Tensor dw = Tensor::zeros({kV, kH}, DType::f32, MemCategory::workspace);
      cross_entropy_backward(p.x, p.w, targets, lse, static_cast<float>(p.scale), dx, dw, opt);
      EXPECT_TERMS_CLOSE(dx, ref::from_doubles(p.dx, {kN, kH}), bound.dx, 1.0, 0.0);
      EXPECT_TERMS_CLOSE(dw, ref::from_doubles(p.dw, {kV, kH}), bound.dw, 1.0, 0.0);
    }
  }
}

// The LM-head ring: D = 4 vocabulary shards [0,26) [26,52) [52,78) [78,101) of w, folded in a
// shuffled order with their vocab_offset, and backward per shard into slices of dw.
TEST(CrossEntropy, VocabShardsInShuffledOrderMatchWholeVocabulary) {
  const Problem p = make_problem(DType::f32, 20);
  const Bounds bound = derived_bounds(p);
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
    // A different merge order only reorders fp32 rounding: both within the bound of exact.
    EXPECT_TERMS_CLOSE(lse, lse_ordered, bound.lse, 2.0, 0.0);
    EXPECT_TERMS_CLOSE(lse, ref::from_doubles(p.expected.lse, {kN}), bound.lse, 1.0, 0.0);
    EXPECT_TERMS_CLOSE(loss, ref::from_doubles(p.expected.loss, {kN}), bound.loss, 1.0, 0.0);
    EXPECT_EQ(tot.n_valid, p.expected.n_valid);
    Tensor dx = Tensor::zeros({kN, kH}, DType::f32, MemCategory::workspace);
    Tensor dw = Tensor::zeros({kV, kH}, DType::f32, MemCategory::workspace);
    for (int r : order) {
      const int64_t len = bounds[r + 1] - bounds[r];
      cross_entropy_chunk_backward(p.x, p.w.slice(0, bounds[r], len), bounds[r], targets, lse,
                                   static_cast<float>(p.scale), dx, dw.slice(0, bounds[r], len), opt);
    }
    EXPECT_TERMS_CLOSE(dx, ref::from_doubles(p.dx, {kN, kH}), bound.dx, 1.0, 0.0);
    EXPECT_TERMS_CLOSE(dw, ref::from_doubles(p.dw, {kV, kH}), bound.dw, 1.0, 0.0);
  }
}

TEST(CrossEntropy, IgnoredTokensContributeNothing) {
  const int64_t ignore = -1;  // a custom ignore_index
  const Problem p = make_problem(DType::f32, 30, ignore);
  const Bounds bound = derived_bounds(p, ignore);
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
  // Other GEMM shapes (rows removed), so possibly another summation order: both within the bound.
  EXPECT_NEAR(tot.loss_sum, tot_k.loss_sum, 2 * bound.loss_sum);
  Tensor dw_k = Tensor::zeros({kV, kH}, DType::f32, MemCategory::workspace);
  cross_entropy_backward(xk, p.w, targets_tensor(tk, DType::i32), lse_k, 1.f / static_cast<float>(nk), Tensor(), dw_k, opt);
  EXPECT_TERMS_CLOSE(dw, dw_k, bound.dw, 2.0, 0.0);
  for (int64_t i = 0; i < kN; ++i) {
    if (p.targets[i] != ignore) continue;
    EXPECT_EQ(loss.item_f32(i), 0.f);
    for (int64_t k = 0; k < kH; ++k) EXPECT_EQ(dx.item_f32(i * kH + k), 0.f);
  }
}

// bf16 x and w: logits are exact products of bf16 values accumulated in fp32, so lse and loss
// match the double reference on the same bf16 inputs within the derived fp32 bounds. The backward rounds
// dlogits to bf16 for the GEMMs (relative 2^-9 per element, random signs), so dx and dw are within
// a few 2^-9 in relative L2 norm: tolerance 1e-2.
TEST(CrossEntropy, Bf16MatchesReferenceWithinRounding) {
  const Problem p = make_problem(DType::bf16, 40);
  const Bounds bound = derived_bounds(p);
  const Tensor targets = targets_tensor(p.targets, DType::i64);
  const CrossEntropyOptions opt{.chunk_size = 32};
  Tensor lse = Tensor::empty({kN}, DType::f32, MemCategory::workspace);
  Tensor loss = Tensor::empty({kN}, DType::f32, MemCategory::workspace);
  const CrossEntropyTotals tot = cross_entropy_forward(p.x, p.w, targets, lse, loss, opt);
  EXPECT_NEAR(tot.loss_sum, p.expected.loss_sum, bound.loss_sum);
  EXPECT_TERMS_CLOSE(lse, ref::from_doubles(p.expected.lse, {kN}), bound.lse, 1.0, 0.0);
  EXPECT_TERMS_CLOSE(loss, ref::from_doubles(p.expected.loss, {kN}), bound.loss, 1.0, 0.0);
  Tensor dx = Tensor::zeros({kN, kH}, DType::f32, MemCategory::workspace);
  Tensor dw = Tensor::zeros({kV, kH}, DType::f32, MemCategory::workspace);
  cross_entropy_backward(p.x, p.w, targets, lse, static_cast<float>(p.scale), dx, dw, opt);
  EXPECT_LT(testing::relative_l2(dx, ref::from_doubles(p.dx, {kN, kH})), 1e-2);
  EXPECT_LT(testing::relative_l2(dw, ref::from_doubles(p.dw, {kV, kH})), 1e-2);
}

// The row passes (max, sum of exps, softmax gradient, bf16 rounding) run in simd.h Vec; chunk
// widths 1, 7, 32, 100, 101 above and the bf16 test's last chunk of 5 logits are masked tails of
// either width. Names the path in the log and the XML report.
TEST(CrossEntropy, RunsOnTheBuildsWidestVector) {
  std::printf("[   simd   ] cross_entropy rows: %s (%d fp32 lanes)\n", simd::kVecName, simd::kLanes);
  RecordProperty("simd", simd::kVecName);
  EXPECT_EQ(simd::kLanes, TSP_SIMD_AVX512 ? 16 : 8);
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
