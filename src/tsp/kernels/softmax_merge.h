// The one online-softmax merge of the engine. Partial softmax results over disjoint key (or
// vocabulary) sets are combined by their log-sum-exp; flash attention, decode and the LM-head ring all use it.
#pragma once

#include <cmath>
#include <limits>

#include "tsp/core/tensor.h"

namespace tsp::kernels {

inline constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Weights that combine two partials: merged = wa * a + wb * b, with merged lse = lse.
// A partial with lse == -inf (it saw no visible key) gets weight 0; two empty partials stay empty.
struct LseMerge {
  float lse;
  float wa;
  float wb;
};

inline LseMerge merge_lse(float lse_a, float lse_b) {
  if (lse_a == kNegInf && lse_b == kNegInf) return {kNegInf, 0.f, 0.f};
  const float m = lse_a > lse_b ? lse_a : lse_b;
  const float ea = std::exp(lse_a - m), eb = std::exp(lse_b - m);
  const float s = ea + eb;
  return {m + std::log(s), ea / s, eb / s};
}

// Running (max, sum of exp) of an online softmax. Feed it blocks of scores; `rescale` is the
// factor the caller must apply to anything it accumulated with the old max (0 when it was empty).
struct OnlineSoftmax {
  float m = kNegInf;  // running max of the scores seen
  float l = 0.f;      // sum of exp(score - m)

  // Raise the running max to at least block_max; returns the rescale factor for old sums.
  float raise_max(float block_max) {
    if (block_max <= m) return 1.f;
    const float rescale = (m == kNegInf) ? 0.f : std::exp(m - block_max);
    l *= rescale;
    m = block_max;
    return rescale;
  }
  float lse() const { return l > 0.f ? m + std::log(l) : kNegInf; }
};

// Tensor-level merge of two attention partials over disjoint key sets, all in fp32:
//   o_a, o_b, o: [B, S, H, d] (f32 or bf16, unit inner stride); lse_a, lse_b, lse: [B, H, S] f32.
// o may alias o_a and lse may alias lse_a (in-place accumulation). Rows where both partials saw
// no key get o = 0 and lse = -inf.
void merge_partials(const Tensor& o_a, const Tensor& lse_a, const Tensor& o_b, const Tensor& lse_b,
                    Tensor& o, Tensor& lse);

}  // namespace tsp::kernels
