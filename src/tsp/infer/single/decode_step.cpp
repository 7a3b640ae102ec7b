// decode_step: the whole model as the group of all heads and the slice of all MLP rows of the one
// decode block (decode_block.h), each layer's attention and MLP added into the residual.
#include "tsp/infer/single/decode_step.h"

#include <algorithm>

#include "tsp/core/check.h"
#include "tsp/infer/decode_block.h"
#include "tsp/infer/head_logits.h"
#include "tsp/kernels/rope.h"
#include "tsp/kernels/embedding.h"

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
    const DecodeLayerViews lw = whole_layer_views(c, w.layers()[static_cast<size_t>(l)]);
    add_f32_into(x, decode_attention_block(c, lw, rope, pos, x, cache, l, options.kv_parts));
    add_f32_into(x, decode_mlp_block(c, lw, x));
  }
  return head_logits(w, x);
}

}  // namespace tsp::infer
