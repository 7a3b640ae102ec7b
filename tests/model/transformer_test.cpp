// Tests of the single-rank Transformer against the naive double-precision reference model:
// loss, every gradient element (central finite differences of the reference), ignore index,
// micro-batch accumulation, recomputation (bitwise and memory), one AdamW training step, bf16,
// and input validation.
#include "tsp/model/transformer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "fp_bounds.h"
#include "tsp/core/error.h"
#include "tsp/core/memory.h"
#include "tsp/core/random.h"
#include "tsp/kernels/adamw.h"
#include "tsp/model/reference/reference_model.h"

namespace tsp::model {
namespace {

using reference::reference_loss_sum;
using reference::ReferenceWeights;

struct Case {
  const char* name;
  int64_t h, heads, kv_heads, ffn;
  bool tied;
  kernels::RopeScaling rope = {};
  int64_t head_dim = 0;  // explicit d (0: h / heads)
  int64_t window = 0;    // Mistral sliding window (0: none)
  bool qkv_bias = false; // Qwen2: q/k/v projection biases
};
// GQA with an untied head, and MHA with a tied head (embedding gets lookup + head gradients).
const Case kGqaUntied{"gqa_untied", 16, 4, 2, 32, false};
const Case kMhaTied{"mha_tied", 16, 4, 4, 24, true};
// An explicit head_dim 8 with h 16 and 4 heads: q and o are H d = 32 wide, twice the stream.
const Case kGqaWideHeads{"gqa_wide_heads", 16, 4, 2, 32, false, {}, 8};
// Mistral: a sliding window of 4 over sequences of 11 (grad_problem) and 70.
const Case kGqaWindow{"gqa_window4", 16, 4, 2, 32, false, {}, 0, 4};
// Qwen2: q/k/v biases, tied embeddings (as Qwen2.5 0.5B-3B).
const Case kQwen2Bias{"qwen2_qkv_bias", 16, 4, 2, 32, true, {}, 0, 0, true};

ModelConfig make_config(const Case& k, int64_t layers = 2, int64_t max_pos = 512) {
  ModelConfigFields f;
  f.hidden_size = k.h;
  f.intermediate_size = k.ffn;
  f.num_hidden_layers = layers;
  f.num_attention_heads = k.heads;
  f.num_key_value_heads = k.kv_heads;
  f.vocab_size = 37;
  f.rms_norm_eps = 1e-5;
  f.rope_theta = 10000.0;
  f.max_position_embeddings = max_pos;
  f.tie_word_embeddings = k.tied;
  f.rope_scaling = k.rope;
  f.head_dim = k.head_dim;
  if (k.window > 0) {
    f.model_type = ModelType::mistral;
    f.sliding_window = k.window;
  }
  if (k.qkv_bias) f.model_type = ModelType::qwen2;
  return ModelConfig(f);
}

// Weights with more spread than initialize()'s N(0, 0.02) so that every path (attention
// pattern, gates, norm gains) carries signal: matrices N(0, 0.3), embedding N(0, 1), gains
// N(1, 0.2). f32; tests that need bf16 round these.
ModelWeights random_weights(const ModelConfig& c, uint64_t seed) {
  ModelWeights w(c, DType::f32, MemCategory::weights);
  const auto specs = weight_specs(c);
  auto named = w.named();
  for (size_t i = 0; i < specs.size(); ++i) {
    Rng rng(seed, i);
    if (is_norm_weight(specs[i].kind))
      fill_normal(named[i].second, rng, 1.f, 0.2f);
    else
      fill_normal(named[i].second, rng, 0.f, specs[i].kind == WeightKind::embed_tokens ? 1.f : 0.3f);
  }
  return w;
}

Tensor random_ids(int64_t batch, int64_t seq, int64_t vocab, uint64_t seed, int every_ignored = 0) {
  Tensor t = Tensor::empty({batch, seq}, DType::i32, MemCategory::workspace);
  Rng rng(seed, 99);
  for (int64_t i = 0; i < t.numel(); ++i) {
    const bool ignored = every_ignored > 0 && i % every_ignored == every_ignored - 1;
    t.data<int32_t>()[i] = ignored ? kIgnoreIndex : static_cast<int32_t>(rng.below(vocab));
  }
  return t;
}

struct Batch {
  Tensor tokens, targets;
};
Batch make_batch(const ModelConfig& c, int64_t batch, int64_t seq, uint64_t seed) {
  return {random_ids(batch, seq, c.vocab_size(), seed),
          random_ids(batch, seq, c.vocab_size(), seed + 1000, /*every_ignored=*/5)};
}

std::vector<std::vector<double>> to_vectors(const ModelWeights& g) {
  return ReferenceWeights::from(g).tensors;
}

// Central differences of scale * reference_loss_sum w.r.t. every weight element, in double.
// Step 1e-4: truncation step^2 |f'''| / 6 ~ 1e-9 for these O(1)-curvature losses, cancellation
// 2^-52 |f| / step ~ 1e-11, both far below the fp32 errors being tested (~1e-6 relative).
std::vector<std::vector<double>> fd_gradients(const ModelWeights& w, const Batch& b, double scale) {
  ReferenceWeights r = ReferenceWeights::from(w);
  constexpr double step = 1e-4;
  std::vector<std::vector<double>> g(r.tensors.size());
  for (size_t t = 0; t < r.tensors.size(); ++t) {
    g[t].resize(r.tensors[t].size());
    for (size_t i = 0; i < r.tensors[t].size(); ++i) {
      const double keep = r.tensors[t][i];
      r.tensors[t][i] = keep + step;
      const double fp = reference_loss_sum(r, b.tokens, b.targets);
      r.tensors[t][i] = keep - step;
      const double fm = reference_loss_sum(r, b.tokens, b.targets);
      r.tensors[t][i] = keep;
      g[t][i] = scale * (fp - fm) / (2 * step);
    }
  }
  return g;
}

// The fixed problem of the gradient tests: B=2, S=11, every fifth target ignored.
struct GradProblem {
  ModelConfig config;
  ModelWeights w;
  Batch batch;
  double scale;
  std::vector<std::vector<double>> fd;  // finite-difference gradients of scale * loss_sum
};
const GradProblem& grad_problem(const Case& k) {
  static std::map<std::string, GradProblem> cache;
  auto it = cache.find(k.name);
  if (it != cache.end()) return it->second;
  const ModelConfig c = make_config(k);
  ModelWeights w = random_weights(c, 17);
  Batch b = make_batch(c, 2, 11, 5);
  const double scale = 1.0 / static_cast<double>(count_valid_targets(b.targets));
  std::vector<std::vector<double>> fd = fd_gradients(w, b, scale);
  return cache.emplace(k.name, GradProblem{c, std::move(w), std::move(b), scale, std::move(fd)})
      .first->second;
}

// Gradient tolerance: |fast - fd| <= grad_tol(c) * (|fd| + rms(fd of that tensor)).
// The fast path is fp32 throughout, the finite differences are double (their own error, above,
// is < 1e-9, far below this bound). Derived (tests/fp_bounds.h): a gradient element is the end of
// a chain of fp32 reductions (forward and backward through L = 2 layers, h = 16, F <= 32, V = 37,
// S = 11, T = 22 tokens), each erring by <= n_k 2^-24 of the magnitude of its summed terms, so
// by <= (sum_k n_k) 2^-24 = 866 * 2^-24 = 5.2e-5 (the +2 of the tied embedding's two gradient
// contributions included) relative to that magnitude, which is the tensor's scale (rms) for an
// element that cancels to ~0 and |fd| for a large one. A wrong or missing term (>= 1e-2) fails.
double grad_tol(const ModelConfig& c, int64_t seq, int64_t tokens) {
  return testing::model_chain(c, seq, tokens, /*backward=*/true, /*extra=*/c.tie_word_embeddings() ? 2 : 0).gamma;
}

double rms(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s / static_cast<double>(v.size()));
}

void expect_gradients_match(const ModelConfig& c, const std::vector<std::vector<double>>& fast,
                            const std::vector<std::vector<double>>& fd) {
  const auto specs = weight_specs(c);
  ASSERT_EQ(fast.size(), specs.size());
  const double tol = grad_tol(c, 11, 22);  // grad_problem: B = 2, S = 11
  double overall = 0;
  for (size_t t = 0; t < specs.size(); ++t) {
    const double floor = rms(fd[t]);
    double worst = 0;
    size_t worst_i = 0;
    for (size_t i = 0; i < fd[t].size(); ++i) {
      const double err = std::fabs(fast[t][i] - fd[t][i]) / (std::fabs(fd[t][i]) + floor);
      if (err > worst) worst = err, worst_i = i;
    }
    overall = std::max(overall, worst);
    EXPECT_GT(rms(fd[t]), 0.0) << specs[t].name << " has an identically zero gradient";
    EXPECT_LE(worst, tol) << specs[t].name << " element " << worst_i << ": fast "
                               << fast[t][worst_i] << " vs finite difference " << fd[t][worst_i];
  }
  std::printf("worst gradient error vs finite differences: %.3g (bound %.3g)\n", overall, tol);
}

// forward_backward's gradients of grad_problem(k) against its finite differences.
void check_gradients_against_finite_differences(const Case& k, const TransformerOptions& options) {
  const GradProblem& p = grad_problem(k);
  Transformer model(p.config, options);
  ModelWeights g(p.config, DType::f32, MemCategory::grads);
  model.forward_backward(p.w, p.batch.tokens, p.batch.targets, g, static_cast<float>(p.scale));
  expect_gradients_match(p.config, to_vectors(g), p.fd);
}

// ---------------------------------------------------------------------------------------------

TEST(Transformer, ForwardMatchesReference) {
  for (const Case& k : {kGqaUntied, kMhaTied, kGqaWideHeads, kGqaWindow, kQwen2Bias}) {
    const ModelConfig c = make_config(k);
    const ModelWeights w = random_weights(c, 3);
    const Batch b = make_batch(c, 2, 11, 9);
    Transformer model(c, {.vocab_chunk = 16});  // 37 = 16 + 16 + 5: several chunks, a ragged one
    const LossSum fast = model.forward(w, b.tokens, b.targets);
    const double ref = reference_loss_sum(w, b.tokens, b.targets);
    EXPECT_EQ(fast.n_valid, count_valid_targets(b.targets));
    EXPECT_EQ(fast.n_valid, 2 * 11 - 4);  // every fifth of 22 targets is ignored
    // fp32 against the double reference: the loss is a sum of non-negative per-token terms
    // -log p = lse - z_y (computed from logits of the same order), each the end of a chain of fp32
    // reductions of 384..400 terms in all (tests/fp_bounds.h): relative error <= 2.4e-5.
    EXPECT_NEAR(fast.loss_sum, ref, testing::model_chain(c, 11, 22, false).gamma * std::fabs(ref)) << k.name;
    std::printf("%s loss %.9g vs reference %.9g (rel %.2g)\n", k.name, fast.loss_sum, ref,
                std::fabs(fast.loss_sum - ref) / ref);
    ModelWeights g(c, DType::f32, MemCategory::grads);
    const LossSum fb = model.forward_backward(w, b.tokens, b.targets, g, 1.f);
    EXPECT_EQ(fb.loss_sum, fast.loss_sum) << "forward and forward_backward losses differ";
    EXPECT_EQ(fb.n_valid, fast.n_valid);
  }
}

TEST(Transformer, ForwardMatchesReferenceOnMultiTileSequences) {
  // S = 200 spans several flash-attention tiles (96 x 256 forward, 48 x 128 backward).
  const ModelConfig c = make_config({"long", 32, 4, 2, 48, false}, /*layers=*/1);
  const ModelWeights w = random_weights(c, 4);
  const Batch b = make_batch(c, 1, 200, 21);
  Transformer model(c);
  const LossSum fast = model.forward(w, b.tokens, b.targets);
  const double ref = reference_loss_sum(w, b.tokens, b.targets);
  // As in ForwardMatchesReference: one layer, S = T = 200: 936 terms, 5.6e-5 relative.
  EXPECT_NEAR(fast.loss_sum, ref, testing::model_chain(c, 200, 200, false).gamma * std::fabs(ref));
}

TEST(Transformer, GradientsMatchFiniteDifferencesGqaUntied) {
  check_gradients_against_finite_differences(kGqaUntied, {.vocab_chunk = 16});
}

// RoPE scaling through the whole model: the kernel tables (kernels/rope) against the reference's
// own formulas (reference_rope), with the tolerance of ForwardMatchesReference. d = 8, theta = 1e4:
// wavelengths 6.3, 63, 628, 6283 against original contexts of 64 put every frequency regime of
// llama3 (kept, blended, divided) and yarn (kept, ramped, interpolated; amplitude 1.14) in play.
TEST(Transformer, ForwardMatchesReferenceWithRopeScaling) {
  using kernels::RopeScalingType;
  const kernels::RopeScaling scalings[] = {
      {.type = RopeScalingType::linear, .factor = 4},
      {.type = RopeScalingType::llama3, .factor = 8, .low_freq_factor = 1, .high_freq_factor = 4,
       .original_max_position_embeddings = 64},
      {.type = RopeScalingType::yarn, .factor = 4, .original_max_position_embeddings = 64},
  };
  for (const kernels::RopeScaling& r : scalings) {
    const ModelConfig c = make_config({"rope", 32, 4, 2, 48, false, r}, /*layers=*/1);
    const ModelWeights w = random_weights(c, 6);
    const Batch b = make_batch(c, 1, 70, 23);
    Transformer model(c);
    const LossSum fast = model.forward(w, b.tokens, b.targets);
    const double ref = reference_loss_sum(w, b.tokens, b.targets);
    EXPECT_NEAR(fast.loss_sum, ref, testing::model_chain(c, 70, 70, false).gamma * std::fabs(ref))
        << kernels::rope_scaling_name(r.type);
    // The scaling changes the loss (else this test could not see a dropped scaling).
    ModelConfigFields plain = c.fields();
    plain.rope_scaling = {};
    ReferenceWeights r_plain = ReferenceWeights::from(w);
    r_plain.config = ModelConfig(plain);
    const double unscaled = reference_loss_sum(r_plain, b.tokens, b.targets);
    EXPECT_GT(std::fabs(unscaled - ref), 100 * testing::model_chain(c, 70, 70, false).gamma * std::fabs(ref))
        << kernels::rope_scaling_name(r.type);
  }
}

// The backward of a scaled RoPE (yarn: ramped frequencies and amplitude != 1) against finite
// differences, with the tolerance of the unscaled gradient tests.
TEST(Transformer, GradientsMatchFiniteDifferencesYarnRope) {
  const Case yarn{"gqa_untied_yarn", 16, 4, 2, 32, false,
                  {.type = kernels::RopeScalingType::yarn, .factor = 4,
                   .original_max_position_embeddings = 64}};
  check_gradients_against_finite_differences(yarn, {});
}

// The sliding window's backward (keys outside the window get no gradient from those queries).
TEST(Transformer, GradientsMatchFiniteDifferencesSlidingWindow) {
  check_gradients_against_finite_differences(kGqaWindow, {});
}

// A window shorter than the sequence changes the loss (so a dropped window cannot pass), and a
// window at least as long as the sequence is plain causal attention.
TEST(Transformer, SlidingWindowChangesTheLossOnlyWhenShorterThanTheSequence) {
  const ModelConfig c = make_config(kGqaWindow);
  const ModelWeights w = random_weights(c, 8);
  const Batch b = make_batch(c, 1, 40, 12);
  ModelConfigFields plain_f = c.fields();
  plain_f.sliding_window = 0;
  const ModelConfig plain(plain_f);
  ReferenceWeights rw = ReferenceWeights::from(w);
  const double windowed = reference_loss_sum(rw, b.tokens, b.targets);
  rw.config = plain;
  const double full = reference_loss_sum(rw, b.tokens, b.targets);
  EXPECT_GT(std::fabs(windowed - full), 100 * testing::model_chain(c, 40, 40, false).gamma * std::fabs(full));
  ModelConfigFields long_f = c.fields();
  long_f.sliding_window = 40;
  // The same values under the other configs (copy_from requires equal configs).
  auto same_values = [&](const ModelConfig& cfg) {
    ModelWeights out(cfg, DType::f32, MemCategory::weights);
    auto dst = out.named();
    const auto src = w.named();
    for (size_t i = 0; i < dst.size(); ++i) dst[i].second.copy_from(src[i].second);
    return out;
  };
  const ModelWeights wl = same_values(ModelConfig(long_f)), wp = same_values(plain);
  const LossSum a = Transformer(ModelConfig(long_f)).forward(wl, b.tokens, b.targets);
  const LossSum z = Transformer(plain).forward(wp, b.tokens, b.targets);
  EXPECT_EQ(a.loss_sum, z.loss_sum);
}

// Qwen2's q/k/v biases: their gradients (column sums of dq, dk, dv after RoPE's backward) and the
// projections' under the bias.
TEST(Transformer, GradientsMatchFiniteDifferencesQkvBias) {
  check_gradients_against_finite_differences(kQwen2Bias, {});
}

// The biases take part in the loss (so a dropped bias cannot pass ForwardMatchesReference), and
// zero biases are exactly the Llama model of the same weights.
TEST(Transformer, QkvBiasesChangeTheLossAndZeroBiasesAreLlama) {
  const ModelConfig c = make_config(kQwen2Bias);
  ModelWeights w = random_weights(c, 9);
  const Batch b = make_batch(c, 1, 30, 14);
  const double biased = reference_loss_sum(w, b.tokens, b.targets);
  for (LayerWeights& l : w.layers())
    for (Tensor* t : {&l.q_bias, &l.k_bias, &l.v_bias}) t->zero();
  const double unbiased = reference_loss_sum(w, b.tokens, b.targets);
  EXPECT_GT(std::fabs(biased - unbiased), 100 * testing::model_chain(c, 30, 30, false).gamma * std::fabs(unbiased));
  ModelConfigFields llama_f = c.fields();
  llama_f.model_type = ModelType::llama;
  const ModelConfig llama(llama_f);
  ModelWeights wl(llama, DType::f32, MemCategory::weights);
  for (auto& [name, t] : wl.named()) t.copy_from(w.get(name));
  EXPECT_EQ(Transformer(c).forward(w, b.tokens, b.targets).loss_sum,
            Transformer(llama).forward(wl, b.tokens, b.targets).loss_sum);
}

// head_dim != h / H: the q/o projections' gradients have H d columns / rows.
TEST(Transformer, GradientsMatchFiniteDifferencesWideHeads) {
  check_gradients_against_finite_differences(kGqaWideHeads, {});
}

TEST(Transformer, GradientsMatchFiniteDifferencesMhaTied) {
  check_gradients_against_finite_differences(kMhaTied, {});
}

TEST(Transformer, IgnoredTargetsContributeNothing) {
  const ModelConfig c = make_config(kGqaUntied);
  const ModelWeights w = random_weights(c, 5);
  const Batch b = make_batch(c, 2, 11, 13);
  Transformer model(c);
  // All targets ignored: zero loss, zero valid tokens, every gradient exactly zero.
  Tensor none = Tensor::empty({2, 11}, DType::i32, MemCategory::workspace);
  for (int64_t i = 0; i < none.numel(); ++i) none.data<int32_t>()[i] = kIgnoreIndex;
  ModelWeights g(c, DType::f32, MemCategory::grads);
  const LossSum l = model.forward_backward(w, b.tokens, none, g, 1.f);
  EXPECT_EQ(l.loss_sum, 0.0);
  EXPECT_EQ(l.n_valid, 0);
  EXPECT_EQ(l.mean(), 0.0);
  for (const auto& [name, t] : g.named())
    for (int64_t i = 0; i < t.numel(); ++i) ASSERT_EQ(t.item_f32(i), 0.f) << name;
  // Ignoring one more target removes exactly that token's loss (its input still feeds later
  // tokens through attention): the difference equals the reference's per-token difference.
  Tensor fewer = Tensor::copy_of(b.targets, DType::i32, MemCategory::workspace);
  fewer.data<int32_t>()[7] = kIgnoreIndex;  // a valid target (every fifth is index 4, 9, ...)
  ASSERT_NE(b.targets.data<int32_t>()[7], kIgnoreIndex);
  const double diff = model.forward(w, b.tokens, b.targets).loss_sum -
                      model.forward(w, b.tokens, fewer).loss_sum;
  const double ref_diff = reference_loss_sum(w, b.tokens, b.targets) -
                          reference_loss_sum(w, b.tokens, fewer);
  // Each fast loss sum is within gamma_f = 400 * 2^-24 = 2.4e-5 (tests/fp_bounds.h) of the exact
  // one, relative to itself (non-negative terms): |diff - ref_diff| <= gamma_f (sum1 + sum2).
  // A wrong token removed (or none) errs by a whole token loss, ~log V = 3.6.
  const double loss_full = model.forward(w, b.tokens, b.targets).loss_sum;
  EXPECT_NEAR(diff, ref_diff, testing::model_chain(c, 11, 22, false).gamma * (2 * loss_full));
  EXPECT_EQ(model.forward(w, b.tokens, fewer).n_valid, count_valid_targets(b.targets) - 1);
}

TEST(Transformer, MicroBatchAccumulationEqualsOneBatch) {
  const ModelConfig c = make_config(kMhaTied);
  const ModelWeights w = random_weights(c, 6);
  const Batch b = make_batch(c, 2, 11, 15);
  const int64_t n_valid = count_valid_targets(b.targets);
  const float scale = 1.f / static_cast<float>(n_valid);
  Transformer model(c);
  ModelWeights whole(c, DType::f32, MemCategory::grads), parts(c, DType::f32, MemCategory::grads);
  const LossSum lw = model.forward_backward(w, b.tokens, b.targets, whole, scale);
  double loss_parts = 0;
  int64_t valid_parts = 0;
  for (int64_t i = 0; i < 2; ++i) {
    const Tensor tok = Tensor::copy_of(b.tokens.slice(0, i, 1), DType::i32, MemCategory::workspace);
    const Tensor tgt = Tensor::copy_of(b.targets.slice(0, i, 1), DType::i32, MemCategory::workspace);
    const LossSum l = model.forward_backward(w, tok, tgt, parts, scale);
    loss_parts += l.loss_sum;
    valid_parts += l.n_valid;
  }
  EXPECT_EQ(valid_parts, lw.n_valid);
  // Same math, different GEMM shapes (the summation order over tokens, and whatever kernel oneDNN
  // picks for each shape on this CPU): fp32 rounding only. Derived bound (tests/fp_bounds.h): each
  // run is within gamma = (sum of the lengths n_k of its chained fp32 reductions) 2^-24 of the
  // exact value, relative to the magnitude of the summed terms: L = 2, h = 16, F = 24, V = 37,
  // S = 11, T = 22 give 384 terms for the loss (2.3e-5) and 852 for a gradient (5.1e-5, with the
  // tied embedding's two contributions and the accumulation of the two micro-batches, +2 each).
  // Two such runs differ by <= 2 gamma. The loss is a sum of non-negative per-token terms
  // -log p = lse - z_y (4..10 per token here), computed from logits of the same order, so the
  // magnitude of its terms is that of the loss sum itself; a gradient element's terms (one per
  // token) are on the scale of its tensor, measured by rms(e_t), and at least |e_i| in sum.
  // A missing micro-batch errs by ~rms (and a 1.001 scaling by 1e-3 |e_i|), above 1e-4 (|e| + rms).
  const int64_t S = b.tokens.dim(1), T = b.tokens.numel();
  const double loss_tol = 2 * testing::model_chain(c, S, T, /*backward=*/false).gamma;
  const double grad_tol = 2 * testing::model_chain(c, S, T, /*backward=*/true, /*extra=*/4).gamma;
  EXPECT_NEAR(loss_parts, lw.loss_sum, loss_tol * lw.loss_sum);
  const auto a = to_vectors(parts), e = to_vectors(whole);
  double worst = 0;  // max |a - e| / (|e| + rms): to compare with grad_tol
  for (size_t t = 0; t < a.size(); ++t) {
    const double scale = rms(e[t]);
    EXPECT_GT(scale, 0.0) << weight_specs(c)[t].name;
    for (size_t i = 0; i < a[t].size(); ++i) {
      const double bound = grad_tol * (std::fabs(e[t][i]) + scale);
      worst = std::max(worst, std::fabs(a[t][i] - e[t][i]) / (std::fabs(e[t][i]) + scale));
      ASSERT_NEAR(a[t][i], e[t][i], bound) << weight_specs(c)[t].name << " element " << i << " (tensor rms "
                                           << scale << ")";
    }
  }
  std::printf("micro-batches vs one batch: worst |a - e| / (|e| + rms) %.3g (bound %.3g)\n", worst, grad_tol);
}

TEST(Transformer, RecomputeIsBitwiseIdenticalAndPredictedMemoryHolds) {
  const ModelConfig c = make_config({"mem", 32, 4, 2, 64, false}, /*layers=*/3);
  const ModelWeights w = random_weights(c, 8);
  const int64_t B = 2, S = 40;
  const Batch b = make_batch(c, B, S, 23);
  MemoryLedger& ledger = MemoryLedger::process();
  std::vector<std::vector<double>> grads[2];
  int64_t peak[2];
  for (int r = 0; r < 2; ++r) {
    const TransformerOptions opt{.recompute = r == 1};
    Transformer model(c, opt);
    ModelWeights g(c, DType::f32, MemCategory::grads);
    const int64_t live_before = ledger.stats(MemCategory::activations).live_bytes;
    ledger.reset_peaks();
    model.forward_backward(w, b.tokens, b.targets, g, 0.01f);
    peak[r] = ledger.stats(MemCategory::activations).peak_bytes - live_before;
    EXPECT_EQ(ledger.stats(MemCategory::activations).live_bytes, live_before) << "activations leak";
    const int64_t predicted = predicted_activation_peak_bytes(c, opt, B, S);
    // The prediction counts exactly the buffers this implementation allocates: equal to the byte.
    EXPECT_EQ(peak[r], predicted) << (r ? "with" : "without") << " recomputation";
    grads[r] = to_vectors(g);
  }
  EXPECT_LT(peak[1], peak[0]);
  // Recomputation reruns the same kernels on the same inputs: identical activations, gradients.
  for (size_t t = 0; t < grads[0].size(); ++t)
    for (size_t i = 0; i < grads[0][t].size(); ++i)
      ASSERT_EQ(grads[0][t][i], grads[1][t][i]) << weight_specs(c)[t].name << " element " << i;
}

TEST(Transformer, TrainingStepMatchesReference) {
  // One AdamW step of the 2-layer model: fast gradients + kernels::adamw_step versus the finite-
  // difference gradients of the per-token double reference + the same formula in double.
  const GradProblem& p = grad_problem(kGqaUntied);
  const kernels::AdamWOptions opt{.lr = 1e-2f, .weight_decay = 0.1f};
  ModelWeights master(p.config, DType::f32, MemCategory::weights);
  master.copy_from(p.w);
  ModelWeights g(p.config, DType::f32, MemCategory::grads);
  ModelWeights m(p.config, DType::f32, MemCategory::optimizer),
      v(p.config, DType::f32, MemCategory::optimizer);
  Transformer model(p.config);
  model.forward_backward(master, p.batch.tokens, p.batch.targets, g, static_cast<float>(p.scale));
  const auto nm = master.named(), ng = g.named(), nm1 = m.named(), nv = v.named();
  for (size_t t = 0; t < nm.size(); ++t)
    kernels::adamw_step(nm[t].second, nm1[t].second, nv[t].second, ng[t].second, 1, opt);

  const auto w0 = to_vectors(p.w), w1 = to_vectors(master);
  const auto specs = weight_specs(p.config);
  double worst_abs = 0;
  for (size_t t = 0; t < specs.size(); ++t) {
    const double gtol = grad_tol(p.config, 11, 22), gerr_floor = gtol * rms(p.fd[t]);
    for (size_t i = 0; i < w0[t].size(); ++i) {
      // torch.optim.AdamW step 1 in double: m = (1-b1) g, v = (1-b2) g^2.
      const double gr = p.fd[t][i], lr = opt.lr, b1 = opt.beta1, b2 = opt.beta2;
      const double mm = (1 - b1) * gr, vv = (1 - b2) * gr * gr;
      const double denom = std::sqrt(vv) / std::sqrt(1 - b2) + opt.eps;
      const double want = w0[t][i] * (1 - lr * opt.weight_decay) - lr / (1 - b1) * mm / denom;
      // Step 1 moves each weight by ~lr * g / (|g| + eps): its sensitivity to a gradient error
      // delta is <= 2 lr delta / (|g| + delta). delta is the gradient test's bound. AdamW's own
      // fp32 arithmetic: w0 * decay (2 roundings, of |w0|), the step lr/bc1 * m / (sqrt(v)/bc2 +
      // eps) (<= 7 roundings, of the step's size <= lr), the final subtraction (1, of both): at
      // most 10 * 2^-24 (|w0| + lr); the result itself may cancel to ~0 (w0 ~ lr), so not |want|.
      const double delta = gtol * std::fabs(gr) + gerr_floor;
      const double tol = 2 * lr * delta / (std::fabs(gr) + delta) +
                         10 * testing::kUnitF32 * (std::fabs(w0[t][i]) + lr);
      worst_abs = std::max(worst_abs, std::fabs(w1[t][i] - want));
      ASSERT_NEAR(w1[t][i], want, tol) << specs[t].name << " element " << i << " grad " << gr;
    }
  }
  std::printf("training step: worst |w_fast - w_ref| = %.3g (lr %.0e)\n", worst_abs, opt.lr);
}

TEST(Transformer, Bf16MatchesF32WithinStatedTolerance) {
  for (const Case& k : {kGqaUntied, kMhaTied}) {
    const ModelConfig c = make_config(k);
    const ModelWeights w32 = random_weights(c, 12);
    ModelWeights w16(c, DType::bf16, MemCategory::weights);
    w16.copy_from(w32);
    ModelWeights w32r(c, DType::f32, MemCategory::weights);  // the same rounded values in f32
    w32r.copy_from(w16);
    const Batch b = make_batch(c, 2, 11, 31);
    const float scale = 1.f / static_cast<float>(count_valid_targets(b.targets));
    ModelWeights g16(c, DType::f32, MemCategory::grads), g32(c, DType::f32, MemCategory::grads);
    const LossSum l16 =
        Transformer(c, {.dtype = DType::bf16}).forward_backward(w16, b.tokens, b.targets, g16, scale);
    const LossSum l32 = Transformer(c).forward_backward(w32r, b.tokens, b.targets, g32, scale);
    // bf16 activations carry 8 significant bits (relative rounding <= 2^-9 = 2e-3 per value).
    // The loss is a sum of many independently rounded terms: ~1e-3 expected (observed 4e-4), bound
    // 1e-2. A gradient element chains ~2L+2 rounded tensors forward and back (activations, dy
    // rounded for the bf16 GEMMs, dq/dk/dv, dgate/dup): sqrt(10) * 2e-3 ~ 6e-3 per element, and
    // its sum over tokens partly cancels (dlogits = p - onehot), amplifying the relative error
    // 2-4x: ~1-2.5e-2 relative L2 (observed 0.7e-2 .. 2.2e-2 per tensor). Bound 5e-2: a dropped
    // or wrongly scaled term gives O(1).
    EXPECT_NEAR(l16.loss_sum, l32.loss_sum, 1e-2 * l32.loss_sum) << k.name;
    const auto n16 = g16.named(), n32 = g32.named();
    double worst = 0;
    for (size_t t = 0; t < n16.size(); ++t) {
      const Tensor a = n16[t].second, e = n32[t].second;
      double num = 0, den = 0;
      for (int64_t i = 0; i < a.numel(); ++i) {
        const double d = a.data<float>()[i] - e.data<float>()[i];
        num += d * d;
        den += static_cast<double>(e.data<float>()[i]) * e.data<float>()[i];
      }
      worst = std::max(worst, std::sqrt(num / den));
      if (std::getenv("TSP_VERBOSE")) std::printf("  %s %.3g\n", n16[t].first.c_str(), std::sqrt(num / den));
      EXPECT_LE(std::sqrt(num / den), 5e-2) << k.name << " " << n16[t].first;
    }
    std::printf("%s bf16 vs f32: loss rel %.3g, worst gradient relative L2 %.3g\n", k.name,
                std::fabs(l16.loss_sum - l32.loss_sum) / l32.loss_sum, worst);
  }
}

TEST(Transformer, BadInputsThrowTypedErrorsBeforeAllocating) {
  const ModelConfig c = make_config(kGqaUntied, 2, /*max_pos=*/16);
  const ModelWeights w = random_weights(c, 1);
  ModelWeights g(c, DType::f32, MemCategory::grads);
  Transformer model(c);
  const Batch ok = make_batch(c, 2, 11, 2);
  MemoryLedger& ledger = MemoryLedger::process();
  auto expect_throw = [&](auto&& call, auto type_tag, const char* needle) {
    using E = decltype(type_tag);
    const int64_t allocs = ledger.total().allocations;
    try {
      call();
      ADD_FAILURE() << "expected an exception mentioning '" << needle << "'";
    } catch (const E& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_EQ(ledger.total().allocations, allocs) << "allocated before validating: " << needle;
  };
  Tensor bad_tok = Tensor::copy_of(ok.tokens, DType::i32, MemCategory::workspace);
  bad_tok.data<int32_t>()[13] = 37;
  expect_throw([&] { model.forward_backward(w, bad_tok, ok.targets, g, 1.f); }, InvalidArgument{""},
               "token id 37 at [1, 2] is outside the vocabulary [0, 37)");
  bad_tok.data<int32_t>()[13] = -1;
  expect_throw([&] { model.forward(w, bad_tok, ok.targets); }, InvalidArgument{""}, "token id -1");
  Tensor bad_tgt = Tensor::copy_of(ok.targets, DType::i32, MemCategory::workspace);
  bad_tgt.data<int32_t>()[0] = -7;
  expect_throw([&] { model.forward(w, ok.tokens, bad_tgt); }, InvalidArgument{""}, "target id -7");
  const Batch longer = make_batch(c, 1, 17, 3);
  expect_throw([&] { model.forward(w, longer.tokens, longer.targets); }, InvalidArgument{""},
               "sequence length 17 exceeds max_position_embeddings 16");
  const Batch other = make_batch(c, 2, 10, 4);
  expect_throw([&] { model.forward(w, ok.tokens, other.targets); }, ShapeError{""},
               "targets must have the tokens' shape");
  const Tensor tok64 = Tensor::copy_of(ok.tokens, DType::i64, MemCategory::workspace);
  expect_throw([&] { model.forward(w, tok64, ok.targets); }, DTypeError{""}, "must be i32");
  ModelWeights w16(c, DType::bf16, MemCategory::weights);
  expect_throw([&] { model.forward(w16, ok.tokens, ok.targets); }, DTypeError{""},
               "weights are bf16");
  ModelWeights g16(c, DType::bf16, MemCategory::grads);
  expect_throw([&] { model.forward_backward(w, ok.tokens, ok.targets, g16, 1.f); }, DTypeError{""},
               "gradients must be f32");
  const ModelWeights other_w = random_weights(make_config(kMhaTied), 1);
  expect_throw([&] { model.forward(other_w, ok.tokens, ok.targets); }, InvalidArgument{""},
               "weights are for");
  EXPECT_THROW(Transformer(c, {.dtype = DType::i32}), DTypeError);
}

}  // namespace
}  // namespace tsp::model
