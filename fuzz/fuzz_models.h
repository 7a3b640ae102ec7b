// The tiny model the seed writer and the train-state target share: the seeds' safetensors and
// training states are of this model, so the fuzzer starts from files the reader fully accepts.
#pragma once

#include "tsp/core/dtype.h"
#include "tsp/model/model_config.h"

namespace tsp::fuzz {

// h = 8, two heads over one kv head, one layer, V = 16, untied: 4 KiB of f32 weights.
inline model::ModelConfig tiny_fuzz_config(DType dtype = DType::f32) {
  model::ModelConfigFields f;
  f.hidden_size = 8;
  f.intermediate_size = 16;
  f.num_hidden_layers = 1;
  f.num_attention_heads = 2;
  f.num_key_value_heads = 1;
  f.vocab_size = 16;
  f.max_position_embeddings = 32;
  f.rms_norm_eps = 1e-5;
  f.torch_dtype = dtype;
  return model::ModelConfig(f);
}

}  // namespace tsp::fuzz
