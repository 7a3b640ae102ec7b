// The FSDP/ZeRO-3 partition of a model's weights over the SP axis (TSP.md §8, docs/fsdp_sp.md):
// every tensor, norm gains included, is split into D row blocks and rank p holds block p. A
// layer's nine row blocks live in ONE packed buffer (its "piece"), so one all-gather of the piece
// assembles the whole layer as D pieces in rank order; the embedding, the LM head and the final
// norm are pieces of their own (an all-gather of a row-split table is the table itself).
#pragma once

#include <cstdint>
#include <vector>

#include "tsp/core/tensor.h"
#include "tsp/model/model_config.h"
#include "tsp/model/step_executor.h"
#include "tsp/parallel/param_shard.h"

namespace tsp::parallel {

// Sizes of one rank's pieces for a degree. Pure arithmetic, no allocation.
struct FsdpSpSizes {
  int degree = 1;
  int64_t h_rows = 0;      // h/D: rows of each norm gain, of o_proj and of down_proj
  int64_t q_rows = 0;      // H d / D: rows of q_proj
  int64_t kv_rows = 0;     // H_kv d / D: rows of k_proj and of v_proj
  int64_t ffn_rows = 0;    // F/D: rows of gate_proj and of up_proj
  int64_t vocab_rows = 0;  // V/D: rows of the embedding and of the LM head
  int64_t piece = 0;       // elements of one rank's packed layer piece = layer parameters / D

  // Throws InvalidArgument naming the size and D unless every row count (h, H d, H_kv d, F, V)
  // is divisible by D. Uneven splits are not supported (pad the model instead); FSDP does not
  // need whole heads per rank, so H_kv < D is fine as long as D divides H_kv d.
  static FsdpSpSizes of(const model::ModelConfig& config, int degree);
};

// Views of one rank's packed layer piece (its own, or block r of an all-gathered layer), in
// weight_specs() order: input_norm | q | k | v | (q, k, v biases) | o | post_norm | gate | up |
// down, each the rank's row block in HF [out, in] layout. Gradient pieces (f32) have the same views.
struct FsdpLayerPiece {
  Tensor input_norm;  // [h/D]
  Tensor q;           // [H d / D, h]
  Tensor k, v;        // [H_kv d / D, h]
  Tensor q_bias;      // [H d / D] (Qwen2), else undefined
  Tensor k_bias, v_bias;  // [H_kv d / D] (Qwen2), else undefined
  Tensor o;           // [h/D, H d]
  Tensor post_norm;   // [h/D]
  Tensor gate, up;    // [F/D, h]
  Tensor down;        // [h/D, F]
};
// packed: contiguous [s.piece].
FsdpLayerPiece piece_views(const Tensor& packed, const model::ModelConfig& config,
                           const FsdpSpSizes& s);

class FsdpSpWeights {
 public:
  // Zero-filled pieces of rank `rank` of `degree` (validated first) under `category`: of every
  // layer, or of one pipeline stage's as TpWeights holds them (its layers, the embedding on the
  // stage that embeds, final norm and LM head on the last; tied: the last stage's copy of the
  // embedding is a ParamShard::mirror).
  FsdpSpWeights(const model::ModelConfig& config, DType dtype, int degree, int rank,
                MemCategory category);
  FsdpSpWeights(const model::ModelConfig& config, DType dtype, int degree, int rank,
                MemCategory category, model::StageRange stage);
  // Exactly this rank's rows of ModelWeights::initialize(config, dtype, seed), generated one
  // logical tensor at a time (Rng(seed, spec index)), so no rank ever holds the whole model.
  static FsdpSpWeights initialize(const model::ModelConfig& config, DType dtype, uint64_t seed,
                                  int degree, int rank);
  static FsdpSpWeights initialize(const model::ModelConfig& config, DType dtype, uint64_t seed,
                                  int degree, int rank, model::StageRange stage);

  const model::ModelConfig& config() const { return config_; }
  DType dtype() const { return dtype_; }
  int degree() const { return sizes_.degree; }
  int rank() const { return rank_; }
  const FsdpSpSizes& sizes() const { return sizes_; }
  const model::StageRange& stage() const { return stage_; }

  // packed [piece] per layer (undefined outside the stage)
  const Tensor& embed() const { return embed_; }                 // [V/D, h]
  const Tensor& lm_head() const { return config_.tie_word_embeddings() ? embed_ : lm_head_; }
  const Tensor& final_norm() const { return final_norm_; }  // [h/D]

  const std::vector<Tensor>& layers() const { return layers_; }
  // Every parameter this stage holds as a ShardKind::rows shard (offset rank * rows), in
  // weight_specs() order; the locals are views into the pieces above.
  std::vector<ParamShard> params() const;
  void zero();
  int64_t bytes() const;  // local bytes of every piece

 private:
  model::ModelConfig config_;
  DType dtype_;
  int rank_;
  FsdpSpSizes sizes_;
  model::StageRange stage_;
  std::vector<Tensor> layers_;
  Tensor embed_, lm_head_, final_norm_;
};

}  // namespace tsp::parallel
