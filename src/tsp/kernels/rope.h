// Rotary position embedding (Llama / Hugging Face rotate_half convention) at given global positions,
// applied in place to [B, S, heads, d] views; backward is the rotation by the negative angle.
#pragma once

#include "tsp/core/tensor.h"

namespace tsp::kernels {

struct RopeOptions {
  double theta = 10000.0;  // rope_theta of the HF config (500000 for Llama 3)
};

// cos/sin of pos * inv_freq[i], inv_freq[i] = theta^(-2i/d), i < d/2, for ONE set of positions
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
