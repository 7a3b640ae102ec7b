// Naive double-precision model: per-token loops, straight from the HF Llama definitions.
#include "tsp/model/reference/reference_model.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>

#include "tsp/core/check.h"

namespace tsp::model::reference {

namespace {

using Vec = std::vector<double>;

// y[o] = sum_i W[o][i] x[i] for W [out, in] row-major.
Vec matvec(const Vec& W, const Vec& x, int64_t out) {
  const int64_t in = static_cast<int64_t>(x.size());
  Vec y(static_cast<size_t>(out), 0.0);
  for (int64_t o = 0; o < out; ++o) {
    double s = 0;
    for (int64_t i = 0; i < in; ++i) s += W[o * in + i] * x[i];
    y[o] = s;
  }
  return y;
}

// HF LlamaRMSNorm: x * rsqrt(mean(x^2) + eps) * g.
Vec rmsnorm(const Vec& x, const Vec& g, double eps) {
  double ms = 0;
  for (double v : x) ms += v * v;
  ms /= static_cast<double>(x.size());
  const double r = 1.0 / std::sqrt(ms + eps);
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * r * g[i];
  return y;
}

// HF apply_rotary_pos_emb with rotate_half, on each head of `v` ([heads * d]) at position pos.
void rope(Vec& v, int64_t heads, int64_t d, int64_t pos, const ReferenceRope& r) {
  for (int64_t hh = 0; hh < heads; ++hh) {
    double* x = v.data() + hh * d;
    for (int64_t i = 0; i < d / 2; ++i) {
      const double a = static_cast<double>(pos) * r.inv_freq[static_cast<size_t>(i)];
      const double c = r.amplitude * std::cos(a), s = r.amplitude * std::sin(a);
      const double x1 = x[i], x2 = x[i + d / 2];
      x[i] = x1 * c - x2 * s;
      x[i + d / 2] = x2 * c + x1 * s;
    }
  }
}

double silu(double g) { return g / (1.0 + std::exp(-g)); }

}  // namespace

ReferenceWeights ReferenceWeights::from(const ModelWeights& w) {
  ReferenceWeights r{w.config(), weight_specs(w.config()), {}};
  for (auto& [name, t] : w.named()) {
    Tensor f = t.to_f32();
    const float* p = f.data<float>();
    r.tensors.emplace_back(p, p + f.numel());
  }
  return r;
}

const std::vector<double>& ReferenceWeights::at(std::string_view name) const {
  for (size_t i = 0; i < specs.size(); ++i)
    if (specs[i].name == name) return tensors[i];
  TSP_THROW(InvalidArgument, "ReferenceWeights: no weight named '", name, "'");
}

std::vector<double>& ReferenceWeights::at(std::string_view name) {
  return const_cast<std::vector<double>&>(std::as_const(*this).at(name));
}

ReferenceRope reference_rope(const ModelConfig& config) {
  const kernels::RopeScaling& sc = config.rope_scaling();
  const double base = config.rope_theta(), pi = 3.14159265358979323846;
  const int64_t dim = config.head_dim();
  ReferenceRope out;
  // Default: inv_freq = 1 / base^(arange(0, dim, 2) / dim).
  for (int64_t k = 0; k < dim; k += 2)
    out.inv_freq.push_back(1.0 / std::pow(base, static_cast<double>(k) / static_cast<double>(dim)));
  std::vector<double>& inv = out.inv_freq;
  switch (sc.type) {
    case kernels::RopeScalingType::none:
      break;
    case kernels::RopeScalingType::linear:
      for (double& f : inv) f = f / sc.factor;
      break;
    case kernels::RopeScalingType::llama3: {
      const double old_context = static_cast<double>(sc.original_max_position_embeddings);
      const double low_freq_wavelen = old_context / sc.low_freq_factor;
      const double high_freq_wavelen = old_context / sc.high_freq_factor;
      std::vector<double> scaled(inv.size());
      for (size_t i = 0; i < inv.size(); ++i) {
        const double wavelen = 2 * pi / inv[i];
        const double llama = wavelen > low_freq_wavelen ? inv[i] / sc.factor : inv[i];
        const double smooth = (old_context / wavelen - sc.low_freq_factor) /
                              (sc.high_freq_factor - sc.low_freq_factor);
        const double smoothed = (1 - smooth) * llama / sc.factor + smooth * llama;
        const bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
        scaled[i] = medium ? smoothed : llama;
      }
      inv = scaled;
      break;
    }
    case kernels::RopeScalingType::yarn: {
      const double factor = sc.factor, orig = static_cast<double>(sc.original_max_position_embeddings);
      auto get_mscale = [](double scale, double m) {
        return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0;
      };
      if (sc.attention_factor > 0) out.amplitude = sc.attention_factor;
      else if (sc.mscale != 0 && sc.mscale_all_dim != 0)
        out.amplitude = get_mscale(factor, sc.mscale) / get_mscale(factor, sc.mscale_all_dim);
      else out.amplitude = get_mscale(factor, 1.0);
      auto find_correction_dim = [&](double num_rotations) {
        return (static_cast<double>(dim) * std::log(orig / (num_rotations * 2 * pi))) /
               (2 * std::log(base));
      };
      double low = find_correction_dim(sc.beta_fast), high = find_correction_dim(sc.beta_slow);
      if (sc.truncate) {
        low = std::floor(low);
        high = std::ceil(high);
      }
      if (low < 0) low = 0;
      if (high > static_cast<double>(dim - 1)) high = static_cast<double>(dim - 1);
      if (low == high) high += 0.001;
      for (size_t i = 0; i < inv.size(); ++i) {
        const double pos_freq = 1.0 / inv[i];  // base^(2i/dim)
        const double extrapolation = 1.0 / pos_freq, interpolation = 1.0 / (factor * pos_freq);
        double ramp = (static_cast<double>(i) - low) / (high - low);
        ramp = ramp < 0 ? 0 : (ramp > 1 ? 1 : ramp);
        const double extrapolation_factor = 1 - ramp;
        inv[i] = interpolation * (1 - extrapolation_factor) + extrapolation * extrapolation_factor;
      }
      break;
    }
  }
  return out;
}

double reference_loss_sum(const ReferenceWeights& w, const Tensor& tokens, const Tensor& targets) {
  const ModelConfig& c = w.config;
  TSP_CHECK_SHAPE(tokens.rank() == 2 && targets.shape() == tokens.shape(),
                  "reference_loss_sum: tokens and targets must be the same [B, S], got ",
                  tokens.describe(), " and ", targets.describe());
  TSP_CHECK(w.tensors.size() == w.specs.size(), "reference_loss_sum: ", w.tensors.size(),
            " tensors for ", w.specs.size(), " specs");
  const int64_t B = tokens.dim(0), S = tokens.dim(1);
  const int64_t h = c.hidden_size(), H = c.num_attention_heads(), Hkv = c.num_key_value_heads();
  const int64_t d = c.head_dim(), F = c.intermediate_size(), V = c.vocab_size();
  const int64_t group = H / Hkv;
  const double eps = c.rms_norm_eps();
  const ReferenceRope rope_freq = reference_rope(c);
  const Tensor tok = Tensor::copy_of(tokens, DType::i32, MemCategory::workspace);
  const Tensor tgt = Tensor::copy_of(targets, DType::i32, MemCategory::workspace);

  auto get = [&](WeightKind kind, int64_t layer) -> const Vec& {
    for (size_t i = 0; i < w.specs.size(); ++i)
      if (w.specs[i].kind == kind && w.specs[i].layer == layer) return w.tensors[i];
    TSP_THROW(InvalidArgument, "reference_loss_sum: missing weight ", weight_name(kind, layer));
  };
  const Vec& embed = get(WeightKind::embed_tokens, -1);
  const Vec& head = c.tie_word_embeddings() ? embed : get(WeightKind::lm_head, -1);
  const Vec& final_norm = get(WeightKind::final_norm, -1);

  double loss = 0;
  for (int64_t b = 0; b < B; ++b) {
    // Residual stream of every token of the sequence.
    std::vector<Vec> x(static_cast<size_t>(S));
    for (int64_t s = 0; s < S; ++s) {
      const int64_t id = tok.data<int32_t>()[b * S + s];
      TSP_CHECK(id >= 0 && id < V, "reference_loss_sum: token id ", id, " outside [0, ", V, ")");
      x[s].assign(embed.begin() + id * h, embed.begin() + (id + 1) * h);
    }
    for (int64_t l = 0; l < c.num_hidden_layers(); ++l) {
      // Attention: q, k, v of every token first (later tokens attend to earlier keys).
      std::vector<Vec> q(S), k(S), v(S);
      for (int64_t s = 0; s < S; ++s) {
        const Vec n = rmsnorm(x[s], get(WeightKind::input_layernorm, l), eps);
        q[s] = matvec(get(WeightKind::q_proj, l), n, H * d);
        k[s] = matvec(get(WeightKind::k_proj, l), n, Hkv * d);
        v[s] = matvec(get(WeightKind::v_proj, l), n, Hkv * d);
        if (c.qkv_bias()) {  // Qwen2: the projections' biases, before RoPE
          for (auto [out, kind] : {std::pair{&q[s], WeightKind::q_bias}, std::pair{&k[s], WeightKind::k_bias},
                                   std::pair{&v[s], WeightKind::v_bias}}) {
            const Vec& bias = get(kind, l);
            for (size_t i = 0; i < bias.size(); ++i) (*out)[i] += bias[i];
          }
        }
        rope(q[s], H, d, s, rope_freq);
        rope(k[s], Hkv, d, s, rope_freq);
      }
      for (int64_t s = 0; s < S; ++s) {
        Vec o(static_cast<size_t>(H * d), 0.0);
        for (int64_t hq = 0; hq < H; ++hq) {
          const int64_t hk = hq / group;
          Vec score(static_cast<size_t>(s + 1));
          double mx = -INFINITY;
          // Causal: keys at positions <= s; Mistral's sliding window keeps the last W of them
          // (transformers' sliding_window_overlay: key j visible iff j > s - W).
          const int64_t first = c.sliding_window() > 0 ? std::max<int64_t>(0, s - c.sliding_window() + 1) : 0;
          for (int64_t j = first; j <= s; ++j) {
            double dot = 0;
            for (int64_t i = 0; i < d; ++i) dot += q[s][hq * d + i] * k[j][hk * d + i];
            score[j] = dot / std::sqrt(static_cast<double>(d));
            mx = std::max(mx, score[j]);
          }
          double z = 0;
          for (int64_t j = first; j <= s; ++j) z += std::exp(score[j] - mx);
          for (int64_t j = first; j <= s; ++j) {
            const double p = std::exp(score[j] - mx) / z;
            for (int64_t i = 0; i < d; ++i) o[hq * d + i] += p * v[j][hk * d + i];
          }
        }
        const Vec y = matvec(get(WeightKind::o_proj, l), o, h);
        for (int64_t i = 0; i < h; ++i) x[s][i] += y[i];
      }
      // MLP.
      for (int64_t s = 0; s < S; ++s) {
        const Vec n = rmsnorm(x[s], get(WeightKind::post_attention_layernorm, l), eps);
        const Vec g = matvec(get(WeightKind::gate_proj, l), n, F);
        const Vec u = matvec(get(WeightKind::up_proj, l), n, F);
        Vec a(static_cast<size_t>(F));
        for (int64_t f = 0; f < F; ++f) a[f] = silu(g[f]) * u[f];
        const Vec y = matvec(get(WeightKind::down_proj, l), a, h);
        for (int64_t i = 0; i < h; ++i) x[s][i] += y[i];
      }
    }
    // Final norm, full-vocabulary log-softmax.
    for (int64_t s = 0; s < S; ++s) {
      const int64_t t = tgt.data<int32_t>()[b * S + s];
      if (t == -100) continue;
      TSP_CHECK(t >= 0 && t < V, "reference_loss_sum: target id ", t, " outside [0, ", V, ")");
      const Vec n = rmsnorm(x[s], final_norm, eps);
      const Vec logits = matvec(head, n, V);
      double mx = -INFINITY;
      for (double z : logits) mx = std::max(mx, z);
      double sum = 0;
      for (double z : logits) sum += std::exp(z - mx);
      loss += mx + std::log(sum) - logits[t];
    }
  }
  return loss;
}

double reference_loss_sum(const ModelWeights& w, const Tensor& tokens, const Tensor& targets) {
  return reference_loss_sum(ReferenceWeights::from(w), tokens, targets);
}

}  // namespace tsp::model::reference
