// decode_step on the kernel layer: per layer three projections (decode_linear) into one
// [B, (H + 2 H_kv) d] buffer, RoPE on a [1, B, heads, d] view (the B new tokens as one "sequence"
// of B positions, so each gets its own position), append to the cache, cache_attention, then o_proj
// and the MLP accumulated (beta = 1) into the residual. The same rounding points as block_forward,
// so bf16 decode matches the bf16 forward.
#include "tsp/infer/single/decode_step.h"

#include <algorithm>

#include "tsp/core/check.h"
#include "tsp/infer/cache_attention.h"
#include "tsp/kernels/decode_linear.h"
#include "tsp/infer/head_logits.h"
#include "tsp/kernels/bias.h"
#include "tsp/kernels/embedding.h"
#include "tsp/kernels/rmsnorm.h"
#include "tsp/kernels/rope.h"
#include "tsp/kernels/swiglu.h"

namespace tsp::infer {

namespace {

using model::ModelConfig;

void validate(const model::ModelWeights& w, std::span<const int32_t> tokens, const KvCache& cache,
              const DecodeOptions& options) {
  const ModelConfig& c = w.config();
  TSP_CHECK(cache.config() == c, "decode_step: the KV cache is for ", cache.config().summary(),
            " but the weights are ", c.summary());
  TSP_CHECK_DTYPE(cache.dtype() == w.dtype(), "decode_step: the KV cache is ", cache.dtype(),
                  " but the weights are ", w.dtype());
  TSP_CHECK(static_cast<int64_t>(tokens.size()) == cache.batch(), "decode_step: ", tokens.size(),
            " tokens for a KV cache of batch ", cache.batch());
  TSP_CHECK(options.kv_parts >= 1, "decode_step: kv_parts must be >= 1, got ", options.kv_parts);
  for (int64_t b = 0; b < cache.batch(); ++b) {
    const int32_t id = tokens[static_cast<size_t>(b)];
    TSP_CHECK(id >= 0 && id < c.vocab_size(), "decode_step: token id ", id, " of sequence ", b,
              " is outside the vocabulary [0, ", c.vocab_size(), ")");
    TSP_CHECK(cache.length(b) < cache.capacity(), "decode_step: sequence ", b, " already holds ",
              cache.length(b), " tokens, the KV cache capacity (", cache.capacity(),
              " positions); no room for another token");
  }
}

// Each sequence's new token takes position p_b = length(b) (single rank: slot == position) and
// the next slot; returns the positions [B] i32.
Tensor claim_slots(KvCache& cache) {
  Tensor pos = Tensor::empty({cache.batch()}, DType::i32, MemCategory::workspace);
  int32_t* p = pos.data<int32_t>();
  for (int64_t b = 0; b < cache.batch(); ++b) {
    p[b] = static_cast<int32_t>(cache.length(b));
    cache.claim_slot(b, p[b]);
  }
  return pos;
}

// k, v: [B, 1, H_kv, d] views of the new tokens; each goes to the last filled slot of its row.
void append_kv(const Tensor& k, const Tensor& v, KvCache& cache, int64_t layer) {
  for (int64_t b = 0; b < cache.batch(); ++b) {
    const int64_t slot = cache.length(b) - 1;
    cache.k(layer).slice(0, b, 1).slice(1, slot, 1).copy_from(k.slice(0, b, 1));
    cache.v(layer).slice(0, b, 1).slice(1, slot, 1).copy_from(v.slice(0, b, 1));
  }
}

// [B, (H + 2 H_kv) d]: q | k | v of the B new tokens, q and k rotated at each token's position
// (the B rows viewed as one "sequence" [1, B, heads, d] whose positions are the rope table's).
Tensor project_qkv(const ModelConfig& c, const model::LayerWeights& lw,
                   const kernels::RopeTable& rope, const Tensor& x) {
  const int64_t B = x.dim(0), H = c.num_attention_heads(), Hkv = c.num_key_value_heads();
  const int64_t qd = c.q_dim(), kvd = c.kv_dim();
  Tensor n = Tensor::empty({B, c.hidden_size()}, x.dtype(), MemCategory::workspace);
  kernels::rmsnorm_forward(x, lw.input_norm, n, Tensor(), {.eps = static_cast<float>(c.rms_norm_eps())});
  Tensor qkv = Tensor::empty({B, qd + 2 * kvd}, x.dtype(), MemCategory::workspace);
  Tensor q = qkv.slice(1, 0, qd), k = qkv.slice(1, qd, kvd), v = qkv.slice(1, qd + kvd, kvd);
  kernels::decode_linear(n, lw.q, q);
  kernels::decode_linear(n, lw.k, k);
  kernels::decode_linear(n, lw.v, v);
  if (c.qkv_bias()) {  // Qwen2, before RoPE
    kernels::bias_add_forward(q, lw.q_bias);
    kernels::bias_add_forward(k, lw.k_bias);
    kernels::bias_add_forward(v, lw.v_bias);
  }
  const Tensor tokens_as_seq = qkv.view({1, B, H + 2 * Hkv, c.head_dim()});
  kernels::rope_forward(tokens_as_seq.slice(2, 0, H), rope);
  kernels::rope_forward(tokens_as_seq.slice(2, H, Hkv), rope);
  return qkv;
}

// x [B, h] += attention block of layer l for the B new tokens.
void attention(const model::LayerWeights& lw, const kernels::RopeTable& rope, const Tensor& pos,
               const Tensor& x, KvCache& cache, int64_t layer, const DecodeOptions& options) {
  const ModelConfig& c = cache.config();
  const int64_t B = cache.batch(), d = c.head_dim();
  const int64_t H = c.num_attention_heads(), Hkv = c.num_key_value_heads();
  const Tensor qkv = project_qkv(c, lw, rope, x);
  const Tensor heads = qkv.view({B, 1, H + 2 * Hkv, d});
  append_kv(heads.slice(2, H, Hkv), heads.slice(2, H + Hkv, Hkv), cache, layer);
  Tensor attn = Tensor::empty({B, c.q_dim()}, cache.dtype(), MemCategory::workspace);
  Tensor attn4 = attn.view({B, 1, H, d});
  Tensor lse = Tensor::empty({B, H, 1}, DType::f32, MemCategory::workspace);
  cache_attention(heads.slice(2, 0, H), pos, cache, layer, attn4, lse, options.kv_parts);
  Tensor residual = x;
  kernels::decode_linear(attn, lw.o, residual, 1.f);
}

// x [B, h] += gated MLP of one layer.
void mlp(const ModelConfig& c, const model::LayerWeights& lw, const Tensor& x) {
  const int64_t B = x.dim(0), F = c.intermediate_size();
  const DType dt = x.dtype();
  Tensor n = Tensor::empty({B, c.hidden_size()}, dt, MemCategory::workspace);
  kernels::rmsnorm_forward(x, lw.post_norm, n, Tensor(), {.eps = static_cast<float>(c.rms_norm_eps())});
  Tensor gate_up = Tensor::empty({B, 2 * F}, dt, MemCategory::workspace);
  Tensor gate = gate_up.slice(1, 0, F), up = gate_up.slice(1, F, F);
  kernels::decode_linear(n, lw.gate, gate);
  kernels::decode_linear(n, lw.up, up);
  Tensor act = Tensor::empty({B, F}, dt, MemCategory::workspace);
  kernels::swiglu_forward(gate, up, act);
  Tensor residual = x;
  kernels::decode_linear(act, lw.down, residual, 1.f);
}

}  // namespace

Tensor decode_step(const model::ModelWeights& w, std::span<const int32_t> tokens, KvCache& cache,
                   const DecodeOptions& options) {
  validate(w, tokens, cache, options);
  const ModelConfig& c = w.config();
  const int64_t B = cache.batch();
  Tensor ids = Tensor::empty({B}, DType::i32, MemCategory::workspace);
  std::copy(tokens.begin(), tokens.end(), ids.data<int32_t>());
  Tensor x = Tensor::empty({B, c.hidden_size()}, w.dtype(), MemCategory::activations);
  kernels::embedding_forward(ids, w.embed(), x);

  const Tensor pos = claim_slots(cache);
  const kernels::RopeTable rope(pos, c.head_dim(), c.rope_options());
  for (int64_t l = 0; l < c.num_hidden_layers(); ++l) {
    const model::LayerWeights& lw = w.layers()[static_cast<size_t>(l)];
    attention(lw, rope, pos, x, cache, l, options);
    mlp(c, lw, x);
  }
  return head_logits(w, x);
}

}  // namespace tsp::infer
