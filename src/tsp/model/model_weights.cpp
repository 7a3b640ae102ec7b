// ModelWeights: one Tensor per weight_specs() entry, reachable by role (LayerWeights) or HF name.
#include "tsp/model/model_weights.h"

#include <utility>

#include "tsp/core/check.h"
#include "tsp/core/random.h"

namespace tsp::model {

namespace {

// The member a spec lives in (null for lm_head when tied, which weight_specs() never lists).
Tensor* slot(Tensor& embed, Tensor& final_norm, Tensor& lm_head, std::vector<LayerWeights>& layers,
             const WeightSpec& s) {
  switch (s.kind) {
    case WeightKind::embed_tokens: return &embed;
    case WeightKind::final_norm: return &final_norm;
    case WeightKind::lm_head: return &lm_head;
    default: break;
  }
  TSP_ASSERT(s.layer >= 0 && s.layer < static_cast<int64_t>(layers.size()), "weight ", s.name,
             " has layer ", s.layer);
  LayerWeights& l = layers[static_cast<size_t>(s.layer)];
  switch (s.kind) {
    case WeightKind::input_layernorm: return &l.input_norm;
    case WeightKind::q_proj: return &l.q;
    case WeightKind::k_proj: return &l.k;
    case WeightKind::v_proj: return &l.v;
    case WeightKind::q_bias: return &l.q_bias;
    case WeightKind::k_bias: return &l.k_bias;
    case WeightKind::v_bias: return &l.v_bias;
    case WeightKind::o_proj: return &l.o;
    case WeightKind::post_attention_layernorm: return &l.post_norm;
    case WeightKind::gate_proj: return &l.gate;
    case WeightKind::up_proj: return &l.up;
    case WeightKind::down_proj: return &l.down;
    default: break;
  }
  TSP_THROW(InternalError, "ModelWeights: unhandled weight kind of ", s.name);
}

}  // namespace

ModelWeights::ModelWeights(const ModelConfig& config, DType dtype, MemCategory category)
    : config_(config), dtype_(dtype) {
  TSP_CHECK_DTYPE(dtype == DType::f32 || dtype == DType::bf16,
                  "ModelWeights: dtype must be f32 or bf16, got ", dtype);
  layers_.resize(static_cast<size_t>(config.num_hidden_layers()));
  for (const WeightSpec& s : weight_specs(config))
    *slot(embed_, final_norm_, lm_head_, layers_, s) = Tensor::zeros(s.shape, dtype, category);
}

Tensor initial_value(const WeightSpec& spec, size_t index, uint64_t seed) {
  Tensor f = Tensor::empty(spec.shape, DType::f32, MemCategory::workspace);
  if (is_norm_weight(spec.kind)) {
    f.fill(1.f);
  } else {
    Rng rng(seed, static_cast<uint64_t>(index));
    fill_normal(f, rng, 0.f, 0.02f);
  }
  return f;
}

ModelWeights ModelWeights::initialize(const ModelConfig& config, DType dtype, uint64_t seed) {
  ModelWeights w(config, dtype, MemCategory::weights);
  const std::vector<WeightSpec> specs = weight_specs(config);
  for (size_t i = 0; i < specs.size(); ++i) {
    // Drawn in f32 and rounded once, so that bf16 weights are exactly the rounded f32 ones.
    Tensor t = *slot(w.embed_, w.final_norm_, w.lm_head_, w.layers_, specs[i]);
    t.copy_from(initial_value(specs[i], i, seed));
  }
  return w;
}

std::vector<std::pair<std::string, Tensor>> ModelWeights::named() const {
  std::vector<std::pair<std::string, Tensor>> out;
  auto& self = const_cast<ModelWeights&>(*this);  // slot() is shared with the mutating paths
  for (const WeightSpec& s : weight_specs(config_))
    out.emplace_back(s.name, *slot(self.embed_, self.final_norm_, self.lm_head_, self.layers_, s));
  return out;
}

Tensor ModelWeights::get(std::string_view name) const {
  for (auto& [n, t] : named())
    if (n == name) return t;
  TSP_THROW(InvalidArgument, "ModelWeights::get: no weight named '", name, "' in a model with ",
            config_.summary(), (config_.tie_word_embeddings() ? " (tied: no lm_head.weight)" : ""));
}

void ModelWeights::zero() {
  for (auto& [n, t] : named()) t.zero();
}

void ModelWeights::copy_from(const ModelWeights& other) {
  TSP_CHECK(config_ == other.config_, "ModelWeights::copy_from: configs differ (",
            config_.summary(), " vs ", other.config_.summary(), ")");
  auto dst = named();
  auto src = other.named();
  for (size_t i = 0; i < dst.size(); ++i) dst[i].second.copy_from(src[i].second);
}

}  // namespace tsp::model
