// The naive double-precision Llama model: forward loss only, plain loops per token, written
// independently of the fast path (no kernels, no GEMM). The oracle of tests/model: the fast
// Transformer's loss is compared with it, and its central finite differences check every gradient.
#pragma once

#include <string_view>
#include <vector>

#include "tsp/core/tensor.h"
#include "tsp/model/model_config.h"
#include "tsp/model/model_weights.h"
#include "tsp/model/weight_names.h"

namespace tsp::model::reference {

// Every weight in double, one row-major vector per weight_specs() entry (same order, HF [out, in]
// layout). Tests perturb single elements of these for finite differences.
struct ReferenceWeights {
  ModelConfig config;
  std::vector<WeightSpec> specs;
  std::vector<std::vector<double>> tensors;

  static ReferenceWeights from(const ModelWeights& w);  // exact widening of f32/bf16 values
  std::vector<double>& at(std::string_view name);        // throws InvalidArgument if unknown
  const std::vector<double>& at(std::string_view name) const;
};

// The rotation RoPE applies at one position, written from HF's formulas (transformers 5's
// modeling_rope_utils) independently of kernels/rope: angle[i] = pos * inv_freq[i] and the
// amplitude of cos/sin (yarn's attention factor), for i < head_dim / 2.
struct ReferenceRope {
  std::vector<double> inv_freq;
  double amplitude = 1.0;
};
ReferenceRope reference_rope(const ModelConfig& config);

// Sum over tokens whose target != -100 of -log softmax(logits)[target], in double.
// tokens, targets: [B, S] i32; positions 0..S-1 in every sequence.
double reference_loss_sum(const ReferenceWeights& w, const Tensor& tokens, const Tensor& targets);
double reference_loss_sum(const ModelWeights& w, const Tensor& tokens, const Tensor& targets);

}  // namespace tsp::model::reference
