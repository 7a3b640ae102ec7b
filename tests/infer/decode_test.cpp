// Prefill + decode against the full forward: logits at every step equal the last-position logits
// of a forward pass over the whole prefix (f32, bf16, GQA and MHA, beyond one flash-attention key
// tile), split-cache attention merged by log-sum-exp, decode from an empty cache, and batches of
// prompts of different lengths against each prompt alone.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "infer_test_util.h"
#include "tsp/infer/single/decode_step.h"
#include "tsp/infer/kv_cache.h"
#include "tsp/infer/single/prefill.h"
#include "tsp/infer/sampler.h"
#include "tsp/model/transformer.h"

namespace tsp::infer {
namespace {

using testing::Case;
using testing::kGqaUntied;
using testing::kMhaTied;
using testing::kGqaYarn;
using testing::kGqaWideHeads;
using testing::kGqaWindow;
using testing::kQwen2Bias;
using testing::make_config;
using testing::random_tokens;
using testing::random_weights;
using testing::reference_logits;
using testing::row;
using testing::row_error;
using testing::f32_logits_tol;

// Prefill `prompt_len` tokens of `seq`, then decode the rest teacher-forced; returns the worst
// row error against the reference logits over all steps.
double worst_step_error(const model::ModelWeights& w, const std::vector<int32_t>& seq,
                        int64_t prompt_len, int64_t kv_parts = 1) {
  const Tensor ref = reference_logits(w, seq);
  KvCache cache(w.config(), w.dtype(), 1, static_cast<int64_t>(seq.size()));
  const std::vector<int32_t> prompt(seq.begin(), seq.begin() + prompt_len);
  Tensor logits = prefill(w, {prompt}, cache);
  double worst = row_error(row(logits, 0), row(ref, prompt_len - 1));
  for (auto i = static_cast<size_t>(prompt_len); i < seq.size(); ++i) {
    logits = decode_step(w, std::span<const int32_t>(&seq[i], 1), cache, {.kv_parts = kv_parts});
    worst = std::max(worst, row_error(row(logits, 0), row(ref, static_cast<int64_t>(i))));
    EXPECT_EQ(cache.length(0), static_cast<int64_t>(i) + 1);
  }
  return worst;
}

class DecodeVsForward : public ::testing::TestWithParam<Case> {};

// fp32: prefill runs the same block_forward as the reference; decode differs only in GEMM shapes
// (M = 1 vs M = t) and in flash attention's query tiling, i.e. in the fp32 summation order: the
// derived f32_logits_tol (infer_test_util.h) of the logits' scale.
TEST_P(DecodeVsForward, F32LogitsAtEveryStepEqualTheFullForward) {
  const model::ModelConfig c = make_config(GetParam());
  const model::ModelWeights w = random_weights(c, 11);
  const double err = worst_step_error(w, random_tokens(40, c.vocab_size(), 3), 7);
  EXPECT_LE(err, f32_logits_tol(c, 40));
  RecordProperty("worst_rel_error", ::testing::PrintToString(err));
}

// Beyond one 256-key tile of flash attention, in prefill and in decode.
TEST_P(DecodeVsForward, F32AcrossFlashAttentionKeyTiles) {
  const model::ModelConfig c = make_config(GetParam(), 1);
  const model::ModelWeights w = random_weights(c, 12);
  EXPECT_LE(worst_step_error(w, random_tokens(300, c.vocab_size(), 4), 250), f32_logits_tol(c, 300));
}

// bf16: decode rounds to bf16 at exactly the points block_forward does (normed input, q|k|v, the
// attention output, the residual after each GEMM, gate|up, the SwiGLU output), so the two differ
// only where a different fp32 summation order flips one of those roundings (2^-8 relative of that
// value), and a flip then propagates through the following ~2L + 2 rounded stages. Observed: 1e-7
// of the logits' scale (the roundings absorb the order differences); 2e-2 allows a few flips while
// any real error (a wrong RoPE position, a stale or missing cache slot) gives O(1).
TEST_P(DecodeVsForward, Bf16LogitsAtEveryStepMatchTheBf16Forward) {
  const model::ModelConfig c = make_config(GetParam());
  const model::ModelWeights w = random_weights(c, 13, DType::bf16);
  const double err = worst_step_error(w, random_tokens(40, c.vocab_size(), 5), 9);
  EXPECT_LE(err, 2e-2);
  RecordProperty("worst_rel_error", ::testing::PrintToString(err));
}

// The cache split into parts whose attention partials are merged by log-sum-exp (what the
// sharded decode does across ranks) gives the one-call result up to fp32 rounding.
TEST_P(DecodeVsForward, SplitCacheAttentionMergedByLseEqualsOneCall) {
  const model::ModelConfig c = make_config(GetParam());
  const model::ModelWeights w = random_weights(c, 14);
  const std::vector<int32_t> seq = random_tokens(30, c.vocab_size(), 6);
  for (const int64_t parts : {2, 3, 7, 64})
    EXPECT_LE(worst_step_error(w, seq, 5, parts), f32_logits_tol(c, 30)) << parts;
}

INSTANTIATE_TEST_SUITE_P(Configs, DecodeVsForward, ::testing::Values(kGqaUntied, kMhaTied, kGqaYarn, kGqaWideHeads, kGqaWindow, kQwen2Bias),
                         [](const auto& info) { return std::string(info.param.name); });

// The reference logits used above agree with Transformer::forward (itself checked against the
// double-precision model): sum over positions of lse(logits_i) - logits_i[token_{i+1}] is its
// loss. Computed from the DECODE logits, so decode is tied to the model's tested forward too.
TEST(DecodeVsForward, DecodeLogitsReproduceTheTransformerLoss) {
  const model::ModelConfig c = make_config(kGqaUntied);
  const model::ModelWeights w = random_weights(c, 15);
  const std::vector<int32_t> seq = random_tokens(25, c.vocab_size(), 7);
  KvCache cache(c, DType::f32, 1, 25);
  double loss = 0;
  Tensor logits = prefill(w, {{seq[0]}}, cache);
  for (size_t i = 1; i < seq.size(); ++i) {
    const std::span<const float> l = row(logits, 0);
    double m = -INFINITY, s = 0;
    for (const float x : l) m = std::max(m, static_cast<double>(x));
    for (const float x : l) s += std::exp(x - m);
    loss += m + std::log(s) - l[static_cast<size_t>(seq[i])];
    logits = decode_step(w, std::span<const int32_t>(&seq[i], 1), cache);
  }
  Tensor tokens = Tensor::empty({1, 24}, DType::i32, MemCategory::workspace);
  Tensor targets = Tensor::empty({1, 24}, DType::i32, MemCategory::workspace);
  std::copy(seq.begin(), seq.end() - 1, tokens.data<int32_t>());
  std::copy(seq.begin() + 1, seq.end(), targets.data<int32_t>());
  const model::LossSum ref = model::Transformer(c).forward(w, tokens, targets);
  // Two fp32 computations of a sum of non-negative per-token losses (the decode's in double from
  // its logits): each within gamma_f (the forward chain, tests/fp_bounds.h) of exact, relative to
  // the loss itself.
  EXPECT_NEAR(loss, ref.loss_sum,
              2 * ::tsp::testing::model_chain(c, 25, 25, /*backward=*/false, /*extra=*/14).gamma * std::fabs(ref.loss_sum));
}

// Decoding a prompt token by token from an empty cache equals prefilling it.
TEST(Decode, FromAnEmptyCacheEqualsPrefill) {
  const model::ModelConfig c = make_config(kMhaTied);
  const model::ModelWeights w = random_weights(c, 16);
  const std::vector<int32_t> prompt = random_tokens(12, c.vocab_size(), 8);
  KvCache a(c, DType::f32, 1, 12), b(c, DType::f32, 1, 12);
  const Tensor prefilled = prefill(w, {prompt}, a);
  Tensor decoded;
  for (const int32_t& t : prompt) decoded = decode_step(w, std::span<const int32_t>(&t, 1), b);
  EXPECT_LE(row_error(row(decoded, 0), row(prefilled, 0)), f32_logits_tol(c, 12));
  for (int64_t l = 0; l < c.num_hidden_layers(); ++l) {
    EXPECT_LE(testing::row_error({b.k(l).data<float>(), static_cast<size_t>(b.k(l).numel())},
                                 {a.k(l).data<float>(), static_cast<size_t>(a.k(l).numel())}),
              f32_logits_tol(c, 12));  // a prefix of the logits' chain: the same bound holds
  }
}

// A batch of prompts of different lengths (left-aligned, padded) gives, greedily, the same tokens
// and logits as each prompt alone: padding never leaks into a real token.
TEST(Decode, BatchOfDifferentLengthsEqualsEachPromptAlone) {
  const model::ModelConfig c = make_config(kGqaUntied);
  const model::ModelWeights w = random_weights(c, 17);
  const std::vector<std::vector<int32_t>> prompts = {
      random_tokens(5, c.vocab_size(), 20), random_tokens(12, c.vocab_size(), 21),
      random_tokens(1, c.vocab_size(), 22)};
  const int64_t steps = 10, cap = 12 + steps;
  auto run = [&](const std::vector<std::vector<int32_t>>& batch, std::vector<Tensor>& logits_out) {
    KvCache cache(c, DType::f32, static_cast<int64_t>(batch.size()), cap);
    Tensor logits = prefill(w, batch, cache);
    std::vector<std::vector<int32_t>> tokens(batch.size());
    for (int64_t s = 0; s < steps; ++s) {
      logits_out.push_back(logits);
      std::vector<int32_t> next;
      for (int64_t b = 0; b < logits.dim(0); ++b) next.push_back(argmax(row(logits, b)));
      for (size_t b = 0; b < next.size(); ++b) tokens[b].push_back(next[b]);
      logits = decode_step(w, next, cache);
    }
    return tokens;
  };
  std::vector<Tensor> batched_logits;
  const auto batched = run(prompts, batched_logits);
  for (size_t b = 0; b < prompts.size(); ++b) {
    std::vector<Tensor> alone_logits;
    EXPECT_EQ(batched[b], run({prompts[b]}, alone_logits)[0]) << "prompt " << b;
    for (int64_t s = 0; s < steps; ++s) {
      EXPECT_LE(row_error(row(batched_logits[s], static_cast<int64_t>(b)), row(alone_logits[s], 0)),
                f32_logits_tol(c, cap))
          << "prompt " << b << " step " << s;
    }
  }
}

TEST(Decode, PrefillRecordsPositionsAndLeavesPaddingEmpty) {
  const model::ModelConfig c = make_config(kGqaUntied);
  const model::ModelWeights w = random_weights(c, 18);
  KvCache cache(c, DType::f32, 2, 8);
  prefill(w, {random_tokens(3, 37, 1), random_tokens(5, 37, 2)}, cache);
  EXPECT_EQ(cache.length(0), 3);
  EXPECT_EQ(cache.length(1), 5);
  const int32_t* pos = cache.positions().data<int32_t>();
  const std::vector<int32_t> row0(pos, pos + 8), row1(pos + 8, pos + 16);
  EXPECT_EQ(row0, (std::vector<int32_t>{0, 1, 2, kEmptySlot, kEmptySlot, kEmptySlot, kEmptySlot, kEmptySlot}));
  EXPECT_EQ(row1, (std::vector<int32_t>{0, 1, 2, 3, 4, kEmptySlot, kEmptySlot, kEmptySlot}));
  const int32_t next[2] = {1, 2};
  decode_step(w, next, cache);
  EXPECT_EQ(pos[3], 3);
  EXPECT_EQ(pos[8 + 5], 5);
}

}  // namespace
}  // namespace tsp::infer
