// TpDecoder: the tensor-parallel prefill (tp_sp_block_forward with sp = 1, this rank's heads'
// K/V kept) and decode step (own heads against own cache, two all-reduces of [B, h] per layer).
#include "tsp/infer/tp/tp_decode.h"

#include <algorithm>

#include "tsp/comm/self/self_backend.h"
#include "tsp/core/check.h"
#include "tsp/infer/decode_block.h"
#include "tsp/infer/prompt_batch.h"
#include "tsp/infer/sharded/decode_ops.h"
#include "tsp/parallel/tp_sp_block.h"

namespace tsp::infer {

namespace {

using parallel::TpShardSizes;

// K (after RoPE) and V of this rank's heads for the real tokens of every prompt, from the block's
// qkv [B S, q_rows + 2 kv_rows], into slots [0, len_b); their positions are 0..len_b-1.
void store_prompt_kv(const model::ModelConfig& c, const TpShardSizes& s, const Tensor& qkv,
                     const std::vector<std::vector<int32_t>>& prompts, int64_t seq, int64_t layer,
                     KvCache& cache) {
  const auto batch = static_cast<int64_t>(prompts.size());
  const Tensor heads = qkv.view({batch, seq, s.heads + 2 * s.kv_heads, c.head_dim()});
  for (int64_t b = 0; b < batch; ++b) {
    const auto n = static_cast<int64_t>(prompts[b].size());
    const Tensor rows = heads.slice(0, b, 1).slice(1, 0, n);
    cache.k(layer).slice(0, b, 1).slice(1, 0, n).copy_from(rows.slice(2, s.heads, s.kv_heads));
    cache.v(layer).slice(0, b, 1).slice(1, 0, n).copy_from(rows.slice(2, s.heads + s.kv_heads, s.kv_heads));
  }
}

}  // namespace

model::ModelConfig TpDecoder::head_group_config(const model::ModelConfig& config, int degree) {
  parallel::validate_tp_sp(config, degree, 1, 0);
  model::ModelConfigFields f = config.fields();
  f.hidden_size = config.hidden_size() / degree;
  f.num_attention_heads = config.num_attention_heads() / degree;
  f.num_key_value_heads = config.num_key_value_heads() / degree;
  return model::ModelConfig(f);
}

TpDecoder::TpDecoder(comm::Communicator& comm, const parallel::TpWeights& w, int64_t batch,
                     int64_t capacity, const DecodeOptions& options)
    : comm_(&comm), w_(&w), batch_(batch), capacity_(capacity), options_(options) {
  check_decoder(comm, w, batch, capacity, "TpDecoder");
  TSP_CHECK(options.kv_parts >= 1, "TpDecoder: kv_parts must be >= 1, got ", options.kv_parts);
  parallel::validate_tp_sp(w.config(), comm.size(), 1, 0);
  self_ = comm::self_communicator("sp");
}

const KvCache& TpDecoder::cache() const {
  TSP_CHECK(cache_.has_value(), "TpDecoder: no KV cache before prefill()");
  return *cache_;
}

Tensor TpDecoder::prefill(const std::vector<std::vector<int32_t>>& prompts) {
  const model::ModelConfig& c = w_->config();
  check_prompts(c, prompts, batch_, capacity_, "TpDecoder::prefill");
  int64_t longest = 0;
  for (const auto& p : prompts) longest = std::max(longest, static_cast<int64_t>(p.size()));
  const int64_t seq = (longest + 1) / 2 * 2;
  TSP_CHECK(seq <= c.max_position_embeddings(), "TpDecoder::prefill: the longest prompt, padded to ",
            seq, " tokens (even, for the sp zigzag of one rank), exceeds max_position_embeddings ",
            c.max_position_embeddings());
  cache_.reset();
  cache_.emplace(head_group_config(c, comm_->size()), w_->dtype(), batch_, capacity_);

  const parallel::TpSpContext ctx(*comm_, self_, c, w_->dtype(), batch_, seq, &clock_);
  const int64_t T = ctx.tokens(), h = c.hidden_size();
  Tensor x = Tensor::empty({T, h}, w_->dtype(), MemCategory::activations);
  parallel::vocab_parallel_embedding_forward(ctx, padded_prompts(prompts, seq).view({T}),
                                             w_->embed(), x);
  for (int64_t l = 0; l < c.num_hidden_layers(); ++l) {
    Tensor next = Tensor::empty({T, h}, w_->dtype(), MemCategory::activations);
    parallel::TpSpBlockActivations acts;
    parallel::tp_sp_block_forward(ctx, w_->layers()[static_cast<size_t>(l)], x, next, acts);
    store_prompt_kv(c, ctx.sizes(), acts.qkv, prompts, seq, l, *cache_);
    x = next;
  }
  record_prompt_positions(prompts, *cache_);
  return sharded_head_logits(*comm_, *w_, last_prompt_rows(x, prompts, seq), &clock_);
}

Tensor TpDecoder::decode_step(std::span<const int32_t> tokens) {
  const model::ModelConfig& c = w_->config();
  TSP_CHECK(cache_.has_value(), "TpDecoder::decode_step: call prefill() first");
  check_tokens(c, tokens, batch_, "TpDecoder::decode_step");
  for (int64_t b = 0; b < batch_; ++b)
    TSP_CHECK(cache_->length(b) < capacity_, "TpDecoder::decode_step: sequence ", b,
              " already holds ", cache_->length(b), " tokens, the capacity (", capacity_,
              " positions); no room for another token");
  Tensor pos = Tensor::empty({batch_}, DType::i32, MemCategory::workspace);
  for (int64_t b = 0; b < batch_; ++b) {
    pos.data<int32_t>()[b] = static_cast<int32_t>(cache_->length(b));
    cache_->claim_slot(b, pos.data<int32_t>()[b]);
  }
  const Tensor x = sharded_embedding(*comm_, *w_, tokens, &clock_);
  const kernels::RopeTable rope(pos, c.head_dim(), c.rope_options());
  for (int64_t l = 0; l < c.num_hidden_layers(); ++l) {
    attention(l, x, pos, rope);
    sharded_mlp(*comm_, *w_, l, x, &clock_);
  }
  return sharded_head_logits(*comm_, *w_, x, &clock_);
}

// x [B, h] += the attention block of `layer`: this rank's heads only, against its own cache.
void TpDecoder::attention(int64_t layer, const Tensor& x, const Tensor& pos,
                          const kernels::RopeTable& rope) {
  Tensor y = decode_attention_block(w_->config(), shard_layer_views(*w_, layer), rope, pos, x, *cache_, layer,
                              options_.kv_parts);
  reduce_into_residual(*comm_, y, x, &clock_);
}

}  // namespace tsp::infer
