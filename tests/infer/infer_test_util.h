// Helpers of the inference tests: tiny configs, weights with spread, and the reference logits of
// every position from one full forward pass of the single-rank model pieces (block_forward).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ostream>
#include <span>
#include <vector>

#include "fp_bounds.h"
#include "tsp/core/random.h"
#include "tsp/core/tensor.h"
#include "tsp/kernels/embedding.h"
#include "tsp/kernels/gemm.h"
#include "tsp/kernels/rmsnorm.h"
#include "tsp/model/decoder_block.h"
#include "tsp/model/model_config.h"
#include "tsp/model/model_weights.h"
#include "tsp/model/weight_names.h"

namespace tsp::infer::testing {

struct Case {
  const char* name;
  int64_t h, heads, kv_heads, ffn;
  bool tied;
  kernels::RopeScaling rope = {};
  int64_t head_dim = 0;  // explicit d (0: h / heads)
  int64_t window = 0;    // Mistral sliding window (0: none)
  bool qkv_bias = false; // Qwen2: q/k/v projection biases
};
// GQA with an untied head, and MHA with a tied head (as in tests/model/transformer_test.cpp); GQA
// with yarn RoPE scaling (d = 4, theta = 1e4: its ramp keeps frequency 0 and interpolates
// frequency 1; amplitude 1.14).
inline const Case kGqaUntied{"gqa_untied", 16, 4, 2, 32, false};
inline const Case kMhaTied{"mha_tied", 16, 4, 4, 24, true};
inline const Case kGqaYarn{"gqa_yarn", 16, 4, 2, 32, false,
                           {.type = kernels::RopeScalingType::yarn, .factor = 4,
                            .original_max_position_embeddings = 64}};
// head_dim 8 with h 16 and 4 heads (H d = 32 != h): q/o twice as wide as the residual stream.
inline const Case kGqaWideHeads{"gqa_wide_heads", 16, 4, 2, 32, false, {}, 8};
// Mistral: a sliding window of 5 (prompts and decode steps run past it).
inline const Case kGqaWindow{"gqa_window5", 16, 4, 2, 32, false, {}, 0, 5};
// Qwen2: q/k/v biases (added before RoPE at every decode position), tied embeddings.
inline const Case kQwen2Bias{"qwen2_qkv_bias", 16, 4, 2, 32, true, {}, 0, 0, true};
inline void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

inline model::ModelConfig make_config(const Case& k, int64_t layers = 2, int64_t max_pos = 512,
                                      int64_t vocab = 37) {
  model::ModelConfigFields f;
  f.hidden_size = k.h;
  f.intermediate_size = k.ffn;
  f.num_hidden_layers = layers;
  f.num_attention_heads = k.heads;
  f.num_key_value_heads = k.kv_heads;
  f.vocab_size = vocab;
  f.rms_norm_eps = 1e-5;
  f.rope_theta = 10000.0;
  f.max_position_embeddings = max_pos;
  f.tie_word_embeddings = k.tied;
  f.rope_scaling = k.rope;
  f.head_dim = k.head_dim;
  if (k.window > 0) {
    f.model_type = model::ModelType::mistral;
    f.sliding_window = k.window;
  }
  if (k.qkv_bias) f.model_type = model::ModelType::qwen2;
  return model::ModelConfig(f);
}

// More spread than initialize()'s N(0, 0.02) so that attention patterns, gates and gains all carry
// signal: matrices N(0, 0.3), embedding N(0, 1), gains N(1, 0.2); bf16 weights are the rounded f32.
inline model::ModelWeights random_weights(const model::ModelConfig& c, uint64_t seed,
                                          DType dtype = DType::f32) {
  model::ModelWeights f32(c, DType::f32, MemCategory::weights);
  const auto specs = model::weight_specs(c);
  auto named = f32.named();
  for (size_t i = 0; i < specs.size(); ++i) {
    Rng rng(seed, i);
    if (model::is_norm_weight(specs[i].kind))
      fill_normal(named[i].second, rng, 1.f, 0.2f);
    else
      fill_normal(named[i].second, rng, 0.f,
                  specs[i].kind == model::WeightKind::embed_tokens ? 1.f : 0.3f);
  }
  if (dtype == DType::f32) return f32;
  model::ModelWeights out(c, dtype, MemCategory::weights);
  out.copy_from(f32);
  return out;
}

inline std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint64_t seed) {
  Rng rng(seed, 7);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& id : t) id = static_cast<int32_t>(rng.below(static_cast<uint64_t>(vocab)));
  return t;
}

// Logits [n, V] f32 of every position of `tokens` (one sequence) from the full causal forward in
// the weights' dtype: row i is what the model predicts after tokens[0..i].
inline Tensor reference_logits(const model::ModelWeights& w, std::span<const int32_t> tokens) {
  const model::ModelConfig& c = w.config();
  const auto n = static_cast<int64_t>(tokens.size());
  const DType dt = w.dtype();
  Tensor ids = Tensor::empty({n}, DType::i32, MemCategory::workspace);
  std::copy(tokens.begin(), tokens.end(), ids.data<int32_t>());
  const model::BlockContext ctx(c, dt, 1, n);
  Tensor x = Tensor::empty({n, c.hidden_size()}, dt, MemCategory::workspace);
  kernels::embedding_forward(ids, w.embed(), x);
  for (const model::LayerWeights& lw : w.layers()) {
    Tensor next = Tensor::empty({n, c.hidden_size()}, dt, MemCategory::workspace);
    model::BlockActivations acts;
    model::block_forward(ctx, lw, x, next, acts, MemCategory::workspace);
    x = next;
  }
  kernels::rmsnorm_forward(x, w.final_norm(), x, Tensor(),
                           {.eps = static_cast<float>(c.rms_norm_eps())});
  Tensor logits = Tensor::empty({n, c.vocab_size()}, DType::f32, MemCategory::workspace);
  kernels::gemm(x, w.lm_head(), logits, {.trans_b = true});
  return logits;
}

inline std::span<const float> row(const Tensor& logits, int64_t i) {
  return {logits.data<float>() + i * logits.dim(1), static_cast<size_t>(logits.dim(1))};
}

// max |a - b| / max |b| over one row: the error relative to the row's scale (logits near zero
// would make an element-wise relative error meaningless).
inline double row_error(std::span<const float> a, std::span<const float> b) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(b[i])));
  }
  return diff / scale;
}

// Derived fp32 tolerance of row_error between two fp32 computations of the logits of sequences
// of up to `seq` tokens (single-rank prefill/decode vs the full forward, TSP or TP decode; issue
// #12, tests/fp_bounds.h): a logit is the end of the forward chain of fp32 reductions (counted up
// to and including the log-sum-exp and the loss sum, conservatively), within gamma = (sum of their
// lengths) 2^-24 of exact relative to the magnitude of its summed terms, which for these rows is
// that of the row's largest logit (the row's scale in row_error); two computations: 2 gamma.
// extra: the all-reduce or all-gather over <= 4 ranks (4) and the merge of the ranks' partial
// attention outputs (10 roundings). A wrong mask, cache slot or shard errs by >= 1e-2.
inline double f32_logits_tol(const model::ModelConfig& c, int64_t seq) {
  return 2 * ::tsp::testing::model_chain(c, seq, seq, /*backward=*/false, /*extra=*/14).gamma;
}

}  // namespace tsp::infer::testing
