// Naive attention in double precision: the full score matrix per (batch, head), same layout,
// positions, masking and GQA semantics as flash_attention.h. For tests only (O(Sq Sk) memory).
#pragma once

#include <cstdint>
#include <vector>

#include "tsp/core/tensor.h"
#include "tsp/kernels/flash_attention.h"

namespace tsp::kernels::reference {

// o [B, Sq, H, d], lse [B, H, Sq] f32 (natural log; -inf for rows that see no key, whose o = 0).
void attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& q_pos,
                       const Tensor& k_pos, Tensor& o, Tensor& lse,
                       const FlashAttentionOptions& options = {});

// Gradients of attention_forward for upstream gradient d_o (recomputes everything in double).
// options.accumulate_grads adds into dq, dk, dv.
void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& d_o,
                        const Tensor& q_pos, const Tensor& k_pos, Tensor& dq, Tensor& dk,
                        Tensor& dv, const FlashAttentionOptions& options = {});

// The same computation on contiguous double arrays (q [B,Sq,H,d], k/v [B,Sk,Hkv,d], row-major),
// which the tensor functions above wrap; finite-difference tests use it directly.
struct ProblemF64 {
  int64_t B = 1, Sq = 0, Sk = 0, H = 1, Hkv = 1, d = 1;
  double scale = 0;  // 0 means 1/sqrt(d)
  bool causal = true;
  int64_t window = 0;  // sliding window: key visible iff 0 <= q_pos - k_pos < window; 0 = none
  std::vector<int32_t> q_pos, k_pos;  // empty means 0, 1, ..., S-1
  std::vector<double> q, k, v;
};
void forward_f64(const ProblemF64& p, std::vector<double>& o, std::vector<double>& lse);
void backward_f64(const ProblemF64& p, const std::vector<double>& d_o, std::vector<double>& dq,
                  std::vector<double>& dk, std::vector<double>& dv);

}  // namespace tsp::kernels::reference
