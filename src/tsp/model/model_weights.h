// ModelWeights: every parameter of one (unsharded) Llama model as Tensors in HF [out, in] layout,
// reachable by HF name or by role; also used, in f32, for gradients and optimizer moments.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tsp/core/tensor.h"
#include "tsp/model/model_config.h"
#include "tsp/model/weight_names.h"

namespace tsp::model {

struct LayerWeights {
  Tensor input_norm;  // [h]
  Tensor q, k, v;     // [H d, h], [H_kv d, h], [H_kv d, h]
  // [H d], [H_kv d], [H_kv d] when config.qkv_bias() (Qwen2), else undefined.
  Tensor q_bias, k_bias, v_bias;
  Tensor o;           // [h, H d]
  Tensor post_norm;   // [h]
  Tensor gate, up;    // [F, h]
  Tensor down;        // [h, F]
};

// The initial value of weight_specs(config)[index] in f32 (full logical tensor): ones for a norm
// gain, else N(0, 0.02) from Rng(seed, index), so that a tensor's values depend only on its place
// in the list. Every initialisation (ModelWeights::initialize and each layout's shards of it)
// draws from here.
Tensor initial_value(const WeightSpec& spec, size_t index, uint64_t seed);

class ModelWeights {
 public:
  // Zero-filled tensors of `dtype` under `category` (weights, grads, optimizer) for every spec.
  ModelWeights(const ModelConfig& config, DType dtype, MemCategory category);

  // Deterministic initialisation: matrices N(0, 0.02) (HF initializer_range), norm gains 1,
  // q/k/v biases N(0, 0.02) too (HF starts them at 0; drawn here so that a fresh model's biases
  // already take part in every product, and every layout's handling of them shows from step 0).
  // Each tensor draws from Rng(seed, index of its spec), so values do not depend on dtype or on
  // which other tensors exist; bf16 weights are the rounded f32 values.
  static ModelWeights initialize(const ModelConfig& config, DType dtype, uint64_t seed);

  const ModelConfig& config() const { return config_; }
  DType dtype() const { return dtype_; }

  std::vector<LayerWeights>& layers() { return layers_; }
  const std::vector<LayerWeights>& layers() const { return layers_; }
  const Tensor& embed() const { return embed_; }        // [V, h]
  const Tensor& final_norm() const { return final_norm_; }  // [h]
  // [V, h]: the embedding itself when tie_word_embeddings (then its gradient gets both terms).
  const Tensor& lm_head() const { return config_.tie_word_embeddings() ? embed_ : lm_head_; }

  // Every tensor with its HF name, in weight_specs() order (lm_head absent when tied).
  // The Tensors share storage with this object.
  std::vector<std::pair<std::string, Tensor>> named() const;
  Tensor get(std::string_view name) const;  // throws InvalidArgument for an unknown name

  void zero();                              // every tensor := 0
  void copy_from(const ModelWeights& other);  // same config; converts dtype

 private:
  ModelConfig config_;
  DType dtype_;
  Tensor embed_, final_norm_, lm_head_;
  std::vector<LayerWeights> layers_;
};

}  // namespace tsp::model
