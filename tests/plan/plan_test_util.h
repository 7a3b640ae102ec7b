// Small configs for the planner tests whose traffic and memory are worked out by hand in the
// tests (h = 8: every number fits in a comment).
#pragma once

#include "tsp/model/model_config.h"
#include "tsp/plan/workload.h"

namespace tsp::plan::testing {

// h = 8, H = H_kv = 2 (d = 4), F = 32 = 4h, L = 2, V = 16, untied. Per layer: attention
// 2*8*8 + 2*8*8 = 256, MLP 3*8*32 = 768, matrices W = 1024 = 16 h^2, norms 16.
inline model::ModelConfig hand_config(int64_t kv_heads = 2) {
  model::ModelConfigFields f;
  f.hidden_size = 8;
  f.intermediate_size = 32;
  f.num_hidden_layers = 2;
  f.num_attention_heads = 2;
  f.num_key_value_heads = kv_heads;
  f.vocab_size = 16;
  f.max_position_embeddings = 4096;
  return model::ModelConfig(f);
}

// MHA with F = 4h: the setting of TSP.md §9's crossover.
inline model::ModelConfig mha_config(int64_t h, int64_t heads) {
  model::ModelConfigFields f;
  f.hidden_size = h;
  f.intermediate_size = 4 * h;
  f.num_hidden_layers = 1;
  f.num_attention_heads = heads;
  f.num_key_value_heads = heads;
  f.vocab_size = 64;
  f.max_position_embeddings = 1 << 20;
  return model::ModelConfig(f);
}

inline Workload fp32_work(int64_t batch, int64_t seq) {
  return {.batch = batch, .seq = seq, .precision = precision_preset("fp32")};
}

inline Workload bf16_work(int64_t batch, int64_t seq) {
  return {.batch = batch, .seq = seq, .precision = precision_preset("bf16")};
}

}  // namespace tsp::plan::testing
