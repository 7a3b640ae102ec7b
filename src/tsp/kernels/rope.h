// Rotary position embedding (Llama / Hugging Face rotate_half convention) at given global positions,
// applied in place to [B, S, heads, d] views; backward is the rotation by the negative angle.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tsp/core/tensor.h"

namespace tsp::kernels {

// The context-extension schemes of HF's `rope_scaling` / `rope_parameters` that are implemented:
// each changes only the frequencies inv_freq[i] (and, for yarn, the amplitude of cos/sin), with
// the semantics of transformers 5's modeling_rope_utils (docs/model.md, "RoPE scaling").
enum class RopeScalingType { none, linear, llama3, yarn };
const char* rope_scaling_name(RopeScalingType type);  // "default", "linear", "llama3", "yarn"

struct RopeScaling {
  RopeScalingType type = RopeScalingType::none;
  double factor = 1.0;                            // linear, llama3, yarn
  double low_freq_factor = 1.0;                   // llama3
  double high_freq_factor = 4.0;                  // llama3
  int64_t original_max_position_embeddings = 0;   // llama3, yarn: the pre-training context
  double beta_fast = 32.0, beta_slow = 1.0;       // yarn
  double attention_factor = 0.0;                  // yarn: cos/sin amplitude; 0 = derived (below)
  double mscale = 0.0, mscale_all_dim = 0.0;      // yarn: the DeepSeek form of the derivation
  bool truncate = true;                           // yarn: round the correction range to integers
  bool operator==(const RopeScaling&) const = default;
};

struct RopeOptions {
  double theta = 10000.0;  // rope_theta of the HF config (500000 for Llama 3)
  RopeScaling scaling;
};

// inv_freq[i], i < head_dim / 2, in double: theta^(-2i/d), rescaled by the scaling type.
std::vector<double> rope_inv_freq(int64_t head_dim, const RopeOptions& options);
// The factor cos and sin are multiplied by (1 except for yarn: attention_factor, or derived from
// the factor as 0.1 ln(factor) + 1, or the mscale ratio when mscale and mscale_all_dim are set).
double rope_amplitude(const RopeOptions& options);
// Throws InvalidArgument naming the field when a parameter is out of its domain.
void validate_rope_options(const RopeOptions& options);
// "theta=500000 llama3(factor=8, low=1, high=4, original=8192)" for summary lines.
std::string describe_rope(const RopeOptions& options);

// cos/sin of pos * inv_freq[i] (rope_inv_freq above), times rope_amplitude, for ONE set of positions
// (the S positions of a local shard, which under zigzag are not contiguous). Built once per step
// and reused for q, k and their backward: the table is [S, d/2] (tiny next to the activations),
// it is computed in double and rounded once, and it needs no maximum position.
// Note: HF computes the angle in fp32; for positions >= ~4096 fp32 angles differ from exact ones
// by up to pos * 2^-24 rad, so this table is closer to the exact rotation than HF's.
class RopeTable {
 public:
  // positions: [S] i32|i64 (any stride), each >= 0; head_dim even and > 0.
  RopeTable(const Tensor& positions, int64_t head_dim, const RopeOptions& options = {});

  int64_t seq_len() const { return seq_len_; }
  int64_t head_dim() const { return head_dim_; }
  const float* cos_row(int64_t s) const { return cos_.data<float>() + s * (head_dim_ / 2); }
  const float* sin_row(int64_t s) const { return sin_.data<float>() + s * (head_dim_ / 2); }

 private:
  int64_t seq_len_ = 0;
  int64_t head_dim_ = 0;
  Tensor cos_;  // [S, d/2] f32, workspace
  Tensor sin_;
};

// x: [B, S, heads, d] f32|bf16 with unit inner stride (other strides free: q and k may be column
// slices of a fused QKV buffer). Rotated in place: x1' = x1 cos - x2 sin, x2' = x2 cos + x1 sin,
// with x1 = x[..., :d/2], x2 = x[..., d/2:].
void rope_forward(const Tensor& x, const RopeTable& table);
// Gradient of rope_forward, in place on dx: the rotation by -angle (the transpose of a rotation).
void rope_backward(const Tensor& dx, const RopeTable& table);

// Conveniences that build the table for one call.
void rope_forward(const Tensor& x, const Tensor& positions, const RopeOptions& options = {});
void rope_backward(const Tensor& dx, const Tensor& positions, const RopeOptions& options = {});

}  // namespace tsp::kernels
