// FSDP-over-SP piece sizes, the packed layer piece and the mapping of every row block onto its HF
// tensor.
#include "tsp/parallel/fsdp_sp_weights.h"

#include <string>

#include "tsp/core/check.h"
#include "tsp/model/weight_names.h"

namespace tsp::parallel {

using model::ModelConfig;
using model::WeightKind;
using model::WeightSpec;

namespace {

void check_rows(int64_t rows, const char* what, int64_t D) {
  TSP_CHECK(rows % D == 0, "fsdp-sp: ", what, "=", rows,
            " is not divisible by the fsdp degree D=", D,
            " (every tensor is split into D equal row blocks; uneven splits are not supported)");
}

}  // namespace

FsdpSpSizes FsdpSpSizes::of(const ModelConfig& c, int degree) {
  TSP_CHECK(degree >= 1, "fsdp-sp: the degree must be >= 1, got ", degree);
  const int64_t D = degree;
  check_rows(c.hidden_size(), "hidden_size h", D);
  check_rows(c.q_dim(), "q_proj rows H*d", D);
  check_rows(c.kv_dim(), "k_proj/v_proj rows H_kv*d", D);
  check_rows(c.intermediate_size(), "intermediate_size F", D);
  check_rows(c.vocab_size(), "vocab_size V", D);
  FsdpSpSizes s;
  s.degree = degree;
  s.h_rows = c.hidden_size() / D;
  s.q_rows = c.q_dim() / D;
  s.kv_rows = c.kv_dim() / D;
  s.ffn_rows = c.intermediate_size() / D;
  s.vocab_rows = c.vocab_size() / D;
  s.piece = c.params_per_layer() / D;
  return s;
}

FsdpLayerPiece piece_views(const Tensor& packed, const ModelConfig& c, const FsdpSpSizes& s) {
  TSP_ASSERT(packed.rank() == 1 && packed.numel() == s.piece && packed.is_contiguous(),
             "piece_views: expected a contiguous [", s.piece, "] buffer, got ", packed.describe());
  const int64_t h = c.hidden_size();
  int64_t at = 0;
  auto take = [&](int64_t rows, int64_t cols) {
    Tensor t = packed.slice(0, at, rows * cols);
    at += rows * cols;
    return cols == 1 ? t : t.view({rows, cols});
  };
  FsdpLayerPiece p;
  p.input_norm = take(s.h_rows, 1);
  p.q = take(s.q_rows, h);
  p.k = take(s.kv_rows, h);
  p.v = take(s.kv_rows, h);
  if (c.qkv_bias()) {
    p.q_bias = take(s.q_rows, 1);
    p.k_bias = take(s.kv_rows, 1);
    p.v_bias = take(s.kv_rows, 1);
  }
  p.o = take(s.h_rows, c.q_dim());
  p.post_norm = take(s.h_rows, 1);
  p.gate = take(s.ffn_rows, h);
  p.up = take(s.ffn_rows, h);
  p.down = take(s.h_rows, c.intermediate_size());
  TSP_ASSERT(at == s.piece, "piece_views: the views cover ", at, " of ", s.piece, " elements");
  return p;
}

FsdpSpWeights::FsdpSpWeights(const ModelConfig& config, DType dtype, int degree, int rank,
                             MemCategory category)
    : FsdpSpWeights(config, dtype, degree, rank, category,
                    model::StageRange::whole_model(config.num_hidden_layers())) {}

FsdpSpWeights::FsdpSpWeights(const ModelConfig& config, DType dtype, int degree, int rank,
                             MemCategory category, model::StageRange stage)
    : config_(config), dtype_(dtype), rank_(rank), sizes_(FsdpSpSizes::of(config, degree)), stage_(stage) {
  TSP_CHECK_DTYPE(dtype == DType::f32 || dtype == DType::bf16,
                  "FsdpSpWeights: dtype must be f32 or bf16, got ", dtype);
  TSP_CHECK(rank >= 0 && rank < degree, "FsdpSpWeights: rank ", rank, " outside [0, ", degree, ")");
  const int64_t h = config.hidden_size(), L = config.num_hidden_layers();
  TSP_CHECK(0 <= stage.first_layer && stage.first_layer < stage.end_layer && stage.end_layer <= L,
            "FsdpSpWeights: layers [", stage.first_layer, ", ", stage.end_layer, ") are not a stage of ", L,
            " layers");
  layers_.resize(static_cast<size_t>(L));
  for (int64_t l = stage.first_layer; l < stage.end_layer; ++l)
    layers_[static_cast<size_t>(l)] = Tensor::zeros({sizes_.piece}, dtype, category);
  const bool head = stage.has_head(L);
  if (stage.embeds() || (head && config.tie_word_embeddings()))
    embed_ = Tensor::zeros({sizes_.vocab_rows, h}, dtype, category);
  if (head && !config.tie_word_embeddings()) lm_head_ = Tensor::zeros({sizes_.vocab_rows, h}, dtype, category);
  if (head) final_norm_ = Tensor::zeros({sizes_.h_rows}, dtype, category);
}

std::vector<ParamShard> FsdpSpWeights::params() const {
  std::vector<ParamShard> out;
  for (const WeightSpec& spec : model::weight_specs(config_)) {
    Tensor local;
    if (spec.layer >= 0 && !stage_.holds_layer(spec.layer)) continue;  // another stage's
    if (spec.layer >= 0) {
      const FsdpLayerPiece p =
          piece_views(layers_[static_cast<size_t>(spec.layer)], config_, sizes_);
      switch (spec.kind) {
        case WeightKind::input_layernorm:
          local = p.input_norm;
          break;
        case WeightKind::q_proj:
          local = p.q;
          break;
        case WeightKind::k_proj:
          local = p.k;
          break;
        case WeightKind::v_proj:
          local = p.v;
          break;
        case WeightKind::q_bias:
          local = p.q_bias;
          break;
        case WeightKind::k_bias:
          local = p.k_bias;
          break;
        case WeightKind::v_bias:
          local = p.v_bias;
          break;
        case WeightKind::o_proj:
          local = p.o;
          break;
        case WeightKind::post_attention_layernorm:
          local = p.post_norm;
          break;
        case WeightKind::gate_proj:
          local = p.gate;
          break;
        case WeightKind::up_proj:
          local = p.up;
          break;
        case WeightKind::down_proj:
          local = p.down;
          break;
        default:
          TSP_THROW(InternalError, "FsdpSpWeights: unexpected layer tensor ", spec.name);
      }
    } else if (spec.kind == WeightKind::embed_tokens) {
      local = embed_;
    } else if (spec.kind == WeightKind::lm_head) {
      local = lm_head_;
    } else {
      local = final_norm_;
    }
    if (!local.defined()) continue;  // another stage's table or norm
    const int64_t rows = local.dim(0);
    ParamShard p{spec.name, spec.shape, ShardKind::rows, rank_ * rows, rows, local};
    p.mirror = spec.kind == WeightKind::embed_tokens && !stage_.embeds();  // the tied head's copy
    out.push_back(std::move(p));
  }
  return out;
}

FsdpSpWeights FsdpSpWeights::initialize(const ModelConfig& config, DType dtype, uint64_t seed,
                                        int degree, int rank) {
  return initialize(config, dtype, seed, degree, rank, model::StageRange::whole_model(config.num_hidden_layers()));
}

FsdpSpWeights FsdpSpWeights::initialize(const ModelConfig& config, DType dtype, uint64_t seed, int degree,
                                        int rank, model::StageRange stage) {
  FsdpSpWeights w(config, dtype, degree, rank, MemCategory::weights, stage);
  initialize_shards(config, seed, w.params());
  return w;
}

void FsdpSpWeights::zero() {
  for (Tensor* t : {&embed_, &lm_head_, &final_norm_})
    if (t->defined()) t->zero();
  for (Tensor& l : layers_)
    if (l.defined()) l.zero();
}

int64_t FsdpSpWeights::bytes() const {
  int64_t n = 0;
  for (const Tensor* t : {&embed_, &lm_head_, &final_norm_})
    if (t->defined()) n += static_cast<int64_t>(t->nbytes());
  for (const Tensor& l : layers_)
    if (l.defined()) n += static_cast<int64_t>(l.nbytes());
  return n;
}

}  // namespace tsp::parallel
