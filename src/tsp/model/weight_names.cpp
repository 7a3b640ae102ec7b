// HF Llama weight names and shapes, derived from ModelConfig in one place.
#include "tsp/model/weight_names.h"

#include "tsp/core/check.h"

namespace tsp::model {

bool is_layer_weight(WeightKind kind) {
  return kind != WeightKind::embed_tokens && kind != WeightKind::final_norm && kind != WeightKind::lm_head;
}

bool is_norm_weight(WeightKind kind) {
  return kind == WeightKind::input_layernorm || kind == WeightKind::post_attention_layernorm ||
         kind == WeightKind::final_norm;
}

bool is_bias_weight(WeightKind kind) {
  return kind == WeightKind::q_bias || kind == WeightKind::k_bias || kind == WeightKind::v_bias;
}

namespace {
const char* layer_suffix(WeightKind kind) {
  switch (kind) {
    case WeightKind::input_layernorm: return "input_layernorm.weight";
    case WeightKind::q_proj: return "self_attn.q_proj.weight";
    case WeightKind::k_proj: return "self_attn.k_proj.weight";
    case WeightKind::v_proj: return "self_attn.v_proj.weight";
    case WeightKind::q_bias: return "self_attn.q_proj.bias";
    case WeightKind::k_bias: return "self_attn.k_proj.bias";
    case WeightKind::v_bias: return "self_attn.v_proj.bias";
    case WeightKind::o_proj: return "self_attn.o_proj.weight";
    case WeightKind::post_attention_layernorm: return "post_attention_layernorm.weight";
    case WeightKind::gate_proj: return "mlp.gate_proj.weight";
    case WeightKind::up_proj: return "mlp.up_proj.weight";
    case WeightKind::down_proj: return "mlp.down_proj.weight";
    default: return nullptr;
  }
}
}  // namespace

std::string weight_name(WeightKind kind, int64_t layer) {
  if (is_layer_weight(kind)) {
    TSP_CHECK(layer >= 0, "per-layer weight ", layer_suffix(kind), " needs a layer index >= 0, got ", layer);
    return "model.layers." + std::to_string(layer) + "." + layer_suffix(kind);
  }
  TSP_CHECK(layer == -1, "weight kind ", static_cast<int>(kind), " is not per-layer; layer must be -1, got ",
            layer);
  switch (kind) {
    case WeightKind::embed_tokens: return "model.embed_tokens.weight";
    case WeightKind::final_norm: return "model.norm.weight";
    case WeightKind::lm_head: return "lm_head.weight";
    default: break;
  }
  TSP_THROW(InternalError, "unhandled weight kind ", static_cast<int>(kind));
}

Shape weight_shape(const ModelConfig& c, WeightKind kind) {
  const int64_t h = c.hidden_size(), f = c.intermediate_size(), v = c.vocab_size();
  switch (kind) {
    case WeightKind::embed_tokens:
    case WeightKind::lm_head: return Shape{v, h};
    case WeightKind::input_layernorm:
    case WeightKind::post_attention_layernorm:
    case WeightKind::final_norm: return Shape{h};
    case WeightKind::q_proj: return Shape{c.q_dim(), h};
    case WeightKind::k_proj:
    case WeightKind::v_proj: return Shape{c.kv_dim(), h};
    case WeightKind::q_bias: return Shape{c.q_dim()};
    case WeightKind::k_bias:
    case WeightKind::v_bias: return Shape{c.kv_dim()};
    case WeightKind::o_proj: return Shape{h, c.q_dim()};
    case WeightKind::gate_proj:
    case WeightKind::up_proj: return Shape{f, h};
    case WeightKind::down_proj: return Shape{h, f};
  }
  TSP_THROW(InternalError, "unhandled weight kind ", static_cast<int>(kind));
}

std::vector<WeightSpec> weight_specs(const ModelConfig& config) {
  std::vector<WeightSpec> specs;
  auto add = [&](WeightKind kind, int64_t layer) {
    specs.push_back({weight_name(kind, layer), weight_shape(config, kind), kind, layer});
  };
  add(WeightKind::embed_tokens, -1);
  for (int64_t i = 0; i < config.num_hidden_layers(); ++i) {
    for (WeightKind k : {WeightKind::input_layernorm, WeightKind::q_proj, WeightKind::k_proj,
                         WeightKind::v_proj})
      add(k, i);
    if (config.qkv_bias())
      for (WeightKind k : {WeightKind::q_bias, WeightKind::k_bias, WeightKind::v_bias}) add(k, i);
    for (WeightKind k : {WeightKind::o_proj, WeightKind::post_attention_layernorm,
                         WeightKind::gate_proj, WeightKind::up_proj, WeightKind::down_proj})
      add(k, i);
  }
  add(WeightKind::final_norm, -1);
  if (!config.tie_word_embeddings()) add(WeightKind::lm_head, -1);
  return specs;
}

int64_t total_weight_elements(const std::vector<WeightSpec>& specs) {
  int64_t n = 0;
  for (const WeightSpec& s : specs) n += s.shape.numel();
  return n;
}

}  // namespace tsp::model
