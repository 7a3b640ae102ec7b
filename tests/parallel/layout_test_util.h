// Shared by the parallel-layout MPI tests: small random models and batches, the single-rank
// reference step, and comparisons of a rank's ParamShards with the reference's full tensors.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "fp_bounds.h"
#include "tsp/core/random.h"
#include "tsp/model/model_weights.h"
#include "tsp/model/transformer.h"
#include "tsp/parallel/param_shard.h"

namespace tsp::testing {

struct TinyModel {
  bool gqa = false;   // H_kv = H / 2
  bool tied = false;  // tie_word_embeddings
  int64_t layers = 2;
  kernels::RopeScaling rope = {};  // RoPE scaling (none by default)
  int64_t head_dim = 0;            // explicit d (0: h / H = 8); 16 makes q and o 128 wide, h 64
  int64_t window = 0;              // Mistral sliding window (0: none)
  bool qkv_bias = false;           // Qwen2: q/k/v projection biases
};

// Scalings whose every regime shows at d = 8, theta = 1e4 (wavelengths 6.3, 63, 628, 6283): llama3
// keeps frequency 0, blends 1, divides 2 and 3; yarn's ramp keeps 0, half-interpolates 1,
// interpolates 2 and 3, and scales cos/sin by 0.1 ln 4 + 1.
inline kernels::RopeScaling test_llama3_scaling() {
  return {.type = kernels::RopeScalingType::llama3, .factor = 8, .low_freq_factor = 1,
          .high_freq_factor = 4, .original_max_position_embeddings = 64};
}
inline kernels::RopeScaling test_yarn_scaling() {
  return {.type = kernels::RopeScalingType::yarn, .factor = 4, .original_max_position_embeddings = 64};
}

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
  f.rope_scaling = m.rope;
  f.head_dim = m.head_dim;
  if (m.window > 0) {
    f.model_type = model::ModelType::mistral;
    f.sliding_window = m.window;
  }
  if (m.qkv_bias) f.model_type = model::ModelType::qwen2;
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

// Derived fp32 tolerances of a parallel layout against the single-rank engine (issue #12,
// tests/fp_bounds.h), relative to the magnitude of the summed terms: the loss sum's own (a sum
// of non-negative per-token terms -log p), a gradient element's |e| + rms of its tensor (see
// expect_shards_match). Both engines evaluate the same math in fp32, in different summation
// orders (head groups, weight-ring shards, dK|dV partials, vocabulary shards and chunks, fused
// GEMMs, reduce-scatters and all-reduces), each within gamma = (sum of the lengths of the chained
// fp32 reductions) 2^-24 of exact, so they differ by at most 2 gamma. `extra` counts the terms of
// the sums a layout adds to the single-rank chain: the all-reduce or reduce-scatter over the D <= 4
// ranks of the group (4), over 2 dp replicas (2), the loss sum's float cast and all-reduce (2),
// the tied embedding's two gradient contributions or two micro-batches (2). For tiny_config
// (L 2, h 64, F 128, V 96) at S 24, T 48: loss 1.6e-4, gradients 3.6e-4 (the sums of lengths,
// extra included, are 1323 and 3052 terms); a missing or doubled term errs by >= 1e-2.
struct F32Tolerance {
  double loss = 0, grad = 0;
};
inline F32Tolerance f32_layout_tolerance(const model::ModelConfig& c, const Batch& b, int64_t extra = 10) {
  const int64_t S = b.tokens.dim(1), T = b.tokens.numel();
  return {2 * model_chain(c, S, T, /*backward=*/false, extra).gamma,
          2 * model_chain(c, S, T, /*backward=*/true, extra).gamma};
}

inline double rms_of(const Tensor& t) {
  const Tensor f = t.to_f32();
  double s = 0;
  for (int64_t i = 0; i < f.numel(); ++i) s += static_cast<double>(f.data<float>()[i]) * f.data<float>()[i];
  return f.numel() ? std::sqrt(s / static_cast<double>(f.numel())) : 0.0;
}

// Every shard equals its part of the full tensor: per element |a - e| <= rel * (|e| + floor_frac *
// rms(e)) + abs_tol with rms over the whole logical tensor: a reordered fp32 sum errs relative to
// its summands, which are on the tensor's scale, so an element that is near zero by cancellation
// is judged on that scale, not on its own. The shard's L2 error is then, by the triangle
// inequality, <= rel * (||e|| + sqrt(n) floor) + sqrt(n) abs_tol (the norm-wise check reports a
// systematic error over the whole shard even where no single element exceeds its bound).
// abs_bounds (optional): a further per-element absolute bound, the same tensors as `full` (e.g.
// AdamWDrift::bound()), added to abs_tol element by element (and its L2 norm to the norm-wise one).
inline void expect_shards_match(const std::vector<parallel::ParamShard>& shards,
                                const model::ModelWeights& full, double rel, double floor_frac,
                                const std::string& what, double abs_tol = 0,
                                const model::ModelWeights* abs_bounds = nullptr) {
  for (const parallel::ParamShard& p : shards) {
    const Tensor full_t = full.get(p.name);
    const double floor = floor_frac * rms_of(full_t);
    const Tensor e = p.view_of_full(full_t).to_f32(), a = p.local.to_f32();
    ASSERT_EQ(a.numel(), e.numel()) << what << " " << p.name;
    Tensor extra = Tensor::zeros(e.shape(), DType::f32, MemCategory::workspace);
    if (abs_bounds != nullptr) extra = p.view_of_full(abs_bounds->get(p.name)).to_f32();
    double extra_sq = 0;
    for (int64_t i = 0; i < extra.numel(); ++i)
      extra_sq += static_cast<double>(extra.data<float>()[i]) * extra.data<float>()[i];
    double num = 0, den = 0;
    for (int64_t i = 0; i < a.numel(); ++i) {
      const double dd = static_cast<double>(a.data<float>()[i]) - e.data<float>()[i];
      num += dd * dd;
      den += static_cast<double>(e.data<float>()[i]) * e.data<float>()[i];
    }
    const double sqrt_n = std::sqrt(static_cast<double>(a.numel()));
    EXPECT_LE(std::sqrt(num), rel * (std::sqrt(den) + sqrt_n * floor) + abs_tol * sqrt_n + std::sqrt(extra_sq))
        << what << ": " << p.name << " L2 error (reference L2 " << std::sqrt(den) << ")";
    for (int64_t i = 0; i < a.numel(); ++i) {
      const double ev = e.data<float>()[i], av = a.data<float>()[i];
      const double tol = rel * (std::fabs(ev) + floor) + abs_tol + extra.data<float>()[i];
      if (!(std::fabs(av - ev) <= tol)) {
        ADD_FAILURE() << what << ": " << p.name << " element " << i << " is " << av
                      << ", reference " << ev << " (tolerance " << tol << ")";
        break;
      }
    }
  }
}

// Per-element bound on |w_layout - w_single| after AdamW steps whose gradients differ by the
// derived fp32 bound dg_i <= grad_tol (|g_i| + rms of its tensor) (f32_layout_tolerance), to first
// order in lr (a step's gradient is taken at the reference's weights; the drift of earlier steps
// changes it by O(lr) and the update by O(lr^2)). AdamW's update is u = m^ / (s + eps), m^ and
// s = sqrt(v^) bias-corrected weighted means of the gradient history (weights a_k and b_k, each
// summing to 1), so with D = max over the history of dg: |m^ - m^'| <= D and |s - s'| <= D
// (triangle inequality of the weighted 2-norm), and
//     |u - u'| <= |m^ - m^'| / (s' + eps) + |u| |s - s'| / (s' + eps) <= (1 + U) D / (s - D + eps),
// capped at 2U, where U = sqrt(sum_k a_k^2 / b_k) >= |u| (Cauchy-Schwarz). Each step adds
// lr |u - u'| (weight decay only shrinks an earlier difference) plus the two engines' fp32
// arithmetic on the weight: w decay (2 roundings, of |w|), the step (<= 7, of the step's size
// <= lr U), the subtraction (1): 2 * 10 * 2^-24 (|w| + lr U). Elements whose gradients stay
// far above dg get ~lr * 2 grad_tol per step; near-zero ones up to lr (1 + U) D / eps.
class AdamWDrift {
 public:
  AdamWDrift(const model::ModelConfig& config, double beta1, double beta2, double eps)
      : b1_(beta1), b2_(beta2), eps_(eps), drift_(config, DType::f32, MemCategory::workspace),
        dmax_(config, DType::f32, MemCategory::workspace) {}

  // One step of the reference: the gradients the optimizer used (after clipping), its second
  // moment after the step (exp_avg_sq), its weights after the step, the step's learning rate.
  void add_step(const model::ModelWeights& grads, const model::ModelWeights& exp_avg_sq,
                const model::ModelWeights& weights, double lr, double grad_tol) {
    ++t_;
    double sum = 0;  // U^2 = sum_k a_k^2 / b_k over the history k = 1..t
    const double bc1 = 1 - std::pow(b1_, static_cast<double>(t_)), bc2 = 1 - std::pow(b2_, static_cast<double>(t_));
    for (int64_t k = 1; k <= t_; ++k) {
      const double a = (1 - b1_) * std::pow(b1_, static_cast<double>(t_ - k)) / bc1;
      const double b = (1 - b2_) * std::pow(b2_, static_cast<double>(t_ - k)) / bc2;
      sum += a * a / b;
    }
    const double U = std::sqrt(sum);
    const auto g = grads.named(), v = exp_avg_sq.named(), w = weights.named(), d = drift_.named(),
               m = dmax_.named();
    for (size_t t = 0; t < g.size(); ++t) {
      const Tensor gt = g[t].second.to_f32(), vt = v[t].second.to_f32(), wt = w[t].second.to_f32();
      const double rms = rms_of(gt);
      for (int64_t i = 0; i < gt.numel(); ++i) {
        float& dmax = m[t].second.data<float>()[i];
        dmax = std::max(dmax, static_cast<float>(grad_tol * (std::fabs(gt.data<float>()[i]) + rms)));
        const double s = std::sqrt(static_cast<double>(vt.data<float>()[i]) / bc2);
        const double du = std::min(2 * U, (1 + U) * dmax / (std::max(s - dmax, 0.0) + eps_));
        const double arith = 2 * 10 * kUnitF32 * (std::fabs(wt.data<float>()[i]) + lr * U);
        d[t].second.data<float>()[i] += static_cast<float>((lr * du + arith) * (1 + 4 * kUnitF32));
      }
    }
  }
  const model::ModelWeights& bound() const { return drift_; }
  // First-order change of a loss L(w) whose gradient (of the same loss) is `grad` when the weights
  // move by at most bound(): sum_i |grad_i| bound_i.
  double loss_change(const model::ModelWeights& grad) const {
    double sum = 0;
    const auto g = grad.named(), d = drift_.named();
    for (size_t t = 0; t < g.size(); ++t) {
      const Tensor gt = g[t].second.to_f32();
      for (int64_t i = 0; i < gt.numel(); ++i)
        sum += std::fabs(static_cast<double>(gt.data<float>()[i])) * d[t].second.data<float>()[i];
    }
    return sum;
  }

 private:
  double b1_, b2_, eps_;
  int64_t t_ = 0;
  model::ModelWeights drift_, dmax_;
};

// The whole tensors a list of shards covers (a one-process trainer's shards are whole), as
// ModelWeights in the shards' dtype.
inline model::ModelWeights whole_of(const model::ModelConfig& config,
                                    const std::vector<parallel::ParamShard>& shards) {
  model::ModelWeights w(config, shards.front().local.dtype(), MemCategory::workspace);
  for (const parallel::ParamShard& s : shards) parallel::copy_shard_to_full(s, w.get(s.name));
  return w;
}

}  // namespace tsp::testing
