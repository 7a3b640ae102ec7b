// Flash attention vs the double-precision reference: forward, backward, GQA, arbitrary positions
// (shuffled, zigzag, split key sets merged by lse), tails of the register blocks and tiles, NaN
// propagation, bf16, block skipping, workspace, validation. The vector path under test is the
// build's (simd.h Vec: avx512 16-lane, avx2 8-lane or scalar); FlashAttentionPath prints it.
//
// Tolerances (fp32 kernel vs double reference). Every output element is a short fp32 chain: a
// dot product over d <= 72 terms (score), an exp2 polynomial (~2e-7 relative), and a sum over at
// most a few hundred keys or queries; rounding errors grow like sqrt(K) eps ~ 8 * 6e-8 = 5e-7 per
// stage, and a score error delta moves p by a relative delta. fp32 error is absolute on the scale
// of the tensor (an entry that is 0 in exact arithmetic, e.g. dq of a row that sees a single key,
// comes out as a cancellation residue ~eps * |terms|), so comparisons use
//   max_i |a_i - b_i| / (|b_i| + rms(b)) <= kRelTol = 2e-5.
// Observed worst cases are 0.4e-6 .. 2.3e-6 (o, lse, dq, dk, dv over all cases here): ~10x margin,
// while a wrong mask, a missing rescale or a dropped tile gives errors of 1e-3 .. 1.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "io_test_util.h"
#include "test_util.h"
#include "tsp/core/error.h"
#include "tsp/core/memory.h"
#include "tsp/kernels/bf16_math.h"
#include "tsp/kernels/flash_attention.h"
#include "tsp/kernels/reference/attention_ref.h"
#include "tsp/kernels/simd.h"
#include "tsp/kernels/softmax_merge.h"

namespace tsp::kernels {
namespace {

using tsp::testing::compare;
using tsp::testing::random_tensor;
using tsp::testing::relative_l2;

constexpr double kRelTol = 2e-5;  // see the header comment

// Whether bf16 inputs run the native bf16 path (vdpbf16ps): the build has AVX512-BF16 and
// bf16_math() is native (its default on AMD AVX512-BF16 CPUs, or TSP_BF16_MATH=native: ctest's
// kernels.bf16_math_native run, tests/kernels/CMakeLists.txt, so both paths run on every machine
// whose build has AVX512-BF16).
bool native_bf16_math() { return TSP_SIMD_AVX512_BF16 && bf16_math() == Bf16Math::native; }
std::string bf16_path_name() {
  if (native_bf16_math()) return "native vdpbf16ps (AVX512-BF16; bf16_math(): " + bf16_math_description() + ")";
  if (!TSP_SIMD_AVX512_BF16) return "widened to fp32 FMAs (skipped native: build lacks AVX512-BF16)";
  return "widened to fp32 FMAs (bf16_math(): " + bf16_math_description() + ")";
}

Tensor positions(const std::vector<int32_t>& p) {
  Tensor t = Tensor::empty({static_cast<int64_t>(p.size())}, DType::i32, MemCategory::workspace);
  std::copy(p.begin(), p.end(), t.data<int32_t>());
  return t;
}

std::vector<int32_t> iota(int64_t n, int32_t start = 0) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

double rms(const Tensor& t) {
  const Tensor f = t.to_f32();
  double s = 0;
  for (int64_t i = 0; i < f.numel(); ++i) s += double(f.data<float>()[i]) * f.data<float>()[i];
  return f.numel() ? std::sqrt(s / f.numel()) : 0.0;
}

// Floor of the element-wise comparisons: the tensor's rms. Entries above it are judged
// relatively, entries below it absolutely on the scale of the tensor (fp32 error is absolute on
// that scale: an entry that is 0 in exact arithmetic, such as dq of a row that sees one key, comes
// out as a cancellation residue of order eps * |terms|).
double floor_of(const Tensor& ref) { return std::max(rms(ref), 1e-30); }

struct Inputs {
  Tensor q, k, v, d_o, q_pos, k_pos;
};

Inputs make_inputs(int64_t B, int64_t Sq, int64_t Sk, int64_t H, int64_t Hkv, int64_t d,
                   uint64_t seed, DType dt = DType::f32) {
  Inputs in;
  in.q = random_tensor({B, Sq, H, d}, dt, seed);
  in.k = random_tensor({B, Sk, Hkv, d}, dt, seed + 1);
  in.v = random_tensor({B, Sk, Hkv, d}, dt, seed + 2);
  in.d_o = random_tensor({B, Sq, H, d}, dt, seed + 3);
  // Queries are the last Sq positions of the key sequence (a KV-cache style suffix).
  in.q_pos = positions(iota(Sq, static_cast<int32_t>(Sk - Sq)));
  in.k_pos = positions(iota(Sk));
  return in;
}

struct Fwd {
  Tensor o, lse;
};
Fwd run_fwd(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& qp, const Tensor& kp,
            const FlashAttentionOptions& opt = {}, bool ref = false,
            FlashAttentionStats* stats = nullptr) {
  Fwd f{Tensor::empty(q.shape(), q.dtype(), MemCategory::workspace),
        Tensor::empty({q.dim(0), q.dim(2), q.dim(1)}, DType::f32, MemCategory::workspace)};
  if (ref) reference::attention_forward(q, k, v, qp, kp, f.o, f.lse, opt);
  else flash_attention_forward(q, k, v, qp, kp, f.o, f.lse, opt, stats);
  return f;
}

struct Grads {
  Tensor dq, dk, dv;
};
Grads run_bwd(const Inputs& in, const Fwd& f, const FlashAttentionOptions& opt = {},
              bool ref = false, DType gdt = DType::f32, FlashAttentionStats* stats = nullptr) {
  Grads g{Tensor::empty(in.q.shape(), gdt, MemCategory::workspace),
          Tensor::empty(in.k.shape(), gdt, MemCategory::workspace),
          Tensor::empty(in.k.shape(), gdt, MemCategory::workspace)};
  if (ref)
    reference::attention_backward(in.q, in.k, in.v, in.d_o, in.q_pos, in.k_pos, g.dq, g.dk, g.dv,
                                  opt);
  else
    flash_attention_backward(in.q, in.k, in.v, f.o, in.d_o, f.lse, in.q_pos, in.k_pos, g.dq,
                             g.dk, g.dv, opt, stats);
  return g;
}

// lse comparison: absolute (lse is a log), -inf must match exactly.
void expect_lse_close(const Tensor& a, const Tensor& b, double tol) {
  ASSERT_EQ(a.shape(), b.shape());
  for (int64_t i = 0; i < a.numel(); ++i) {
    const float x = a.data<float>()[i], y = b.data<float>()[i];
    if (y == -INFINITY) {
      ASSERT_EQ(x, -INFINITY) << "lse index " << i;
    } else {
      ASSERT_NEAR(x, y, tol * (1 + std::fabs(y))) << "lse index " << i;
    }
  }
}

// ---------------------------------------------------------------------------------------------

struct Case {
  bool causal;
  int64_t Hkv;
  int64_t d;
};

// Forward and backward of the fast kernel against the double reference on `in`, kRelTol.
void expect_matches_reference(const Inputs& in, const FlashAttentionOptions& opt) {
  const Fwd f = run_fwd(in.q, in.k, in.v, in.q_pos, in.k_pos, opt);
  const Fwd r = run_fwd(in.q, in.k, in.v, in.q_pos, in.k_pos, opt, true);
  EXPECT_CLOSE(f.o, r.o, kRelTol, floor_of(r.o));
  expect_lse_close(f.lse, r.lse, 1e-6);
  const Grads g = run_bwd(in, f, opt);
  const Grads gr = run_bwd(in, r, opt, true);
  EXPECT_CLOSE(g.dq, gr.dq, kRelTol, floor_of(gr.dq));
  EXPECT_CLOSE(g.dk, gr.dk, kRelTol, floor_of(gr.dk));
  EXPECT_CLOSE(g.dv, gr.dv, kRelTol, floor_of(gr.dv));
}
void expect_matches_reference(const Inputs& in, bool causal) {
  FlashAttentionOptions opt;
  opt.causal = causal;
  expect_matches_reference(in, opt);
}

class FlashAttentionVsReference : public ::testing::TestWithParam<Case> {};

TEST_P(FlashAttentionVsReference, ForwardAndBackward) {
  const Case c = GetParam();
  const int64_t B = 2, Sq = 37, Sk = 53, H = 6;
  const Inputs in = make_inputs(B, Sq, Sk, H, c.Hkv, c.d, 100 + c.d + c.Hkv);
  expect_matches_reference(in, c.causal);
}

INSTANTIATE_TEST_SUITE_P(Shapes, FlashAttentionVsReference,
                         ::testing::Values(Case{true, 2, 24}, Case{true, 3, 40},
                                           Case{true, 6, 64}, Case{false, 2, 64},
                                           Case{false, 6, 24}, Case{true, 1, 72},
                                           Case{true, 3, 128}, Case{false, 2, 1}),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           return std::string(i.param.causal ? "causal" : "full") + "_hkv" +
                                  std::to_string(i.param.Hkv) + "_d" +
                                  std::to_string(i.param.d);
                         });

// Block shapes and tails of both widths: several forward (96 x 256) and backward (48 x 128)
// tiles, query rows not a multiple of the NT register block (12 rows with AVX-512, 6 with AVX2),
// keys not a multiple of a K^T panel (32 / 16 keys) or a vector (16 / 8), and head dims that
// are not a multiple of the vector width (d = 17, 40), or need a partial NN column block
// (d = 80 = 4 + 1 zmm, 5 ymm). Same tolerance as above.
struct TailCase {
  bool causal;
  int64_t Sq, Sk, d;
};

class FlashAttentionTails : public ::testing::TestWithParam<TailCase> {};

TEST_P(FlashAttentionTails, ForwardAndBackward) {
  const TailCase c = GetParam();
  const Inputs in = make_inputs(1, c.Sq, c.Sk, 2, 1, c.d, 200 + c.Sq + c.d);
  expect_matches_reference(in, c.causal);
}

INSTANTIATE_TEST_SUITE_P(Shapes, FlashAttentionTails,
                         ::testing::Values(TailCase{true, 301, 301, 64}, TailCase{true, 211, 333, 17},
                                           TailCase{false, 107, 290, 80},
                                           TailCase{true, 300, 270, 40},
                                           TailCase{true, 13, 531, 64}),
                         [](const ::testing::TestParamInfo<TailCase>& i) {
                           return std::string(i.param.causal ? "causal" : "full") + "_sq" +
                                  std::to_string(i.param.Sq) + "_sk" +
                                  std::to_string(i.param.Sk) + "_d" + std::to_string(i.param.d);
                         });

TEST(FlashAttentionPath, SaysWhichVectorPathRuns) {
  // Every test in this file runs the build's one vector path; the AVX2 path is tested by the
  // -DTSP_MARCH=x86-64-v3 build (docs/kernels.md). bf16 inputs take the native vdpbf16ps path
  // where the build has AVX512-BF16 and TSP_BF16_MATH=native (the flash_attention_bf16_native
  // ctest run), else they are widened to fp32.
  std::printf("flash attention path: simd.h %s (%d fp32 lanes); bf16 dot products: %s\n",
              simd::kVecName, simd::kLanes, bf16_path_name().c_str());
  EXPECT_EQ(simd::kLanes, TSP_SIMD_AVX512 ? 16 : 8);
}

TEST(FlashAttentionVsReferenceDecode, SingleQueryAgainstCache) {
  // Decode: one new token per sequence attends to a KV cache whose last slots are padding.
  const int64_t B = 2, Sk = 70, H = 8, Hkv = 2, d = 64;
  Inputs in = make_inputs(B, 1, Sk, H, Hkv, d, 13);
  std::vector<int32_t> kp = iota(Sk);
  for (int64_t j = 60; j < Sk; ++j) kp[j] = INT32_MAX;
  in.k_pos = positions(kp);
  in.q_pos = positions({59});
  const Fwd f = run_fwd(in.q, in.k, in.v, in.q_pos, in.k_pos);
  const Fwd r = run_fwd(in.q, in.k, in.v, in.q_pos, in.k_pos, {}, true);
  EXPECT_CLOSE(f.o, r.o, kRelTol, floor_of(r.o));
  expect_lse_close(f.lse, r.lse, 1e-6);
}

TEST(FlashAttentionReference, BackwardMatchesFiniteDifferences) {
  // Validates the reference itself: central differences of L = sum(o * g) in double. Step 1e-5:
  // truncation ~h^2 = 1e-10, cancellation ~1e-16 / 1e-5 = 1e-11, so 1e-7 relative is generous.
  reference::ProblemF64 p;
  p.B = 1, p.Sq = 5, p.Sk = 7, p.H = 4, p.Hkv = 2, p.d = 3;
  p.q_pos = {2, 6, 3, 4, 9};
  p.k_pos = {0, 5, 1, 6, 2, 3, 4};
  std::mt19937_64 gen(7);
  std::normal_distribution<double> nd;
  auto fill = [&](std::vector<double>& x, size_t n) {
    x.resize(n);
    for (double& e : x) e = nd(gen);
  };
  fill(p.q, p.B * p.Sq * p.H * p.d);
  fill(p.k, p.B * p.Sk * p.Hkv * p.d);
  fill(p.v, p.k.size());
  std::vector<double> g;
  fill(g, p.q.size());
  for (bool causal : {true, false}) {
    p.causal = causal;
    std::vector<double> dq, dk, dv;
    reference::backward_f64(p, g, dq, dk, dv);
    auto loss = [&](const reference::ProblemF64& pp) {
      std::vector<double> o, lse;
      reference::forward_f64(pp, o, lse);
      double s = 0;
      for (size_t i = 0; i < o.size(); ++i) s += o[i] * g[i];
      return s;
    };
    auto check = [&](std::vector<double> reference::ProblemF64::*member,
                     const std::vector<double>& grad) {
      double scale = 0;
      for (double x : grad) scale = std::max(scale, std::fabs(x));
      for (size_t i = 0; i < grad.size(); ++i) {
        reference::ProblemF64 a = p, b = p;
        const double h = 1e-5;
        (a.*member)[i] += h;
        (b.*member)[i] -= h;
        const double fd = (loss(a) - loss(b)) / (2 * h);
        EXPECT_NEAR(grad[i], fd, 1e-7 * scale + 1e-9) << "element " << i;
      }
    };
    check(&reference::ProblemF64::q, dq);
    check(&reference::ProblemF64::k, dk);
    check(&reference::ProblemF64::v, dv);
  }
}

// Rows of src (dim 1) permuted: out[:, i] = src[:, perm[i]].
Tensor permute_rows(const Tensor& src, const std::vector<int32_t>& perm) {
  Tensor out = Tensor::empty({src.dim(0), static_cast<int64_t>(perm.size()), src.dim(2), src.dim(3)},
                             src.dtype(), MemCategory::workspace);
  for (size_t i = 0; i < perm.size(); ++i) {
    Tensor dst = out.slice(1, static_cast<int64_t>(i), 1);
    dst.copy_from(src.slice(1, perm[i], 1));
  }
  return out;
}
Tensor permute_lse(const Tensor& src, const std::vector<int32_t>& perm) {
  Tensor out = Tensor::empty({src.dim(0), src.dim(1), static_cast<int64_t>(perm.size())},
                             DType::f32, MemCategory::workspace);
  for (size_t i = 0; i < perm.size(); ++i) {
    Tensor dst = out.slice(2, static_cast<int64_t>(i), 1);
    dst.copy_from(src.slice(2, perm[i], 1));
  }
  return out;
}

TEST(FlashAttentionPositions, ShuffledSequenceEqualsOrdered) {
  const int64_t B = 1, S = 150, H = 4, Hkv = 2, d = 32;  // S spans several tiles of both sizes
  const Inputs in = make_inputs(B, S, S, H, Hkv, d, 11);
  std::vector<int32_t> pq = iota(S), pk = iota(S);
  std::mt19937 gen(3);
  std::shuffle(pq.begin(), pq.end(), gen);
  std::shuffle(pk.begin(), pk.end(), gen);
  Inputs sh;
  sh.q = permute_rows(in.q, pq);
  sh.d_o = permute_rows(in.d_o, pq);
  sh.k = permute_rows(in.k, pk);
  sh.v = permute_rows(in.v, pk);
  sh.q_pos = positions(pq);  // row i holds token pq[i]
  sh.k_pos = positions(pk);
  const Fwd f = run_fwd(in.q, in.k, in.v, in.q_pos, in.k_pos);
  const Fwd fs = run_fwd(sh.q, sh.k, sh.v, sh.q_pos, sh.k_pos);
  // Only the summation order differs: a few fp32 ulps.
  EXPECT_CLOSE(fs.o, permute_rows(f.o, pq), kRelTol, 0.3);
  expect_lse_close(fs.lse, permute_lse(f.lse, pq), 1e-6);
  const Grads g = run_bwd(in, f);
  const Grads gs = run_bwd(sh, fs);
  EXPECT_CLOSE(gs.dq, permute_rows(g.dq, pq), kRelTol, floor_of(g.dq));
  EXPECT_CLOSE(gs.dk, permute_rows(g.dk, pk), kRelTol, floor_of(g.dk));
  EXPECT_CLOSE(gs.dv, permute_rows(g.dv, pk), kRelTol, floor_of(g.dv));
}

TEST(FlashAttentionPositions, ZigzagShardsEqualFullAttention) {
  // D = 3 ranks, 2D = 6 chunks of 23 tokens. Rank p holds chunks p and 2D-1-p; the gathered keys
  // arrive in rank order (chunks 0, 5, 1, 4, 2, 3). Each rank's outputs must be the matching rows
  // of full attention, its dq exact, and the sum of all ranks' dk/dv (the reduce-scatter input)
  // the full dk/dv.
  const int64_t D = 3, C = 23, S = 2 * D * C, B = 2, H = 4, Hkv = 2, d = 40;
  const Inputs in = make_inputs(B, S, S, H, Hkv, d, 21);
  const Fwd full = run_fwd(in.q, in.k, in.v, in.q_pos, in.k_pos);
  const Grads gfull = run_bwd(in, full);
  auto chunk_rows = [&](std::vector<int64_t> chunks) {
    std::vector<int32_t> rows;
    for (int64_t c : chunks)
      for (int64_t t = 0; t < C; ++t) rows.push_back(static_cast<int32_t>(c * C + t));
    return rows;
  };
  std::vector<int64_t> rank_order;
  for (int64_t r = 0; r < D; ++r) {
    rank_order.push_back(r);
    rank_order.push_back(2 * D - 1 - r);
  }
  const std::vector<int32_t> krows = chunk_rows(rank_order);
  Inputs gathered;
  gathered.k = permute_rows(in.k, krows);
  gathered.v = permute_rows(in.v, krows);
  gathered.k_pos = positions(krows);
  Tensor dk_sum = Tensor::zeros(in.k.shape(), DType::f32, MemCategory::workspace);
  Tensor dv_sum = Tensor::zeros(in.k.shape(), DType::f32, MemCategory::workspace);
  for (int64_t p = 0; p < D; ++p) {
    const std::vector<int32_t> qrows = chunk_rows({p, 2 * D - 1 - p});
    Inputs local = gathered;
    local.q = permute_rows(in.q, qrows);
    local.d_o = permute_rows(in.d_o, qrows);
    local.q_pos = positions(qrows);
    const Fwd f = run_fwd(local.q, local.k, local.v, local.q_pos, local.k_pos);
    EXPECT_CLOSE(f.o, permute_rows(full.o, qrows), kRelTol, 0.3);
    expect_lse_close(f.lse, permute_lse(full.lse, qrows), 1e-6);
    FlashAttentionOptions acc;
    acc.accumulate_grads = p > 0;
    Grads g{Tensor::zeros(local.q.shape(), DType::f32, MemCategory::workspace), dk_sum, dv_sum};
    flash_attention_backward(local.q, local.k, local.v, f.o, local.d_o, f.lse, local.q_pos,
                             local.k_pos, g.dq, g.dk, g.dv, acc);
    EXPECT_CLOSE(g.dq, permute_rows(gfull.dq, qrows), kRelTol, floor_of(gfull.dq));
  }
  EXPECT_CLOSE(dk_sum, permute_rows(gfull.dk, krows), kRelTol, floor_of(gfull.dk));
  EXPECT_CLOSE(dv_sum, permute_rows(gfull.dv, krows), kRelTol, floor_of(gfull.dv));
}

// Rank 0 of D = 2 with chunks of 300 tokens (S = 1200): queries are chunks 0 and 3, the keys
// gathered in rank order (chunks 0, 3, 1, 2), with their global positions.
Inputs zigzag_rank0_inputs(uint64_t seed) {
  const int64_t C = 300, S = 4 * C, H = 2, Hkv = 1, d = 64;
  const Inputs in = make_inputs(1, S, S, H, Hkv, d, seed);
  auto chunk_rows = [&](std::vector<int64_t> chunks) {
    std::vector<int32_t> rows;
    for (int64_t c : chunks)
      for (int64_t t = 0; t < C; ++t) rows.push_back(static_cast<int32_t>(c * C + t));
    return rows;
  };
  const std::vector<int32_t> krows = chunk_rows({0, 3, 1, 2}), qrows = chunk_rows({0, 3});
  Inputs local;
  local.k = permute_rows(in.k, krows);
  local.v = permute_rows(in.v, krows);
  local.k_pos = positions(krows);
  local.q = permute_rows(in.q, qrows);
  local.d_o = permute_rows(in.d_o, qrows);
  local.q_pos = positions(qrows);
  return local;
}

TEST(FlashAttentionPositions, LongZigzagShardSkipsTilesAndMatchesReference) {
  // One rank of D = 2 with chunks of 300 tokens (S = 1200): its queries are chunks 0 and 3, the
  // keys gathered in rank order (chunks 0, 3, 1, 2). Long enough for several tiles per chunk, so
  // position-based skipping, unmasked and masked tiles all occur with non-monotonic positions;
  // checked against the double reference directly.
  const Inputs local = zigzag_rank0_inputs(23);
  FlashAttentionStats st;
  const Fwd f = run_fwd(local.q, local.k, local.v, local.q_pos, local.k_pos, {}, false, &st);
  EXPECT_GT(st.skipped, 0);
  EXPECT_GT(st.masked, 0);
  EXPECT_GT(st.computed - st.masked, 0);  // some tiles run unmasked
  const Fwd r = run_fwd(local.q, local.k, local.v, local.q_pos, local.k_pos, {}, true);
  EXPECT_CLOSE(f.o, r.o, kRelTol, floor_of(r.o));
  expect_lse_close(f.lse, r.lse, 1e-6);
  const Grads g = run_bwd(local, f, {}, false, DType::f32, &st);
  EXPECT_GT(st.skipped, 0);
  const Grads gr = run_bwd(local, r, {}, true);
  EXPECT_CLOSE(g.dq, gr.dq, kRelTol, floor_of(gr.dq));
  EXPECT_CLOSE(g.dk, gr.dk, kRelTol, floor_of(gr.dk));
  EXPECT_CLOSE(g.dv, gr.dv, kRelTol, floor_of(gr.dv));
}

TEST(FlashAttentionMerge, SplitKeysMergedByLseEqualConcatenation) {
  // Keys split into A = tokens [0, 20) and B = [20, 53); queries at positions -1 (sees nothing),
  // 0..19 (see only A) and 20.. (see both). Merging the two partials must equal attention over
  // all keys, and the two partial backwards (with the merged o and lse) must add up to the full
  // gradients.
  const int64_t B = 2, Sq = 40, Sk = 53, SA = 20, H = 6, Hkv = 3, d = 24;
  Inputs in = make_inputs(B, Sq, Sk, H, Hkv, d, 31);
  std::vector<int32_t> qp = iota(Sq, -1);
  in.q_pos = positions(qp);
  const Fwd full = run_fwd(in.q, in.k, in.v, in.q_pos, in.k_pos);
  const Grads gfull = run_bwd(in, full);

  Inputs a = in, b = in;
  a.k = in.k.slice(1, 0, SA);
  a.v = in.v.slice(1, 0, SA);
  a.k_pos = positions(iota(SA));
  b.k = in.k.slice(1, SA, Sk - SA);
  b.v = in.v.slice(1, SA, Sk - SA);
  b.k_pos = positions(iota(Sk - SA, SA));
  const Fwd fa = run_fwd(a.q, a.k, a.v, a.q_pos, a.k_pos);
  const Fwd fb = run_fwd(b.q, b.k, b.v, b.q_pos, b.k_pos);
  // Rows that see nothing in B: o = 0, lse = -inf.
  for (int64_t i = 0; i < SA + 1; ++i) {
    EXPECT_EQ(fb.lse.data<float>()[i], -INFINITY);
    EXPECT_EQ(fb.o.item_f32(i * H * d), 0.f);
  }
  EXPECT_EQ(fa.lse.data<float>()[0], -INFINITY);  // query at position -1
  Tensor o = fa.o, lse = fa.lse;                  // in place: o aliases o_a, lse aliases lse_a
  merge_partials(fa.o, fa.lse, fb.o, fb.lse, o, lse);
  EXPECT_CLOSE(o, full.o, kRelTol, 0.3);
  expect_lse_close(lse, full.lse, 1e-6);
  EXPECT_EQ(lse.data<float>()[0], -INFINITY);
  for (int64_t x = 0; x < d; ++x) EXPECT_EQ(o.item_f32(x), 0.f);

  Grads ga{Tensor::empty(in.q.shape(), DType::f32, MemCategory::workspace),
           Tensor::empty(a.k.shape(), DType::f32, MemCategory::workspace),
           Tensor::empty(a.k.shape(), DType::f32, MemCategory::workspace)};
  Grads gb{ga.dq, Tensor::zeros(b.k.shape(), DType::f32, MemCategory::workspace),
           Tensor::zeros(b.k.shape(), DType::f32, MemCategory::workspace)};
  flash_attention_backward(a.q, a.k, a.v, o, a.d_o, lse, a.q_pos, a.k_pos, ga.dq, ga.dk, ga.dv);
  FlashAttentionOptions acc;
  acc.accumulate_grads = true;
  flash_attention_backward(b.q, b.k, b.v, o, b.d_o, lse, b.q_pos, b.k_pos, gb.dq, gb.dk, gb.dv,
                           acc);
  EXPECT_CLOSE(ga.dq, gfull.dq, kRelTol, floor_of(gfull.dq));
  EXPECT_CLOSE(ga.dk, gfull.dk.slice(1, 0, SA), kRelTol, floor_of(gfull.dk));
  EXPECT_CLOSE(gb.dk, gfull.dk.slice(1, SA, Sk - SA), kRelTol, floor_of(gfull.dk));
  EXPECT_CLOSE(gb.dv, gfull.dv.slice(1, SA, Sk - SA), kRelTol, floor_of(gfull.dv));
}

TEST(FlashAttentionMasking, FullyMaskedRowsAndPaddingKeys) {
  // Keys at INT32_MAX are padding; queries before every key see nothing: o = 0, lse = -inf, and
  // the backward gives exact zeros for them (no NaN from exp(-inf + inf)).
  const int64_t B = 1, Sq = 9, Sk = 21, H = 2, Hkv = 1, d = 16;
  Inputs in = make_inputs(B, Sq, Sk, H, Hkv, d, 41);
  std::vector<int32_t> kp = iota(Sk, 5);
  for (int64_t j = 15; j < Sk; ++j) kp[j] = INT32_MAX;
  in.k_pos = positions(kp);
  in.q_pos = positions({0, 4, 5, 6, 100, 2, 12, INT32_MAX - 1, -7});
  const Fwd f = run_fwd(in.q, in.k, in.v, in.q_pos, in.k_pos);
  const Fwd r = run_fwd(in.q, in.k, in.v, in.q_pos, in.k_pos, {}, true);
  EXPECT_CLOSE(f.o, r.o, kRelTol, floor_of(r.o));
  expect_lse_close(f.lse, r.lse, 1e-6);
  for (int64_t h = 0; h < H; ++h)
    for (int64_t i : {0, 1, 5, 8}) {
      EXPECT_EQ(f.lse.data<float>()[h * Sq + i], -INFINITY);
      for (int64_t x = 0; x < d; ++x) EXPECT_EQ(f.o.item_f32((i * H + h) * d + x), 0.f);
    }
  const Grads g = run_bwd(in, f);
  const Grads gr = run_bwd(in, r, {}, true);
  EXPECT_CLOSE(g.dq, gr.dq, kRelTol, floor_of(gr.dq));
  EXPECT_CLOSE(g.dk, gr.dk, kRelTol, floor_of(gr.dk));
  EXPECT_CLOSE(g.dv, gr.dv, kRelTol, floor_of(gr.dv));
  for (int64_t j = 15; j < Sk; ++j)
    for (int64_t x = 0; x < d; ++x) EXPECT_EQ(g.dk.item_f32(j * d + x), 0.f);
  // No keys at all.
  Inputs empty = make_inputs(B, Sq, 0, H, Hkv, d, 42);
  const Fwd fe = run_fwd(empty.q, empty.k, empty.v, empty.q_pos, empty.k_pos);
  for (int64_t i = 0; i < fe.lse.numel(); ++i) EXPECT_EQ(fe.lse.data<float>()[i], -INFINITY);
  EXPECT_EQ(rms(fe.o), 0.0);
}

// A NaN in key j (a corrupt activation) makes o and lse NaN for exactly the queries that see
// it (causal: position >= j), in every tile of the diagonal band and below it; rows that do not
// see it keep the clean run's o and lse. Backward: their dq is NaN, and so is dk of the key.
// (exp2 must pass NaN through: a clamp or exponent trick that turns NaN into 0 or a finite
// value would hide the corruption; on the native bf16 path, so must the bf16 packing and
// vdpbf16ps.)
void check_nan_key_poisons_rows(DType dt) {
  const int64_t S = 300, H = 2, Hkv = 1, d = 32;
  const Inputs clean = make_inputs(1, S, S, H, Hkv, d, 97, dt);
  const Fwd f0 = run_fwd(clean.q, clean.k, clean.v, clean.q_pos, clean.k_pos);
  for (int64_t j : {0, 130, 299}) {
    Inputs in = clean;
    in.k = Tensor::copy_of(clean.k, DType::f32, MemCategory::workspace);
    in.k.data<float>()[j * Hkv * d + 3] = std::nanf("");
    in.k = Tensor::copy_of(in.k, dt, MemCategory::workspace);  // bf16 keeps a NaN a NaN
    const Fwd f = run_fwd(in.q, in.k, in.v, in.q_pos, in.k_pos);
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < S; ++i) {
        const float lse = f.lse.data<float>()[h * S + i];
        const float o = f.o.item_f32((i * H + h) * d + 5);
        if (i >= j) {
          EXPECT_TRUE(std::isnan(lse) && std::isnan(o)) << "j " << j << " h " << h << " i " << i << " lse " << lse << " o " << o;
        } else {
          EXPECT_EQ(lse, f0.lse.data<float>()[h * S + i]) << "j " << j << " i " << i;
          EXPECT_EQ(o, f0.o.item_f32((i * H + h) * d + 5)) << "j " << j << " i " << i;
        }
      }
    const Grads g = run_bwd(in, f);
    for (int64_t x = 0; x < d; ++x) EXPECT_TRUE(std::isnan(g.dk.item_f32(j * Hkv * d + x)));
    for (int64_t i = j; i < S; ++i) EXPECT_TRUE(std::isnan(g.dq.item_f32(i * H * d))) << i;
  }
}

TEST(FlashAttentionNan, NanKeyPoisonsTheRowsThatSeeIt) { check_nan_key_poisons_rows(DType::f32); }

TEST(FlashAttentionNan, Bf16NanKeyPoisonsTheRowsThatSeeIt) {
  std::printf("[ bf16     ] dot products: %s\n", bf16_path_name().c_str());
  check_nan_key_poisons_rows(DType::bf16);
}

TEST(FlashAttentionLayout, StridedViewsOfFusedProjection) {
  // q, k, v as column slices of one [B, S, (H + 2 Hkv) d] projection; o and grads strided too.
  const int64_t B = 2, S = 45, H = 4, Hkv = 2, d = 24;
  Tensor fused = random_tensor({B, S, H + 2 * Hkv, d}, DType::f32, 51);
  Inputs in;
  in.q = fused.slice(2, 0, H);
  in.k = fused.slice(2, H, Hkv);
  in.v = fused.slice(2, H + Hkv, Hkv);
  in.d_o = random_tensor({B, S, H, d}, DType::f32, 52);
  in.q_pos = positions(iota(S));
  in.k_pos = positions(iota(S));
  Tensor o_big = Tensor::zeros({B, S, H + 1, d}, DType::f32, MemCategory::workspace);
  Fwd f{o_big.slice(2, 1, H), Tensor::empty({B, H, S}, DType::f32, MemCategory::workspace)};
  flash_attention_forward(in.q, in.k, in.v, in.q_pos, in.k_pos, f.o, f.lse);
  const Fwd r = run_fwd(in.q, in.k, in.v, in.q_pos, in.k_pos, {}, true);
  EXPECT_CLOSE(f.o, r.o, kRelTol, floor_of(r.o));
  EXPECT_EQ(rms(o_big.slice(2, 0, 1)), 0.0);  // nothing written outside the view
  Tensor g_big = Tensor::zeros({B, S, H + 2 * Hkv, d}, DType::f32, MemCategory::workspace);
  Grads g{g_big.slice(2, 0, H), g_big.slice(2, H, Hkv), g_big.slice(2, H + Hkv, Hkv)};
  flash_attention_backward(in.q, in.k, in.v, f.o, in.d_o, f.lse, in.q_pos, in.k_pos, g.dq, g.dk,
                           g.dv);
  const Grads gr = run_bwd(in, r, {}, true);
  EXPECT_CLOSE(g.dq, gr.dq, kRelTol, floor_of(gr.dq));
  EXPECT_CLOSE(g.dk, gr.dk, kRelTol, floor_of(gr.dk));
  EXPECT_CLOSE(g.dv, gr.dv, kRelTol, floor_of(gr.dv));
}

TEST(FlashAttentionGrads, AccumulateAddsAndBf16Grads) {
  const int64_t B = 1, S = 33, H = 2, Hkv = 2, d = 16;
  const Inputs in = make_inputs(B, S, S, H, Hkv, d, 61);
  const Fwd f = run_fwd(in.q, in.k, in.v, in.q_pos, in.k_pos);
  const Grads g = run_bwd(in, f);
  Grads twice = run_bwd(in, f);
  FlashAttentionOptions acc;
  acc.accumulate_grads = true;
  flash_attention_backward(in.q, in.k, in.v, f.o, in.d_o, f.lse, in.q_pos, in.k_pos, twice.dq,
                           twice.dk, twice.dv, acc);
  for (const auto& [x2, x1] : {std::pair{twice.dq, g.dq}, {twice.dk, g.dk}, {twice.dv, g.dv}}) {
    Tensor expect = Tensor::copy_of(x1, DType::f32, MemCategory::workspace);
    for (int64_t i = 0; i < expect.numel(); ++i) expect.data<float>()[i] *= 2.f;
    EXPECT_CLOSE(x2, expect, 1e-6, 1e-6);
  }
  // bf16 gradients: the fp32 result rounded once. bf16 keeps 8 significant bits (7 stored + the
  // implicit one), so rounding to nearest is off by at most 2^-8 = 3.9e-3 relative.
  const Grads gb = run_bwd(in, f, {}, false, DType::bf16);
  EXPECT_CLOSE(gb.dq, g.dq, 1.0 / 256, 0.0);
  EXPECT_CLOSE(gb.dk, g.dk, 1.0 / 256, 0.0);
  EXPECT_CLOSE(gb.dv, g.dv, 1.0 / 256, 0.0);
}

TEST(FlashAttentionBf16, WithinBf16RoundingOfFp32) {
  const int64_t B = 2, Sq = 37, Sk = 53, H = 6, Hkv = 2, d = 40;
  const Inputs in = make_inputs(B, Sq, Sk, H, Hkv, d, 71);
  Inputs b16 = in;
  for (Tensor* t : {&b16.q, &b16.k, &b16.v, &b16.d_o})
    *t = Tensor::copy_of(*t, DType::bf16, MemCategory::workspace);
  Inputs rounded = in;  // fp32 tensors holding the bf16 values
  for (Tensor* t : {&rounded.q, &rounded.k, &rounded.v, &rounded.d_o})
    *t = Tensor::copy_of(*t, DType::bf16, MemCategory::workspace).to_f32();
  const Fwd fb = run_fwd(b16.q, b16.k, b16.v, b16.q_pos, b16.k_pos);
  const Fwd fr = run_fwd(rounded.q, rounded.k, rounded.v, rounded.q_pos, rounded.k_pos);
  const Fwd f32 = run_fwd(in.q, in.k, in.v, in.q_pos, in.k_pos);
  // bf16 keeps 8 significant bits: round-to-nearest errs by at most u = 2^-8 = 3.9e-3 relative
  // (half an ulp; 2^-9 at the top of a binade), rms about u / 3 = 1.3e-3 over random mantissas.
  // (a) Same (bf16-representable) inputs: on the fp32 path the math is the same fp32 code, so the
  // only difference is the final rounding of o to bf16: at most 2^-8 relative per element (+ fp32
  // noise). The native path also rounds P, an error bounded by u sum_j P_ij |v_j|, not by |o_i|
  // (o_i can cancel): FlashAttentionBf16Bounds checks it element-wise against that bound.
  if (!native_bf16_math()) EXPECT_CLOSE(fb.o, fr.o, 1.0 / 256 + kRelTol, 0.0);
  expect_lse_close(fb.lse, fr.lse, 1e-6);
  // (b) Against fp32 inputs: each input carries a relative rounding of rms ~1.3e-3. A score is a
  // d-term dot product (scaled 1/sqrt d) of rounded q and k: its error is ~sqrt(2) * 1.3e-3 ~
  // 1.8e-3 absolute for unit scores, which moves each p by that relative amount; v's rounding and
  // o's own rounding add ~1.3e-3 each (v's partly averages out over keys). In the norm we expect
  // ~2.5e-3 (observed 3.2e-3) and assert 6e-3; lse moves by about the score error, averaged
  // (assert 1e-2 absolute).
  EXPECT_LE(relative_l2(fb.o, f32.o), 6e-3);
  expect_lse_close(fb.lse, f32.lse, 1e-2);
  // Backward with bf16 inputs (f32 grads) vs fp32 backward on the rounded inputs: the saved o is
  // bf16-rounded (rms 1.3e-3 relative), which perturbs D = rowsum(dO o) and through
  // dS = P (dP - D) the gradients by ~1e-3 relative in the norm (observed 0.6e-3 on the fp32
  // path); the native path adds one bf16 rounding of P or dS per term (rms ~u / sqrt(3) = 2.3e-3
  // each, partly averaging out over the terms of a sum; observed 1.7-1.8e-3). Assert 5e-3.
  const Grads gb = run_bwd(b16, fb);
  const Grads gr = run_bwd(rounded, fr);
  std::printf("bf16: rel_l2(o vs fp32 inputs) = %.2e; grads vs rounded-input fp32: %.2e %.2e %.2e\n",
              relative_l2(fb.o, f32.o), relative_l2(gb.dq, gr.dq), relative_l2(gb.dk, gr.dk),
              relative_l2(gb.dv, gr.dv));
  EXPECT_LE(relative_l2(gb.dq, gr.dq), 5e-3);
  EXPECT_LE(relative_l2(gb.dk, gr.dk), 5e-3);
  EXPECT_LE(relative_l2(gb.dv, gr.dv), 5e-3);
}

// ---------------------------------------------------------------------------------------------
// bf16 inputs on either path (native vdpbf16ps or widened to fp32) against the double reference,
// element by element, within bounds derived from bf16 rounding.
//
// Native path error model. Products of two bf16 values are exact in fp32 and vdpbf16ps adds them
// into fp32 accumulators, so the score and dP = dO V^T products carry only fp32 summation noise.
// What bf16 adds is one rounding (to nearest even) of each computed operand: P for P V and
// P^T dO, dS for dS^T Q and dS K. bf16 keeps 8 significant bits, so a rounded x is x (1 + delta)
// with |delta| <= u = 2^-8 (half an ulp; 2^-9 at the top of a binade). To first order:
//   o_i      += sum_j delta_ij P_ij v_j          |.| <= u sum_j P_ij |v_j|   (+ u |o_i|: o's own
//                                                                             bf16 rounding)
//   dv_j     += sum_i delta_ij P_ij dO_i         |.| <= u sum_i P_ij |dO_i|
//   dk_j, dq_i through dS_ij (1 + delta_ij):     |.| <= scale u sum |dS_ij| |q_i| (|k_j|)
// Both paths also share one perturbation the reference does not have: D_i = rowsum(dO_i o_i) uses
// the saved o, which is bf16 (and on the native path carries the error above), so dS_ij moves by
// P_ij dD_i with dD_i = |dO_i . (o_saved_i - o_exact_i)|, computed exactly here. So per element
//   |kernel - reference| <= bound + kRelTol (|reference| + rms(reference)),
// bound the first-order sums above, evaluated in double from the exact P and dS. The bf16
// rounding terms are independent and stay at 0.3-0.8 of their share; the D term is attained
// exactly where a row sees one key (dS = 0 in exact arithmetic, the kernel's is -dD), so dq
// reaches ~0.97 of its bound there. A wrong pairing of operands, a dropped pair or a missing
// rounding-consistent pad gives errors of order |terms|, far above the bound.
struct Bf16Bounds {
  std::vector<double> o, dq, dk, dv;  // [B, S, heads, d] flat, as the tensors
};

Bf16Bounds bf16_bounds(const Inputs& in, const Tensor& o_saved, const Tensor& o_exact,
                       bool causal, int64_t window = 0) {
  const Tensor q = in.q.to_f32(), k = in.k.to_f32(), v = in.v.to_f32(), dO = in.d_o.to_f32();
  const Tensor os = o_saved.to_f32(), oe = o_exact.to_f32();
  const int64_t B = q.dim(0), Sq = q.dim(1), H = q.dim(2), d = q.dim(3), Sk = k.dim(1),
                Hkv = k.dim(2), G = H / Hkv;
  const double scale = 1.0 / std::sqrt(double(d)), u = 1.0 / 256;
  const auto at = [](const Tensor& t, int64_t b, int64_t s, int64_t h, int64_t x) {
    return double(t.data<float>()[((b * t.dim(1) + s) * t.dim(2) + h) * t.dim(3) + x]);
  };
  const auto idx = [&](int64_t b, int64_t s, int64_t h, int64_t heads, int64_t S) {
    return ((b * S + s) * heads + h) * d;
  };
  const int32_t* qp = in.q_pos.data<int32_t>();
  const int32_t* kp = in.k_pos.data<int32_t>();
  Bf16Bounds bd{std::vector<double>(q.numel()), std::vector<double>(q.numel()),
                std::vector<double>(k.numel()), std::vector<double>(k.numel())};
  std::vector<double> p(Sk), ds(Sk);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t hk = h / G;
      for (int64_t i = 0; i < Sq; ++i) {
        double m = -INFINITY;
        for (int64_t j = 0; j < Sk; ++j) {
          double sc = -INFINITY;
          if (!causal || (kp[j] <= qp[i] && (window <= 0 || int64_t{qp[i]} - kp[j] < window))) {
            sc = 0;
            for (int64_t x = 0; x < d; ++x) sc += at(q, b, i, h, x) * at(k, b, j, hk, x);
            sc *= scale;
          }
          p[j] = sc;
          m = std::max(m, sc);
        }
        if (m == -INFINITY) continue;  // sees no key: exact zeros on both sides
        double l = 0;
        for (int64_t j = 0; j < Sk; ++j) l += p[j] = std::exp(p[j] - m);
        for (int64_t j = 0; j < Sk; ++j) p[j] /= l;
        double D = 0, dD = 0;
        for (int64_t x = 0; x < d; ++x) {
          D += at(dO, b, i, h, x) * at(oe, b, i, h, x);
          dD += at(dO, b, i, h, x) * (at(os, b, i, h, x) - at(oe, b, i, h, x));
        }
        dD = std::fabs(dD);
        for (int64_t j = 0; j < Sk; ++j) {
          double dp = 0;
          for (int64_t x = 0; x < d; ++x) dp += at(dO, b, i, h, x) * at(v, b, j, hk, x);
          ds[j] = p[j] * (dp - D);
        }
        const int64_t iq = idx(b, i, h, H, Sq);
        for (int64_t x = 0; x < d; ++x) {
          double po = 0, pq = 0;
          for (int64_t j = 0; j < Sk; ++j) {
            const double w = u * std::fabs(ds[j]) + p[j] * dD;
            po += p[j] * std::fabs(at(v, b, j, hk, x));
            pq += w * std::fabs(at(k, b, j, hk, x));
            const int64_t jk = idx(b, j, hk, Hkv, Sk) + x;
            bd.dk[jk] += scale * w * std::fabs(at(q, b, i, h, x));
            bd.dv[jk] += u * p[j] * std::fabs(at(dO, b, i, h, x));
          }
          bd.o[iq + x] = u * (po + std::fabs(at(oe, b, i, h, x)));
          bd.dq[iq + x] = scale * pq;
        }
      }
    }
  return bd;
}

// Largest |a - r| / (bound + kRelTol (|r| + rms(r))) over the elements: <= 1 passes.
double worst_over_bound(const Tensor& a, const Tensor& r, const std::vector<double>& bound) {
  const Tensor af = a.to_f32(), rf = r.to_f32();
  const double floor = rms(rf);
  double worst = 0;
  for (int64_t e = 0; e < af.numel(); ++e) {
    const double x = af.data<float>()[e], y = rf.data<float>()[e];
    const double err = std::fabs(x - y);
    const double ratio = err / (bound[e] + kRelTol * (std::fabs(y) + floor));
    worst = std::isnan(x) != std::isnan(y) ? INFINITY : std::max(worst, ratio);
  }
  return worst;
}

struct Bf16Case {
  const char* name;
  bool causal;
  int64_t Sq, Sk, H, Hkv, d;
  int positions;  // 0: queries are the last Sq keys; 1: a zigzag shard; 2: padding keys and rows
                  // that see nothing
  int64_t window = 0;  // sliding window (0: none)
};

void PrintTo(const Bf16Case& c, std::ostream* os) { *os << c.name; }

class FlashAttentionBf16Bounds : public ::testing::TestWithParam<Bf16Case> {};

TEST_P(FlashAttentionBf16Bounds, MatchesReferenceWithinBf16Rounding) {
  const Bf16Case c = GetParam();
  std::printf("[ bf16     ] dot products: %s\n", bf16_path_name().c_str());
  Inputs in = make_inputs(1, c.Sq, c.Sk, c.H, c.Hkv, c.d, 300 + c.Sq + c.d, DType::bf16);
  if (c.positions == 1) {  // rank 0 of D = 2: query chunks 0 and 3, keys in rank order 0 3 1 2
    const int64_t C = c.Sq / 2;
    std::vector<int32_t> qrows, krows;
    for (int64_t ch : {0, 3})
      for (int64_t t = 0; t < C; ++t) qrows.push_back(static_cast<int32_t>(ch * C + t));
    for (int64_t ch : {0, 3, 1, 2})
      for (int64_t t = 0; t < C; ++t) krows.push_back(static_cast<int32_t>(ch * C + t));
    in.q_pos = positions(qrows);
    in.k_pos = positions(krows);
  } else if (c.positions == 2) {
    std::vector<int32_t> kp = iota(c.Sk, 5), qp = iota(c.Sq, -4);
    for (int64_t j = c.Sk - 7; j < c.Sk; ++j) kp[j] = INT32_MAX;
    in.k_pos = positions(kp);
    in.q_pos = positions(qp);
  }
  Inputs wide = in;  // the same values in fp32, for the reference
  for (Tensor* t : {&wide.q, &wide.k, &wide.v, &wide.d_o}) *t = t->to_f32();
  FlashAttentionOptions opt;
  opt.causal = c.causal;
  opt.window = c.window;
  const Fwd f = run_fwd(in.q, in.k, in.v, in.q_pos, in.k_pos, opt);
  const Fwd r = run_fwd(wide.q, wide.k, wide.v, wide.q_pos, wide.k_pos, opt, true);
  const Grads g = run_bwd(in, f, opt);
  const Grads gr = run_bwd(wide, r, opt, true);
  const Bf16Bounds bd = bf16_bounds(wide, f.o, r.o, c.causal, c.window);
  // lse: scores are exact products summed in fp32 on both paths (the fp32 tolerance).
  expect_lse_close(f.lse, r.lse, 1e-6);
  const double wo = worst_over_bound(f.o, r.o, bd.o), wq = worst_over_bound(g.dq, gr.dq, bd.dq),
               wk = worst_over_bound(g.dk, gr.dk, bd.dk), wv = worst_over_bound(g.dv, gr.dv, bd.dv);
  std::printf("[ bf16     ] %s: worst error / bound: o %.3f dq %.3f dk %.3f dv %.3f\n", c.name, wo,
              wq, wk, wv);
  EXPECT_LE(wo, 1.0);
  EXPECT_LE(wq, 1.0);
  EXPECT_LE(wk, 1.0);
  EXPECT_LE(wv, 1.0);
}

// Tails: S and d not multiples of the 32-key panel / 16-lane vector / 2-element pair (d = 17, 40,
// 80; S = 37, 53, 211, 333, 301), GQA, causal and full, zigzag positions (skipped, unmasked and
// masked tiles with non-monotonic positions), padding keys and rows that see nothing.
INSTANTIATE_TEST_SUITE_P(
    Shapes, FlashAttentionBf16Bounds,
    ::testing::Values(Bf16Case{"gqa_d40", true, 37, 53, 6, 2, 40, 0},
                      Bf16Case{"odd_d17", true, 211, 333, 2, 1, 17, 0},
                      Bf16Case{"full_d80", false, 107, 290, 2, 1, 80, 0},
                      Bf16Case{"square_d64", true, 301, 301, 2, 1, 64, 0},
                      Bf16Case{"zigzag_d64", true, 300, 600, 2, 1, 64, 1},
                      Bf16Case{"padding_d24", true, 19, 45, 2, 2, 24, 2},
                      Bf16Case{"window50_d64", true, 301, 301, 2, 1, 64, 0, 50},
                      Bf16Case{"zigzag_window120_d64", true, 300, 600, 2, 1, 64, 1, 120}),
    [](const ::testing::TestParamInfo<Bf16Case>& i) { return std::string(i.param.name); });

TEST(FlashAttentionBf16Path, TheSelectedMathRuns) {
  // Says which path ran and proves it: the fp32 path widens bf16 exactly, so its results equal
  // the fp32 kernel on the widened inputs bit for bit (o after one rounding to bf16); the native
  // path rounds P and dS to bf16, which moves the gradients by ~1e-3 relative (rel. L2 above
  // 1e-4 here; fp32 reordering alone would be ~1e-7).
  std::printf("[ bf16     ] dot products: %s\n", bf16_path_name().c_str());
  const Inputs in = make_inputs(1, 150, 150, 4, 2, 64, 81, DType::bf16);
  Inputs wide = in;
  for (Tensor* t : {&wide.q, &wide.k, &wide.v, &wide.d_o}) *t = t->to_f32();
  const Fwd fb = run_fwd(in.q, in.k, in.v, in.q_pos, in.k_pos);
  const Fwd fw = run_fwd(wide.q, wide.k, wide.v, wide.q_pos, wide.k_pos);
  const Fwd fb_wide{fb.o.to_f32(), fb.lse};  // the same saved o and lse for both backwards
  const Grads gb = run_bwd(in, fb);
  const Grads gw = run_bwd(wide, fb_wide);
  const Tensor ow = Tensor::copy_of(fw.o, DType::bf16, MemCategory::workspace);
  int64_t o_diff = 0;
  for (int64_t e = 0; e < ow.numel(); ++e) o_diff += fb.o.item_f32(e) != ow.item_f32(e);
  const double e_dq = relative_l2(gb.dq, gw.dq), e_dk = relative_l2(gb.dk, gw.dk),
               e_dv = relative_l2(gb.dv, gw.dv);
  std::printf("[ bf16     ] vs fp32 kernel on widened inputs: o elements differing %lld of %lld; "
              "rel. L2 dq %.2e dk %.2e dv %.2e\n",
              static_cast<long long>(o_diff), static_cast<long long>(ow.numel()), e_dq, e_dk,
              e_dv);
  if (native_bf16_math()) {
    EXPECT_GT(o_diff, 0);
    EXPECT_GT(e_dq, 1e-4);
    EXPECT_GT(e_dk, 1e-4);
    EXPECT_GT(e_dv, 1e-4);
  } else {
    EXPECT_EQ(o_diff, 0);
    EXPECT_EQ(e_dq, 0.0);
    EXPECT_EQ(e_dk, 0.0);
    EXPECT_EQ(e_dv, 0.0);
  }
}

TEST(FlashAttentionThreads, ResultsIndependentOfThreadCount) {
  const int64_t B = 1, S = 300, H = 4, Hkv = 2, d = 32;
  const Inputs in = make_inputs(B, S, S, H, Hkv, d, 81);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const Fwd f1 = run_fwd(in.q, in.k, in.v, in.q_pos, in.k_pos);
  const Grads g1 = run_bwd(in, f1);
  omp_set_num_threads(2);
  const Fwd f2 = run_fwd(in.q, in.k, in.v, in.q_pos, in.k_pos);
  const Grads g2 = run_bwd(in, f1);
  omp_set_num_threads(saved);
  // Forward, dk, dv: one fixed summation order per element, so bitwise equal.
  EXPECT_EQ(compare(f2.o, f1.o).max_abs, 0.0);
  EXPECT_EQ(compare(f2.lse, f1.lse).max_abs, 0.0);
  EXPECT_EQ(compare(g2.dk, g1.dk).max_abs, 0.0);
  EXPECT_EQ(compare(g2.dv, g1.dv).max_abs, 0.0);
  // dq sums per-thread partials: equal up to reassociation.
  EXPECT_CLOSE(g2.dq, g1.dq, kRelTol, floor_of(g1.dq));
}

TEST(FlashAttentionSkipping, CausalRunComputesAboutHalfTheTiles) {
  const int64_t S = 1536, d = 16;
  const Inputs in = make_inputs(1, S, S, 1, 1, d, 91);
  FlashAttentionStats st;
  const Fwd f = run_fwd(in.q, in.k, in.v, in.q_pos, in.k_pos, {}, false, &st);
  const int64_t nq = (S + st.block_q - 1) / st.block_q, nk = (S + st.block_k - 1) / st.block_k;
  EXPECT_EQ(st.tile_pairs, nq * nk);
  EXPECT_EQ(st.computed + st.skipped, st.tile_pairs);
  // Exactly the pairs whose first key is at or before the tile's last query are computed: the
  // lower triangle plus the diagonal band.
  int64_t expect = 0, expect_masked = 0;
  for (int64_t qt = 0; qt < nq; ++qt)
    for (int64_t kt = 0; kt < nk; ++kt) {
      const int64_t qlo = qt * st.block_q, qhi = std::min(S, qlo + st.block_q) - 1;
      const int64_t klo = kt * st.block_k, khi = std::min(S, klo + st.block_k) - 1;
      if (klo <= qhi) ++expect;
      if (klo <= qhi && khi > qlo) ++expect_masked;
    }
  EXPECT_EQ(st.computed, expect);
  EXPECT_EQ(st.masked, expect_masked);
  // "About half": the computed area exceeds S^2/2 only by the diagonal band.
  const double computed_area = double(st.computed) * st.block_q * st.block_k;
  EXPECT_LE(computed_area, 0.5 * S * S + double(S) * (st.block_q + st.block_k));
  EXPECT_GE(double(st.skipped) / st.tile_pairs, 0.25);
  Grads g = run_bwd(in, f, {}, false, DType::f32, &st);
  EXPECT_LE(double(st.computed) * st.block_q * st.block_k,
            0.5 * S * S + double(S) * (st.block_q + st.block_k));
  EXPECT_GT(st.skipped, 0);
  // Non-causal: everything is computed, nothing masked.
  FlashAttentionOptions full;
  full.causal = false;
  run_fwd(in.q, in.k, in.v, in.q_pos, in.k_pos, full, false, &st);
  EXPECT_EQ(st.computed, st.tile_pairs);
  EXPECT_EQ(st.masked, 0);
}

// Sliding window (Mistral): key j visible iff 0 <= q_pos - k_pos < W. Against the double
// reference (which applies the rule element-wise) for windows inside one tile, across tile
// boundaries and longer than the sequence (= plain causal), in order and on a zigzag shard; and
// the tile accounting: pairs wholly older than the window are skipped, so the computed area is
// O(S W), not O(S^2).
TEST(FlashAttentionWindow, MatchesReferenceAndSkipsTilesOutsideTheWindow) {
  const int64_t S = 700, H = 4, Hkv = 2, d = 32;
  const Inputs in = make_inputs(1, S, S, H, Hkv, d, 57);
  for (int64_t window : {1, 5, 64, 130, 300, 5000}) {
    FlashAttentionOptions opt;
    opt.window = window;
    FlashAttentionStats st;
    const Fwd f = run_fwd(in.q, in.k, in.v, in.q_pos, in.k_pos, opt, false, &st);
    const Fwd r = run_fwd(in.q, in.k, in.v, in.q_pos, in.k_pos, opt, true);
    EXPECT_CLOSE(f.o, r.o, kRelTol, floor_of(r.o));
    expect_lse_close(f.lse, r.lse, 1e-6);
    // Computed pairs: exactly those with a key position in [qlo - W + 1, qhi].
    const int64_t nq = (S + st.block_q - 1) / st.block_q, nk = (S + st.block_k - 1) / st.block_k;
    int64_t expect = 0;
    for (int64_t qt = 0; qt < nq; ++qt)
      for (int64_t kt = 0; kt < nk; ++kt) {
        const int64_t qlo = qt * st.block_q, qhi = std::min(S, qlo + st.block_q) - 1;
        const int64_t klo = kt * st.block_k, khi = std::min(S, klo + st.block_k) - 1;
        if (klo <= qhi && khi >= qlo - window + 1) ++expect;
      }
    EXPECT_EQ(st.computed, expect * H) << "window " << window;
    if (window <= 64) {  // O(S W): the band of width W plus at most a tile on each side
      EXPECT_LE(double(st.computed) / H * st.block_q * st.block_k,
                double(S) * (window + st.block_q + 2 * st.block_k)) << window;
    }
    const Grads g = run_bwd(in, f, opt, false, DType::f32, &st);
    const Grads gr = run_bwd(in, r, opt, true);
    // W = 1: each query sees only itself, so P = 1 and dS = P (dO.v - rowsum(dO * O)) = 0 exactly:
    // dq and dk are 0 and the kernel's are the fp32 rounding of that difference of terms of the
    // size of dO.v, so their floor is dv's (dv = P^T dO has that size) instead of their own rms.
    const double dqk_floor = window == 1 ? floor_of(gr.dv) : 0;
    EXPECT_CLOSE(g.dq, gr.dq, kRelTol, std::max(dqk_floor, floor_of(gr.dq)));
    EXPECT_CLOSE(g.dk, gr.dk, kRelTol, std::max(dqk_floor, floor_of(gr.dk)));
    EXPECT_CLOSE(g.dv, gr.dv, kRelTol, floor_of(gr.dv));
    if (window <= 64) {
      EXPECT_GT(st.skipped, 0) << window;
    }
  }
  // A window longer than the sequence is plain causal attention, bit for bit.
  FlashAttentionOptions wide;
  wide.window = S;
  const Fwd a = run_fwd(in.q, in.k, in.v, in.q_pos, in.k_pos, wide);
  const Fwd b = run_fwd(in.q, in.k, in.v, in.q_pos, in.k_pos);
  EXPECT_TRUE(testing::same_bytes(a.o, b.o));
  // (bf16 with a window: FlashAttentionBf16Bounds' window cases.)
  // Validation: negative windows and windows without causality are refused.
  FlashAttentionOptions bad;
  bad.window = -1;
  EXPECT_THROW(run_fwd(in.q, in.k, in.v, in.q_pos, in.k_pos, bad), InvalidArgument);
  bad.window = 4;
  bad.causal = false;
  EXPECT_THROW(run_fwd(in.q, in.k, in.v, in.q_pos, in.k_pos, bad), InvalidArgument);
}

TEST(FlashAttentionWindow, ZigzagShardWithWindowMatchesReference) {
  // zigzag_rank0_inputs with W = 200.
  const Inputs local = zigzag_rank0_inputs(29);
  FlashAttentionOptions opt;
  opt.window = 200;
  FlashAttentionStats st;
  run_fwd(local.q, local.k, local.v, local.q_pos, local.k_pos, opt, false, &st);
  EXPECT_GT(st.skipped, 0);
  expect_matches_reference(local, opt);
}

TEST(FlashAttentionWorkspace, GrowsLinearlyNotQuadratically) {
  // Peak workspace bytes allocated by the kernels themselves (the inputs, also workspace
  // tensors, are live before and excluded).
  auto peak = [](int64_t S, bool backward) {
    const Inputs in = make_inputs(1, S, S, 2, 1, 32, 95);
    Fwd f = run_fwd(in.q, in.k, in.v, in.q_pos, in.k_pos);
    Grads g{Tensor::empty(in.q.shape(), DType::f32, MemCategory::workspace),
            Tensor::empty(in.k.shape(), DType::f32, MemCategory::workspace),
            Tensor::empty(in.k.shape(), DType::f32, MemCategory::workspace)};
    MemoryLedger& ledger = MemoryLedger::process();
    const int64_t live = ledger.stats(MemCategory::workspace).live_bytes;
    ledger.reset_peaks();
    if (backward)
      flash_attention_backward(in.q, in.k, in.v, f.o, in.d_o, f.lse, in.q_pos, in.k_pos, g.dq,
                               g.dk, g.dv);
    else
      flash_attention_forward(in.q, in.k, in.v, in.q_pos, in.k_pos, f.o, f.lse);
    return ledger.stats(MemCategory::workspace).peak_bytes - live;
  };
  for (bool backward : {false, true}) {
    const int64_t p1 = peak(1024, backward), p2 = peak(2048, backward);
    EXPECT_GT(p1, 0);
    EXPECT_LE(p2, 2 * p1 + (1 << 20)) << "backward=" << backward << " " << p1 << " -> " << p2;
    // And in absolute terms O(S d): far below one S x S fp32 score matrix (16 MiB at 2048).
    EXPECT_LE(p2, 32 * 2048 * 32 * 4) << "backward=" << backward;
  }
}

TEST(FlashAttentionValidation, BadInputsThrowTypedErrorsNamingShapes) {
  const Inputs in = make_inputs(2, 37, 53, 6, 2, 24, 5);
  Tensor o = Tensor::empty(in.q.shape(), DType::f32, MemCategory::workspace);
  Tensor lse = Tensor::empty({2, 6, 37}, DType::f32, MemCategory::workspace);
  auto expect_throw = [&](auto&& fn, auto tag, const std::string& must_contain) {
    using E = decltype(tag);
    try {
      fn();
      ADD_FAILURE() << "no exception; expected " << must_contain;
    } catch (const E& e) {
      EXPECT_NE(std::string(e.what()).find(must_contain), std::string::npos) << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "wrong exception type: " << e.what();
    }
  };
  // k and v disagree.
  Tensor v_bad = random_tensor({2, 52, 2, 24}, DType::f32, 6);
  expect_throw([&] { flash_attention_forward(in.q, in.k, v_bad, in.q_pos, in.k_pos, o, lse); },
               ShapeError(""), v_bad.describe());
  // H % Hkv != 0.
  Tensor k4 = random_tensor({2, 53, 4, 24}, DType::f32, 7);
  expect_throw([&] { flash_attention_forward(in.q, k4, k4, in.q_pos, in.k_pos, o, lse); },
               ShapeError(""), k4.describe());
  // Head dim mismatch.
  Tensor k_d = random_tensor({2, 53, 2, 16}, DType::f32, 8);
  expect_throw([&] { flash_attention_forward(in.q, k_d, k_d, in.q_pos, in.k_pos, o, lse); },
               ShapeError(""), in.q.describe());
  // lse of the wrong shape.
  Tensor lse_bad = Tensor::empty({2, 37, 6}, DType::f32, MemCategory::workspace);
  expect_throw([&] { flash_attention_forward(in.q, in.k, in.v, in.q_pos, in.k_pos, o, lse_bad); },
               ShapeError(""), lse_bad.describe());
  // Mixed dtypes.
  Tensor kb = Tensor::copy_of(in.k, DType::bf16, MemCategory::workspace);
  expect_throw([&] { flash_attention_forward(in.q, kb, in.v, in.q_pos, in.k_pos, o, lse); },
               DTypeError(""), kb.describe());
  // Positions of the wrong length and dtype.
  Tensor qp_short = positions(iota(36));
  expect_throw([&] { flash_attention_forward(in.q, in.k, in.v, qp_short, in.k_pos, o, lse); },
               ShapeError(""), qp_short.describe());
  Tensor kp_f = Tensor::zeros({53}, DType::f32, MemCategory::workspace);
  expect_throw([&] { flash_attention_forward(in.q, in.k, in.v, in.q_pos, kp_f, o, lse); },
               DTypeError(""), kp_f.describe());
  // Non-unit inner stride (a transposed view).
  Tensor qt = random_tensor({2, 37, 24, 6}, DType::f32, 9).transpose(2, 3);
  expect_throw([&] { flash_attention_forward(qt, in.k, in.v, in.q_pos, in.k_pos, o, lse); },
               LayoutError(""), qt.describe());
  // Backward: gradient shapes, dtypes.
  Tensor dq = Tensor::empty(in.q.shape(), DType::f32, MemCategory::workspace);
  Tensor dk = Tensor::empty(in.k.shape(), DType::f32, MemCategory::workspace);
  Tensor dv_bad = Tensor::empty({2, 53, 2, 23}, DType::f32, MemCategory::workspace);
  expect_throw([&] {
    flash_attention_backward(in.q, in.k, in.v, o, in.d_o, lse, in.q_pos, in.k_pos, dq, dk, dv_bad);
  }, ShapeError(""), dv_bad.describe());
  Tensor dk_i = Tensor::empty(in.k.shape(), DType::i32, MemCategory::workspace);
  expect_throw([&] {
    flash_attention_backward(in.q, in.k, in.v, o, in.d_o, lse, in.q_pos, in.k_pos, dq, dk_i, dk);
  }, DTypeError(""), dk_i.describe());
  FlashAttentionOptions neg;
  neg.scale = -1.f;
  expect_throw([&] { flash_attention_forward(in.q, in.k, in.v, in.q_pos, in.k_pos, o, lse, neg); },
               InvalidArgument(""), "scale");
}

}  // namespace
}  // namespace tsp::kernels
