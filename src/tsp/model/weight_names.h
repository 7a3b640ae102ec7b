// The Hugging Face Llama weight names and their [out, in] row-major shapes for a ModelConfig:
// the single list that checkpoints, initialisation and sharding iterate over.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tsp/core/shape.h"
#include "tsp/model/model_config.h"

namespace tsp::model {

enum class WeightKind : uint8_t {
  embed_tokens,              // model.embed_tokens.weight            [V, h]
  input_layernorm,           // model.layers.{i}.input_layernorm.weight  [h]
  q_proj,                    // model.layers.{i}.self_attn.q_proj.weight [H*d, h]
  k_proj,                    // ...self_attn.k_proj.weight               [H_kv*d, h]
  v_proj,                    // ...self_attn.v_proj.weight               [H_kv*d, h]
  q_bias,                    // ...self_attn.q_proj.bias                 [H*d]    (Qwen2 only)
  k_bias,                    // ...self_attn.k_proj.bias                 [H_kv*d] (Qwen2 only)
  v_bias,                    // ...self_attn.v_proj.bias                 [H_kv*d] (Qwen2 only)
  o_proj,                    // ...self_attn.o_proj.weight               [h, H*d]
  post_attention_layernorm,  // model.layers.{i}.post_attention_layernorm.weight [h]
  gate_proj,                 // ...mlp.gate_proj.weight                  [F_h, h]
  up_proj,                   // ...mlp.up_proj.weight                    [F_h, h]
  down_proj,                 // ...mlp.down_proj.weight                  [h, F_h]
  final_norm,                // model.norm.weight                        [h]
  lm_head,                   // lm_head.weight                           [V, h] (absent when tied)
};

bool is_layer_weight(WeightKind kind);
bool is_norm_weight(WeightKind kind);  // the RMSNorm gains (1-D, initialised to 1)
bool is_bias_weight(WeightKind kind);  // the q/k/v projection biases (1-D)

// Full HF name. `layer` is required (0 <= layer) for per-layer kinds and must be -1 otherwise.
std::string weight_name(WeightKind kind, int64_t layer = -1);
// Shape of the weight in HF layout: [out, in] for projections, [h] for norm gains, [out] for biases.
Shape weight_shape(const ModelConfig& config, WeightKind kind);

struct WeightSpec {
  std::string name;
  Shape shape;
  WeightKind kind;
  int64_t layer;  // -1 for embed_tokens, final_norm, lm_head
};

// Every tensor of the model in canonical order: embed_tokens; per layer input_layernorm, q, k, v,
// (q, k, v biases when config.qkv_bias()), o, post_attention_layernorm, gate, up, down;
// model.norm; lm_head (unless tie_word_embeddings).
std::vector<WeightSpec> weight_specs(const ModelConfig& config);

// Sum of numel over weight_specs(config); equals config.total_params().
int64_t total_weight_elements(const std::vector<WeightSpec>& specs);

}  // namespace tsp::model
