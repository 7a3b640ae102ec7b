// RoPE kernels: a per-position cos/sin table (double, rounded once) and an in-place rotation of
// every (b, s, head) row, simd.h Vec wide (16 lanes on AVX-512, else 8; f32 or bf16 storage, fp32
// math, masked tails); rows are
// independent, so the result never depends on the thread count.
#include "tsp/kernels/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <sstream>

#include "tsp/kernels/cpu_backend.h"
#include "tsp/kernels/simd.h"

namespace tsp::kernels {
namespace {

using namespace simd;

int64_t load_index(const Tensor& t, int64_t i) {
  if (t.dtype() == DType::i32) return t.data<int32_t>()[i * t.stride(0)];
  return t.data<int64_t>()[i * t.stride(0)];
}

// Rotates one row in place: (x1, x2) = (p[i], p[i + half]) -> (x1 c - x2 s, x2 c + x1 s), with
// s = sign * sin, kLanes columns at a time; the last half % kLanes columns through the same vector
// code (masked lanes), so column i always gets the same arithmetic.
template <class T>
inline void rotate_row(T* p, const float* c, const float* sn, int64_t half, Vec vsign) {
  T* p2 = p + half;
  for (int64_t i = 0; i < half; i += kLanes) {
    const int64_t w = std::min<int64_t>(kLanes, half - i);
    const bool full = w == kLanes;
    const Vec x1 = full ? vload(p + i) : vload_tail(p + i, w);
    const Vec x2 = full ? vload(p2 + i) : vload_tail(p2 + i, w);
    const Vec cv = full ? vload(c + i) : vload_tail(c + i, w);
    const Vec si = vsign * (full ? vload(sn + i) : vload_tail(sn + i, w));
    const Vec y1 = vfma(x1, cv, vneg(x2 * si));
    const Vec y2 = vfma(x2, cv, x1 * si);
    if (full) {
      vstore(p + i, y1);
      vstore(p2 + i, y2);
    } else {
      vstore_tail(p + i, y1, w);
      vstore_tail(p2 + i, y2, w);
    }
  }
}

// Parallel over (b, s) (each owns its table row and H head rows), so the row index arithmetic and
// the table lookups are per position, not per head row.
template <class T>
void rotate(const Tensor& x, const RopeTable& table, float sign) {
  const int64_t B = x.dim(0), S = x.dim(1), H = x.dim(2), half = x.dim(3) / 2;
  const int64_t sb = x.stride(0), ss = x.stride(1), sh = x.stride(2);
  T* base = x.data<T>();
  const float* cos0 = table.cos_row(0);
  const float* sin0 = table.sin_row(0);
  const Vec vsign = vset(sign);
#pragma omp parallel for schedule(static)
  for (int64_t bs = 0; bs < B * S; ++bs) {
    const int64_t b = bs / S, s = bs % S;
    const float* c = cos0 + s * half;
    const float* sn = sin0 + s * half;
    T* row = base + b * sb + s * ss;
    for (int64_t h = 0; h < H; ++h) rotate_row(row + h * sh, c, sn, half, vsign);
  }
}

void apply(const Tensor& x, const RopeTable& table, float sign, const char* op) {
  TSP_CHECK_SHAPE(x.defined() && x.rank() == 4, op, ": x must be [B, S, heads, d], got ",
                  x.describe());
  TSP_CHECK_DTYPE(x.dtype() == DType::f32 || x.dtype() == DType::bf16, op,
                  ": x must be f32 or bf16, got ", x.describe());
  TSP_CHECK_T(LayoutError, x.stride(3) == 1 || x.dim(3) <= 1, op,
              ": x needs unit inner stride, got ", x.describe());
  TSP_CHECK_SHAPE(x.dim(1) == table.seq_len() && x.dim(3) == table.head_dim(), op, ": x ",
                  x.describe(), " does not match the table (S = ", table.seq_len(),
                  ", head_dim = ", table.head_dim(), ")");
  if (x.numel() == 0) return;
  if (x.dtype() == DType::f32) rotate<float>(x, table, sign);
  else rotate<bf16>(x, table, sign);
}

}  // namespace

const char* rope_scaling_name(RopeScalingType type) {
  switch (type) {
    case RopeScalingType::none: return "default";
    case RopeScalingType::linear: return "linear";
    case RopeScalingType::llama3: return "llama3";
    case RopeScalingType::yarn: return "yarn";
  }
  return "?";
}

void validate_rope_options(const RopeOptions& o) {
  const RopeScaling& r = o.scaling;
  TSP_CHECK(std::isfinite(o.theta) && o.theta > 0, "RoPE: rope_theta must be > 0, got ", o.theta);
  if (r.type == RopeScalingType::none) return;
  const char* type = rope_scaling_name(r.type);
  TSP_CHECK(std::isfinite(r.factor) && r.factor >= 1, "RoPE ", type,
            " scaling: factor must be >= 1, got ", r.factor);
  if (r.type == RopeScalingType::llama3) {
    TSP_CHECK(r.low_freq_factor > 0 && r.high_freq_factor > r.low_freq_factor, "RoPE llama3 ",
              "scaling: needs 0 < low_freq_factor < high_freq_factor, got ", r.low_freq_factor,
              " and ", r.high_freq_factor);
  }
  if (r.type == RopeScalingType::llama3 || r.type == RopeScalingType::yarn) {
    TSP_CHECK(r.original_max_position_embeddings > 0, "RoPE ", type,
              " scaling: original_max_position_embeddings must be > 0, got ",
              r.original_max_position_embeddings);
  }
  if (r.type == RopeScalingType::yarn) {
    TSP_CHECK(o.theta > 1, "RoPE yarn scaling: rope_theta must be > 1, got ", o.theta);
    TSP_CHECK(r.beta_fast > 0 && r.beta_slow > 0, "RoPE yarn scaling: beta_fast and beta_slow ",
              "must be > 0, got ", r.beta_fast, " and ", r.beta_slow);
    TSP_CHECK(std::isfinite(r.attention_factor) && r.attention_factor >= 0, "RoPE yarn scaling: ",
              "attention_factor must be > 0 (or absent), got ", r.attention_factor);
  }
}

std::vector<double> rope_inv_freq(int64_t head_dim, const RopeOptions& o) {
  const int64_t half = head_dim / 2;
  const double d = static_cast<double>(head_dim);
  const RopeScaling& r = o.scaling;
  std::vector<double> inv(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) inv[i] = std::pow(o.theta, -2.0 * static_cast<double>(i) / d);
  switch (r.type) {
    case RopeScalingType::none:
      break;
    case RopeScalingType::linear:  // positions divided by the factor
      for (double& f : inv) f /= r.factor;
      break;
    case RopeScalingType::llama3: {
      // Wavelengths shorter than original/high_freq_factor are kept, longer than
      // original/low_freq_factor divided by the factor, the band between blended linearly in
      // original/wavelength.
      const double old_len = static_cast<double>(r.original_max_position_embeddings);
      const double low_wavelen = old_len / r.low_freq_factor, high_wavelen = old_len / r.high_freq_factor;
      for (double& f : inv) {
        const double wavelen = 2 * std::numbers::pi / f;
        if (wavelen > low_wavelen) {
          f /= r.factor;
        } else if (wavelen >= high_wavelen) {
          const double smooth =
              (old_len / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
          f = (1 - smooth) * f / r.factor + smooth * f;
        }
      }
      break;
    }
    case RopeScalingType::yarn: {
      // Dimensions that turn fewer than beta_slow times over the original context are
      // interpolated (divided by the factor), more than beta_fast times kept, a linear ramp over
      // the dimension index between.
      const double old_len = static_cast<double>(r.original_max_position_embeddings);
      auto correction_dim = [&](double rotations) {
        return d * std::log(old_len / (rotations * 2 * std::numbers::pi)) / (2 * std::log(o.theta));
      };
      double low = correction_dim(r.beta_fast), high = correction_dim(r.beta_slow);
      if (r.truncate) {
        low = std::floor(low);
        high = std::ceil(high);
      }
      low = std::max(low, 0.0);
      high = std::min(high, d - 1);
      if (low == high) high += 0.001;  // as HF: no division by zero
      for (int64_t i = 0; i < half; ++i) {
        const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
        const double keep = 1 - ramp;  // share of the unscaled frequency
        inv[i] = inv[i] / r.factor * (1 - keep) + inv[i] * keep;
      }
      break;
    }
  }
  return inv;
}

double rope_amplitude(const RopeOptions& o) {
  const RopeScaling& r = o.scaling;
  if (r.type != RopeScalingType::yarn) return 1.0;
  if (r.attention_factor > 0) return r.attention_factor;
  auto mscale = [&](double m) { return r.factor <= 1 ? 1.0 : 0.1 * m * std::log(r.factor) + 1.0; };
  if (r.mscale != 0 && r.mscale_all_dim != 0) return mscale(r.mscale) / mscale(r.mscale_all_dim);
  return mscale(1.0);
}

std::string describe_rope(const RopeOptions& o) {
  const RopeScaling& r = o.scaling;
  std::ostringstream os;
  os << "theta=" << o.theta;
  switch (r.type) {
    case RopeScalingType::none:
      break;
    case RopeScalingType::linear:
      os << " linear(factor=" << r.factor << ")";
      break;
    case RopeScalingType::llama3:
      os << " llama3(factor=" << r.factor << ", low=" << r.low_freq_factor
         << ", high=" << r.high_freq_factor << ", original=" << r.original_max_position_embeddings
         << ")";
      break;
    case RopeScalingType::yarn:
      os << " yarn(factor=" << r.factor << ", original=" << r.original_max_position_embeddings
         << ", beta=" << r.beta_fast << "/" << r.beta_slow << ", amplitude=" << rope_amplitude(o)
         << ")";
      break;
  }
  return os.str();
}

RopeTable::RopeTable(const Tensor& positions, int64_t head_dim, const RopeOptions& options) {
  TSP_CHECK_SHAPE(positions.defined() && positions.rank() == 1, "RopeTable: positions must be [S], got ",
                  positions.describe());
  TSP_CHECK_DTYPE(positions.dtype() == DType::i32 || positions.dtype() == DType::i64,
                  "RopeTable: positions must be i32 or i64, got ", positions.describe());
  TSP_CHECK(head_dim > 0 && head_dim % 2 == 0, "RopeTable: head_dim must be even and > 0, got ",
            head_dim);
  seq_len_ = positions.dim(0);
  head_dim_ = head_dim;
  const int64_t half = head_dim / 2;
  cos_ = Tensor::empty({seq_len_, half}, DType::f32, MemCategory::workspace);
  sin_ = Tensor::empty({seq_len_, half}, DType::f32, MemCategory::workspace);
  validate_rope_options(options);
  const std::vector<double> inv_freq = rope_inv_freq(head_dim, options);
  const double amplitude = rope_amplitude(options);
  float* c = cos_.data<float>();
  float* s = sin_.data<float>();
  for (int64_t t = 0; t < seq_len_; ++t) {
    const int64_t pos = load_index(positions, t);
    TSP_CHECK(pos >= 0, "RopeTable: position ", pos, " at index ", t, " of ", positions.describe(),
              " is negative");
    for (int64_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(pos) * inv_freq[static_cast<size_t>(i)];
      c[t * half + i] = static_cast<float>(amplitude * std::cos(angle));
      s[t * half + i] = static_cast<float>(amplitude * std::sin(angle));
    }
  }
}

void CpuBackend::rope_forward(const Tensor& x, const RopeTable& table) {
  apply(x, table, 1.f, "rope_forward");
}
void CpuBackend::rope_backward(const Tensor& dx, const RopeTable& table) {
  apply(dx, table, -1.f, "rope_backward");
}

void rope_forward(const Tensor& x, const Tensor& positions, const RopeOptions& options) {
  TSP_CHECK_SHAPE(x.defined() && x.rank() == 4, "rope_forward: x must be [B, S, heads, d], got ",
                  x.describe());
  rope_forward(x, RopeTable(positions, x.dim(3), options));
}
void rope_backward(const Tensor& dx, const Tensor& positions, const RopeOptions& options) {
  TSP_CHECK_SHAPE(dx.defined() && dx.rank() == 4, "rope_backward: dx must be [B, S, heads, d], got ",
                  dx.describe());
  rope_backward(dx, RopeTable(positions, dx.dim(3), options));
}

}  // namespace tsp::kernels
