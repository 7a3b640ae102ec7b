// Megatron's tensor-parallel partition of a model's weights on one rank (TSP.md §3): attention by
// head group, MLP by inner dimension, embedding and LM head by vocabulary, norm gains replicated.
// TSP holds it over its tsp axis, TP and TP+SP over tp, the TP decoder over its group. Each
// layer's attention shard (q, k, v rows and o columns of head group p) and MLP shard (gate, up
// rows and down columns) live in ONE packed buffer, so a broadcast or a ring step moves it as one
// message.
#pragma once

#include <cstdint>
#include <vector>

#include "tsp/core/tensor.h"
#include "tsp/model/model_config.h"
#include "tsp/model/model_weights.h"
#include "tsp/model/step_executor.h"
#include "tsp/parallel/param_shard.h"

namespace tsp::parallel {

// Sizes of one rank's shards, validated for a degree. Pure arithmetic, no allocation.
struct TpShardSizes {
  int degree = 1;
  int64_t heads = 0, kv_heads = 0;   // per head group: H/D, H_kv/D
  int64_t q_rows = 0, kv_rows = 0;   // H/D*d, H_kv/D*d
  int64_t qkv_rows = 0;              // q_rows + 2 kv_rows (the fused projection of one group)
  int64_t qkv_bias = 0;              // qkv_rows with Qwen2's q/k/v biases, else 0
  int64_t attn_elements = 0;         // packed attention shard: qkv_rows*h + h*q_rows + qkv_bias
  int64_t ffn_rows = 0;              // F/D
  int64_t mlp_elements = 0;          // packed MLP shard: 3*F/D*h
  int64_t vocab_rows = 0;            // V/D

  // Throws InvalidArgument naming the size and D when H, H_kv, F or V is not divisible by D
  // (H_kv < D is not supported: every head group needs its own KV heads).
  static TpShardSizes of(const model::ModelConfig& config, int degree);
};

// Views into one layer's packed shards.
struct TpLayerShard {
  Tensor input_norm;   // [h] replicated
  Tensor post_norm;    // [h] replicated
  // [attn_elements] = q | k | v rows (row-major [qkv_rows, h]) | o cols [h, q_rows]
  //                  | q | k | v bias entries [qkv_rows] (Qwen2 only)
  Tensor attn_packed;
  Tensor mlp_packed;   // [mlp_elements]  = gate | up rows ([2F/D, h]) | down cols [h, F/D]
};

// Views of a packed attention or MLP buffer (a rank's own or one received from another rank).
struct AttnShardViews {
  Tensor qkv;  // [qkv_rows, h]: q rows, then k rows, then v rows of one head group
  Tensor o;    // [h, q_rows]: the o_proj columns of that group (contiguous copy)
  Tensor qkv_bias;  // [qkv_rows]: the group's q, k, v bias entries (Qwen2), else undefined
};
struct MlpShardViews {
  Tensor gate_up;  // [2F/D, h]: gate rows then up rows
  Tensor down;     // [h, F/D]
};
AttnShardViews attn_views(const Tensor& packed, const model::ModelConfig& c, const TpShardSizes& s);
MlpShardViews mlp_views(const Tensor& packed, const model::ModelConfig& c, const TpShardSizes& s);

class TpWeights {
 public:
  // Zero-filled shards of rank `rank` in a TSP group of `degree` (validated first), of every
  // layer, or of one pipeline stage's: the layers of `stage` (the others are left undefined), the
  // embedding on the stage that embeds, the final norm and LM head on the stage that ends the
  // model. With tied embeddings a last stage that does not embed holds its own copy of the
  // embedding as its LM head: params() marks it ParamShard::mirror (docs/pipeline.md).
  TpWeights(const model::ModelConfig& config, DType dtype, int degree, int rank,
             MemCategory category);
  TpWeights(const model::ModelConfig& config, DType dtype, int degree, int rank,
             MemCategory category, model::StageRange stage);
  // This rank's shards of full weights (tests, and loading a checkpoint tensor by tensor).
  static TpWeights from_full(const model::ModelWeights& full, int degree, int rank,
                              MemCategory category = MemCategory::weights);
  // Exactly the shards of ModelWeights::initialize(config, dtype, seed), generated one tensor at a
  // time so that no rank ever holds the full model.
  static TpWeights initialize(const model::ModelConfig& config, DType dtype, uint64_t seed,
                               int degree, int rank);
  static TpWeights initialize(const model::ModelConfig& config, DType dtype, uint64_t seed,
                               int degree, int rank, model::StageRange stage);

  const model::ModelConfig& config() const { return config_; }
  DType dtype() const { return dtype_; }
  int degree() const { return sizes_.degree; }
  int rank() const { return rank_; }
  const TpShardSizes& sizes() const { return sizes_; }
  const model::StageRange& stage() const { return stage_; }

  const std::vector<TpLayerShard>& layers() const { return layers_; }
  const Tensor& embed() const { return embed_; }       // [V/D, h] rows [rank V/D, ...)
  const Tensor& lm_head() const { return config_.tie_word_embeddings() ? embed_ : lm_head_; }
  const Tensor& final_norm() const { return final_norm_; }

  // Every parameter this stage holds with its place in the logical tensor, in weight_specs()
  // order. The o_proj and down_proj shards are column shards; their local tensors are views into
  // the packed buffers.
  std::vector<ParamShard> params() const;

  void zero();
  void copy_from(const TpWeights& other);  // same config, degree, rank and stage; converts dtype
  // Sum of local bytes of every shard (replicated gains included once).
  int64_t bytes() const;

 private:
  bool holds(const model::WeightSpec& spec) const;  // this stage's tensor?

  model::ModelConfig config_;
  DType dtype_;
  int rank_;
  TpShardSizes sizes_;
  model::StageRange stage_;
  std::vector<TpLayerShard> layers_;
  Tensor embed_, lm_head_, final_norm_;
};

}  // namespace tsp::parallel
