// Shared by the parallel-layout MPI tests: small random models and batches, the single-rank
// reference step, and comparisons of a rank's ParamShards with the reference's full tensors.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "tsp/core/random.h"
#include "tsp/model/model_weights.h"
#include "tsp/model/transformer.h"
#include "tsp/parallel/param_shard.h"

namespace tsp::testing {

struct TinyModel {
  bool gqa = false;   // H_kv = H / 2
  bool tied = false;  // tie_word_embeddings
  int64_t layers = 2;
};

// h = 64, H = 8 (d = 8), H_kv = 8 or 4, F = 128, V = 96: divisible by D = 1, 2, 4 (and by the
// GQA kv heads), small enough for every test to run in well under a second per rank.
inline model::ModelConfig tiny_config(const TinyModel& m) {
  model::ModelConfigFields f;
  f.hidden_size = 64;
  f.intermediate_size = 128;
  f.num_hidden_layers = m.layers;
  f.num_attention_heads = 8;
  f.num_key_value_heads = m.gqa ? 4 : 8;
  f.vocab_size = 96;
  f.rms_norm_eps = 1e-5;
  f.max_position_embeddings = 256;
  f.tie_word_embeddings = m.tied;
  return model::ModelConfig(f);
}

struct Batch {
  Tensor tokens, targets;  // [B, S] i32
};

// Random ids in [0, V); about one target in 7 is the ignore index (same on every rank).
inline Batch random_batch(int64_t batch, int64_t seq, int64_t vocab, uint64_t seed) {
  Batch b{Tensor::empty({batch, seq}, DType::i32, MemCategory::workspace),
          Tensor::empty({batch, seq}, DType::i32, MemCategory::workspace)};
  Rng rng(seed, 99);
  for (int64_t i = 0; i < batch * seq; ++i) {
    b.tokens.data<int32_t>()[i] = static_cast<int32_t>(rng.below(static_cast<uint64_t>(vocab)));
    const bool ignore = rng.below(7) == 0;
    b.targets.data<int32_t>()[i] =
        ignore ? model::kIgnoreIndex : static_cast<int32_t>(rng.below(static_cast<uint64_t>(vocab)));
  }
  return b;
}

// Rows [first, first + count) of a [B, S] batch.
inline Batch batch_rows(const Batch& b, int64_t first, int64_t count) {
  return {Tensor::copy_of(b.tokens.slice(0, first, count), DType::i32, MemCategory::workspace),
          Tensor::copy_of(b.targets.slice(0, first, count), DType::i32, MemCategory::workspace)};
}

struct ReferenceStep {
  model::LossSum loss;
  model::ModelWeights grads;
};

// The single-rank model's forward_backward on the whole batch, scaled by 1 / n_valid.
inline ReferenceStep reference_step(const model::ModelWeights& w, const Batch& b,
                                    const model::TransformerOptions& options) {
  model::Transformer model(w.config(), options);
  ReferenceStep r{{}, model::ModelWeights(w.config(), DType::f32, MemCategory::grads)};
  const int64_t n = model::count_valid_targets(b.targets);
  r.loss = model.forward_backward(w, b.tokens, b.targets, r.grads, 1.f / static_cast<float>(n));
  return r;
}

inline double rms_of(const Tensor& t) {
  const Tensor f = t.to_f32();
  double s = 0;
  for (int64_t i = 0; i < f.numel(); ++i) s += static_cast<double>(f.data<float>()[i]) * f.data<float>()[i];
  return f.numel() ? std::sqrt(s / static_cast<double>(f.numel())) : 0.0;
}

// Every shard equals its part of the full tensor: ||a - e|| <= rel ||e|| for the shard, and per
// element |a - e| <= rel * (|e| + floor_frac * rms(e)) with rms over the whole logical tensor:
// a reordered fp32 sum errs relative to its summands, which are on the tensor's scale, so an
// element that is near zero by cancellation is judged on that scale, not on its own.
// abs_tol is added to both bounds (per element, and times sqrt(n) for the L2 norm).
inline void expect_shards_match(const std::vector<parallel::ParamShard>& shards,
                                const model::ModelWeights& full, double rel, double floor_frac,
                                const std::string& what, double abs_tol = 0) {
  for (const parallel::ParamShard& p : shards) {
    const Tensor full_t = full.get(p.name);
    const double floor = floor_frac * rms_of(full_t);
    const Tensor e = p.view_of_full(full_t).to_f32(), a = p.local.to_f32();
    ASSERT_EQ(a.numel(), e.numel()) << what << " " << p.name;
    double num = 0, den = 0;
    for (int64_t i = 0; i < a.numel(); ++i) {
      const double dd = static_cast<double>(a.data<float>()[i]) - e.data<float>()[i];
      num += dd * dd;
      den += static_cast<double>(e.data<float>()[i]) * e.data<float>()[i];
    }
    EXPECT_LE(std::sqrt(num), rel * std::sqrt(den) + abs_tol * std::sqrt(static_cast<double>(a.numel())))
        << what << ": " << p.name << " L2 error (reference L2 " << std::sqrt(den) << ")";
    for (int64_t i = 0; i < a.numel(); ++i) {
      const double ev = e.data<float>()[i], av = a.data<float>()[i];
      if (!(std::fabs(av - ev) <= rel * (std::fabs(ev) + floor) + abs_tol)) {
        ADD_FAILURE() << what << ": " << p.name << " element " << i << " is " << av
                      << ", reference " << ev << " (tolerance " << rel * (std::fabs(ev) + floor) + abs_tol
                      << ")";
        break;
      }
    }
  }
}

}  // namespace tsp::testing
