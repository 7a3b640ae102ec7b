// The tensor-parallel partition (tp_weights.h): shard sizes, packed per-layer buffers and the
// mapping of every shard onto its HF tensor.
#include "tsp/parallel/tp_weights.h"

#include <functional>
#include <utility>

#include "tsp/core/check.h"
#include "tsp/model/weight_names.h"

namespace tsp::parallel {

using model::ModelConfig;
using model::WeightKind;
using model::WeightSpec;

TpShardSizes TpShardSizes::of(const ModelConfig& c, int degree) {
  TSP_CHECK(degree >= 1, "tsp: the degree must be >= 1, got ", degree);
  const int64_t D = degree;
  TSP_CHECK(c.num_attention_heads() % D == 0, "tsp: num_attention_heads H=",
            c.num_attention_heads(), " is not divisible by the tsp degree D=", D,
            " (each rank owns H/D query heads)");
  TSP_CHECK(c.num_key_value_heads() % D == 0, "tsp: num_key_value_heads H_kv=",
            c.num_key_value_heads(), " is not divisible by the tsp degree D=", D,
            " (each rank owns H_kv/D key/value heads; H_kv < D is not supported)");
  TSP_CHECK(c.intermediate_size() % D == 0, "tsp: intermediate_size F=", c.intermediate_size(),
            " is not divisible by the tsp degree D=", D, " (each rank owns F/D MLP rows)");
  TSP_CHECK(c.vocab_size() % D == 0, "tsp: vocab_size V=", c.vocab_size(),
            " is not divisible by the tsp degree D=", D,
            " (each rank owns V/D vocabulary rows; pad the vocabulary to a multiple of D)");
  TpShardSizes s;
  s.degree = degree;
  const int64_t h = c.hidden_size(), d = c.head_dim();
  s.heads = c.num_attention_heads() / D;
  s.kv_heads = c.num_key_value_heads() / D;
  s.q_rows = s.heads * d;
  s.kv_rows = s.kv_heads * d;
  s.qkv_rows = s.q_rows + 2 * s.kv_rows;
  s.qkv_bias = c.qkv_bias() ? s.qkv_rows : 0;
  s.attn_elements = s.qkv_rows * h + h * s.q_rows + s.qkv_bias;
  s.ffn_rows = c.intermediate_size() / D;
  s.mlp_elements = 3 * s.ffn_rows * h;
  s.vocab_rows = c.vocab_size() / D;
  return s;
}

AttnShardViews attn_views(const Tensor& packed, const ModelConfig& c, const TpShardSizes& s) {
  const int64_t h = c.hidden_size();
  TSP_ASSERT(packed.rank() == 1 && packed.numel() == s.attn_elements && packed.is_contiguous(),
             "attn_views: expected a contiguous [", s.attn_elements, "] buffer, got ",
             packed.describe());
  AttnShardViews v{packed.slice(0, 0, s.qkv_rows * h).view({s.qkv_rows, h}),
                   packed.slice(0, s.qkv_rows * h, h * s.q_rows).view({h, s.q_rows}), Tensor()};
  if (s.qkv_bias > 0) v.qkv_bias = packed.slice(0, s.qkv_rows * h + h * s.q_rows, s.qkv_bias);
  return v;
}

MlpShardViews mlp_views(const Tensor& packed, const ModelConfig& c, const TpShardSizes& s) {
  const int64_t h = c.hidden_size(), f = s.ffn_rows;
  TSP_ASSERT(packed.rank() == 1 && packed.numel() == s.mlp_elements && packed.is_contiguous(),
             "mlp_views: expected a contiguous [", s.mlp_elements, "] buffer, got ",
             packed.describe());
  return {packed.slice(0, 0, 2 * f * h).view({2 * f, h}),
          packed.slice(0, 2 * f * h, h * f).view({h, f})};
}

TpWeights::TpWeights(const ModelConfig& config, DType dtype, int degree, int rank,
                       MemCategory category)
    : TpWeights(config, dtype, degree, rank, category,
                model::StageRange::whole_model(config.num_hidden_layers())) {}

namespace {

// What a stage holds besides its layers.
bool holds_embedding(const ModelConfig& c, model::StageRange stage) {
  return stage.embeds() || (c.tie_word_embeddings() && stage.has_head(c.num_hidden_layers()));
}

}  // namespace

TpWeights::TpWeights(const ModelConfig& config, DType dtype, int degree, int rank,
                       MemCategory category, model::StageRange stage)
    : config_(config), dtype_(dtype), rank_(rank), sizes_(TpShardSizes::of(config, degree)), stage_(stage) {
  TSP_CHECK_DTYPE(dtype == DType::f32 || dtype == DType::bf16,
                  "TpWeights: dtype must be f32 or bf16, got ", dtype);
  TSP_CHECK(rank >= 0 && rank < degree, "TpWeights: rank ", rank, " outside [0, ", degree, ")");
  const int64_t L = config.num_hidden_layers();
  TSP_CHECK(0 <= stage.first_layer && stage.first_layer < stage.end_layer && stage.end_layer <= L,
            "TpWeights: layers [", stage.first_layer, ", ", stage.end_layer, ") are not a stage of ", L, " layers");
  const int64_t h = config.hidden_size();
  layers_.resize(static_cast<size_t>(L));
  for (int64_t i = stage.first_layer; i < stage.end_layer; ++i) {
    TpLayerShard& l = layers_[static_cast<size_t>(i)];
    l.input_norm = Tensor::zeros({h}, dtype, category);
    l.post_norm = Tensor::zeros({h}, dtype, category);
    l.attn_packed = Tensor::zeros({sizes_.attn_elements}, dtype, category);
    l.mlp_packed = Tensor::zeros({sizes_.mlp_elements}, dtype, category);
  }
  if (holds_embedding(config, stage)) embed_ = Tensor::zeros({sizes_.vocab_rows, h}, dtype, category);
  if (stage.has_head(L)) {
    if (!config.tie_word_embeddings()) lm_head_ = Tensor::zeros({sizes_.vocab_rows, h}, dtype, category);
    final_norm_ = Tensor::zeros({h}, dtype, category);
  }
}

bool TpWeights::holds(const WeightSpec& spec) const {
  if (spec.layer >= 0) return stage_.holds_layer(spec.layer);
  switch (spec.kind) {
    case WeightKind::embed_tokens: return embed_.defined();
    case WeightKind::lm_head: return lm_head_.defined();
    default: return final_norm_.defined();
  }
}

std::vector<ParamShard> TpWeights::params() const {
  const TpShardSizes& s = sizes_;
  std::vector<ParamShard> out;
  for (const WeightSpec& spec : model::weight_specs(config_)) {
    ParamShard p;
    p.name = spec.name;
    p.full_shape = spec.shape;
    auto rows = [&](const Tensor& local, int64_t per_rank) {
      p.kind = ShardKind::rows;
      p.offset = rank_ * per_rank;
      p.extent = per_rank;
      p.local = local;
    };
    auto cols = [&](const Tensor& local, int64_t per_rank) {
      p.kind = ShardKind::cols;
      p.offset = rank_ * per_rank;
      p.extent = per_rank;
      p.local = local;
    };
    auto replicated = [&](const Tensor& local) {
      p.kind = ShardKind::replicated;
      p.offset = 0;
      p.extent = spec.shape[0];
      p.local = local;
    };
    if (!holds(spec)) continue;  // another pipeline stage's
    const TpLayerShard* l = spec.layer >= 0 ? &layers_[static_cast<size_t>(spec.layer)] : nullptr;
    switch (spec.kind) {
      case WeightKind::embed_tokens:
        rows(embed_, s.vocab_rows);
        p.mirror = !stage_.embeds();  // the tied LM head's copy on the last stage
        break;
      case WeightKind::lm_head: rows(lm_head_, s.vocab_rows); break;
      case WeightKind::final_norm: replicated(final_norm_); break;
      case WeightKind::input_layernorm: replicated(l->input_norm); break;
      case WeightKind::post_attention_layernorm: replicated(l->post_norm); break;
      case WeightKind::q_proj:
      case WeightKind::k_proj:
      case WeightKind::v_proj:
      case WeightKind::q_bias:
      case WeightKind::k_bias:
      case WeightKind::v_bias: {
        // Rows [first, first + n) of the group's fused q | k | v projection (or of its biases).
        const bool q = spec.kind == WeightKind::q_proj || spec.kind == WeightKind::q_bias;
        const bool v = spec.kind == WeightKind::v_proj || spec.kind == WeightKind::v_bias;
        const int64_t first = q ? 0 : v ? s.q_rows + s.kv_rows : s.q_rows, n = q ? s.q_rows : s.kv_rows;
        const AttnShardViews views = attn_views(l->attn_packed, config_, s);
        rows((model::is_bias_weight(spec.kind) ? views.qkv_bias : views.qkv).slice(0, first, n), n);
        break;
      }
      case WeightKind::o_proj: cols(attn_views(l->attn_packed, config_, s).o, s.q_rows); break;
      case WeightKind::gate_proj:
        rows(mlp_views(l->mlp_packed, config_, s).gate_up.slice(0, 0, s.ffn_rows), s.ffn_rows);
        break;
      case WeightKind::up_proj:
        rows(mlp_views(l->mlp_packed, config_, s).gate_up.slice(0, s.ffn_rows, s.ffn_rows),
             s.ffn_rows);
        break;
      case WeightKind::down_proj: cols(mlp_views(l->mlp_packed, config_, s).down, s.ffn_rows); break;
    }
    out.push_back(std::move(p));
  }
  return out;
}

TpWeights TpWeights::from_full(const model::ModelWeights& full, int degree, int rank,
                                 MemCategory category) {
  TpWeights w(full.config(), full.dtype(), degree, rank, category);
  for (const ParamShard& p : w.params()) copy_shard_from_full(p, full.get(p.name));
  return w;
}

TpWeights TpWeights::initialize(const ModelConfig& config, DType dtype, uint64_t seed,
                                  int degree, int rank) {
  return initialize(config, dtype, seed, degree, rank, model::StageRange::whole_model(config.num_hidden_layers()));
}

TpWeights TpWeights::initialize(const ModelConfig& config, DType dtype, uint64_t seed, int degree, int rank,
                                  model::StageRange stage) {
  TpWeights w(config, dtype, degree, rank, MemCategory::weights, stage);
  initialize_shards(config, seed, w.params());
  return w;
}

namespace {

// f(t) for every defined tensor of a layer.
template <class F>
void each_defined(const TpLayerShard& l, F&& f) {
  for (const Tensor* t : {&l.input_norm, &l.post_norm, &l.attn_packed, &l.mlp_packed})
    if (t->defined()) f(*t);
}

}  // namespace

void TpWeights::zero() {
  for (TpLayerShard& l : layers_) each_defined(l, [](Tensor t) { t.zero(); });
  for (Tensor* t : {&embed_, &lm_head_, &final_norm_})
    if (t->defined()) t->zero();
}

void TpWeights::copy_from(const TpWeights& other) {
  TSP_CHECK(config_ == other.config_ && degree() == other.degree() && rank_ == other.rank_ &&
                stage_ == other.stage_,
            "TpWeights::copy_from: different model, degree, rank or pipeline stage");
  for (size_t i = 0; i < layers_.size(); ++i) {
    const TpLayerShard &from = other.layers_[i];
    TpLayerShard& to = layers_[i];
    if (!to.attn_packed.defined()) continue;
    to.input_norm.copy_from(from.input_norm);
    to.post_norm.copy_from(from.post_norm);
    to.attn_packed.copy_from(from.attn_packed);
    to.mlp_packed.copy_from(from.mlp_packed);
  }
  for (auto [to, from] : {std::pair{&embed_, &other.embed_}, std::pair{&lm_head_, &other.lm_head_},
                          std::pair{&final_norm_, &other.final_norm_}})
    if (to->defined()) to->copy_from(*from);
}

int64_t TpWeights::bytes() const {
  int64_t n = 0;
  for (const TpLayerShard& l : layers_) each_defined(l, [&n](const Tensor& t) { n += static_cast<int64_t>(t.nbytes()); });
  for (const Tensor* t : {&embed_, &lm_head_, &final_norm_})
    if (t->defined()) n += static_cast<int64_t>(t->nbytes());
  return n;
}

}  // namespace tsp::parallel
