// Shared fixtures of the training tests: a tiny model config, a token stream and a run config
// small enough that a few steps take milliseconds.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "parallel/layout_test_util.h"
#include "tsp/core/random.h"
#include "tsp/model/model_config.h"
#include "tsp/model/model_weights.h"
#include "tsp/parallel/param_shard.h"
#include "tsp/train/run_config.h"
#include "tsp/train/trainer.h"

namespace tsp::testing {

inline model::ModelConfig tiny_train_config(DType dtype = DType::f32) {
  model::ModelConfigFields f;
  f.hidden_size = 32;
  f.intermediate_size = 64;
  f.num_hidden_layers = 2;
  f.num_attention_heads = 2;
  f.num_key_value_heads = 1;
  f.vocab_size = 48;
  f.max_position_embeddings = 64;
  f.rms_norm_eps = 1e-5;
  f.torch_dtype = dtype;
  return model::ModelConfig(f);
}

// A learnable stream: a repeating pattern with a little noise.
inline std::vector<int32_t> pattern_tokens(int64_t n, int32_t vocab = 40, uint64_t seed = 5) {
  Rng rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    t[static_cast<size_t>(i)] = rng.below(8) == 0 ? static_cast<int32_t>(rng.below(static_cast<uint64_t>(vocab)))
                                                  : static_cast<int32_t>((i * 7 + i / 13) % vocab);
  }
  return t;
}

inline train::RunConfig tiny_run(int64_t steps) {
  train::RunConfig r;
  r.steps = steps;
  r.batch = 4;
  r.seq = 16;
  r.grad_accum = 2;
  r.lr = 1e-2;
  r.min_lr = 1e-3;
  r.warmup = 2;
  r.clip = 0.5;  // small enough that clipping happens
  r.seed = 11;
  r.eval_batches = 2;
  return r;
}

// Bitwise equality of every tensor of two ModelWeights.
inline bool weights_bit_equal(const model::ModelWeights& a, const model::ModelWeights& b) {
  const auto na = a.named();
  const auto nb = b.named();
  if (na.size() != nb.size()) return false;
  for (size_t i = 0; i < na.size(); ++i) {
    const Tensor& x = na[i].second;
    const Tensor& y = nb[i].second;
    if (na[i].first != nb[i].first || !(x.shape() == y.shape()) || x.dtype() != y.dtype()) return false;
    if (std::memcmp(x.raw(), y.raw(), x.nbytes()) != 0) return false;
  }
  return true;
}

// A one-process trainer's weights and last gradients as whole ModelWeights.
inline model::ModelWeights whole_weights(const train::Trainer& t) { return whole_of(t.config(), t.weights()); }
inline model::ModelWeights whole_grads(const train::Trainer& t) { return whole_of(t.config(), t.grads()); }

}  // namespace tsp::testing
