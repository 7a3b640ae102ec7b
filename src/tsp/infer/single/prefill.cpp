// Prefill on the single-rank model pieces: embedding, block_forward per layer (its saved q|k|v
// buffer holds K after RoPE and V, which are copied into the cache), head on the last positions.
#include "tsp/infer/single/prefill.h"

#include <algorithm>

#include "tsp/core/check.h"
#include "tsp/infer/head_logits.h"
#include "tsp/kernels/embedding.h"
#include "tsp/model/decoder_block.h"

namespace tsp::infer {

namespace {

using model::ModelConfig;

void validate(const model::ModelWeights& w, const std::vector<std::vector<int32_t>>& prompts,
              const KvCache& cache) {
  const ModelConfig& c = w.config();
  TSP_CHECK(cache.config() == c, "prefill: the KV cache is for ", cache.config().summary(),
            " but the weights are ", c.summary());
  TSP_CHECK_DTYPE(cache.dtype() == w.dtype(), "prefill: the KV cache is ", cache.dtype(),
                  " but the weights are ", w.dtype());
  TSP_CHECK(static_cast<int64_t>(prompts.size()) == cache.batch(), "prefill: ", prompts.size(),
            " prompts for a KV cache of batch ", cache.batch());
  for (size_t b = 0; b < prompts.size(); ++b) {
    const auto n = static_cast<int64_t>(prompts[b].size());
    TSP_CHECK(n > 0, "prefill: prompt ", b, " is empty (it needs at least one token, e.g. BOS)");
    TSP_CHECK(n <= cache.capacity(), "prefill: prompt ", b, " has ", n,
              " tokens but the KV cache capacity is ", cache.capacity(), " positions");
    TSP_CHECK(cache.length(static_cast<int64_t>(b)) == 0, "prefill: sequence ", b,
              " of the KV cache already holds ", cache.length(static_cast<int64_t>(b)),
              " tokens; prefill needs an empty cache (KvCache::clear)");
    for (size_t s = 0; s < prompts[b].size(); ++s) {
      const int32_t id = prompts[b][s];
      TSP_CHECK(id >= 0 && id < c.vocab_size(), "prefill: token id ", id, " at [", b, ", ", s,
                "] is outside the vocabulary [0, ", c.vocab_size(), ")");
    }
  }
}

// Copies K (after RoPE) and V of all B * S tokens from the block's q|k|v buffer into slots [0, S).
void store_kv(const ModelConfig& c, const Tensor& qkv, int64_t batch, int64_t seq, int64_t layer,
              KvCache& cache) {
  const int64_t H = c.num_attention_heads(), Hkv = c.num_key_value_heads();
  const Tensor heads = qkv.view({batch, seq, H + 2 * Hkv, c.head_dim()});
  cache.k(layer).slice(1, 0, seq).copy_from(heads.slice(2, H, Hkv));
  cache.v(layer).slice(1, 0, seq).copy_from(heads.slice(2, H + Hkv, Hkv));
}

}  // namespace

Tensor prefill(const model::ModelWeights& w, const std::vector<std::vector<int32_t>>& prompts,
               KvCache& cache) {
  validate(w, prompts, cache);
  const ModelConfig& c = w.config();
  const DType dt = w.dtype();
  const auto batch = static_cast<int64_t>(prompts.size());
  int64_t seq = 0;
  for (const auto& p : prompts) seq = std::max(seq, static_cast<int64_t>(p.size()));
  const int64_t tokens = batch * seq;

  const model::BlockContext ctx(c, dt, batch, seq);  // positions 0..S-1 shared by the batch
  Tensor x = Tensor::empty({tokens, c.hidden_size()}, dt, MemCategory::activations);
  kernels::embedding_forward(padded_prompts(prompts, seq).view({tokens}), w.embed(), x);
  for (int64_t l = 0; l < c.num_hidden_layers(); ++l) {
    Tensor next = Tensor::empty({tokens, c.hidden_size()}, dt, MemCategory::activations);
    model::BlockActivations acts;
    model::block_forward(ctx, w.layers()[static_cast<size_t>(l)], x, next, acts);
    store_kv(c, acts.qkv, batch, seq, l, cache);
    x = next;  // the block's input and saved activations are released here
  }
  record_prompt_positions(prompts, cache);
  return head_logits(w, last_prompt_rows(x, prompts, seq));
}

}  // namespace tsp::infer
