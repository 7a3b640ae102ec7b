// Rounding-error bounds of the tests, derived from the arithmetic (issue #12).
//
// A test that compares two fp32 computations (a kernel and its double reference, a parallel
// layout and the single-rank engine, micro-batches and one batch) allows
//
//     |a_i - e_i| <= gamma * (|e_i| + scale)
//
// where gamma comes from the unit roundoff and the reductions the value went through, and scale
// is the magnitude of the summed terms (the tensor's scale, e.g. its rms), NOT the value itself:
// an element that is a sum of cancelling terms can be ~0 while its rounding error is not.
// Higham (Accuracy and Stability of Numerical Algorithms, 2nd ed., Lemma 3.1, eq. 3.5):
//     |fl(x_1 + ... + x_n) - sum x_i| <= gamma_{n-1} sum |x_i|,   gamma_n = n u / (1 - n u),
// for ANY order and blocking of the sum (and with or without fused multiply-adds), so these
// bounds hold for every oneDNN kernel (AVX2 on Zen 3, AVX-512 on Zen 4/5 and Xeon, forced down
// with ONEDNN_MAX_CPU_ISA=AVX2) and every split over ranks, micro-batches or vocabulary chunks.
// They are worst-case bounds (linear in n, never the sqrt(n) random-walk estimate), never fitted
// to one machine's observed error.
#pragma once

#include <algorithm>
#include <cstdint>

namespace tsp::testing {

// Unit roundoff (round to nearest): fp32 has a 24-bit significand, bf16 an 8-bit one.
inline constexpr double kUnitF32 = 0x1p-24;
inline constexpr double kUnitBf16 = 0x1p-8;
inline constexpr double kUnitF64 = 0x1p-53;  // double (norms and losses are summed in double)

// A number printed with "%.6f" is within half a unit of its last digit of the value.
inline constexpr double kPrinted6 = 5e-7;

// Higham's gamma_n = n u / (1 - n u).
inline constexpr double gamma_n(int64_t n, double u = kUnitF32) {
  const double nu = static_cast<double>(n) * u;
  return nu / (1 - nu);
}

// The chained reductions of one forward (and backward) pass of the decoder stack.
//
// Every value the loss or a gradient element depends on is the end of a chain of fp32 sums; a
// rounding error made early reaches the result through the same (to first order linear) maps as
// the value itself, so relative to the magnitude of the result's terms the errors of the chained
// reductions add up: gamma = sum over the chain of gamma_{n_k} = (sum_k n_k) u (to first order),
// n_k the length of the k-th reduction. Counted along the longest path:
//   forward, per layer: input RMSNorm sum of squares (h), q|k|v projection (h), scores q.k (d),
//     softmax normaliser over keys (S), P V over keys (S), o projection (h), residual add (2),
//     post-attention RMSNorm (h), gate|up projection (h), down projection (F), residual add (2),
//     and 10 pointwise roundings (rsqrt and gain, RoPE's two products and sum, exp and divide of
//     the softmax, SiLU's exp, divide and products);
//   forward, head: final RMSNorm (h), LM head logits (h), log-sum-exp over the vocabulary (V),
//     the loss summed over the tokens (T), and 5 pointwise roundings (exp, log, differences);
//   backward, per layer: the transposes: RMSNorm backward (h, twice), the data gradients of the
//     down (h), gate|up (2F: both products summed), o (h) and q|k|v (q_dim + 2 kv_dim)
//     projections, flash attention's dP = dO V^T (d), D = rowsum(dO O) (d), dQ|dK|dV over
//     keys or queries (S), the residual gradient adds (2 each), and 10 pointwise roundings;
//   backward, head: softmax minus one-hot (5 pointwise), the LM head's data gradient (V), the
//     final RMSNorm backward (h); then the weight gradient summed over the T tokens of the batch;
//   extra: terms of sums the caller adds (micro-batches accumulated, an all-reduce over D ranks,
//     a float cast of a double, gradient clipping), as their total length.
// longest = max n_k (reported for the comments; the bound uses the sum).
struct ChainBound {
  int64_t terms = 0;    // sum_k n_k over the chain
  int64_t longest = 0;  // max_k n_k
  double gamma = 0;     // gamma_{terms}: relative to the magnitude of the summed terms
};

struct DecoderDims {
  int64_t layers, hidden, ffn, vocab, head_dim, q_dim, kv_dim, seq, tokens;
};

inline ChainBound decoder_chain(const DecoderDims& m, bool backward, int64_t extra = 0, double u = kUnitF32) {
  const int64_t h = m.hidden, F = m.ffn, V = m.vocab, d = m.head_dim, S = m.seq, T = m.tokens;
  const int64_t fwd_layer = h + h + d + S + S + h + 2 + h + h + F + 2 + 10;
  const int64_t fwd_head = h + h + V + T + 5;
  const int64_t bwd_layer = 2 * h + h + 2 * F + h + (m.q_dim + 2 * m.kv_dim) + d + d + S + 2 + 2 + 10;
  const int64_t bwd_head = 5 + V + h + T;
  ChainBound b;
  b.terms = m.layers * fwd_layer + fwd_head + (backward ? m.layers * bwd_layer + bwd_head : 0) + extra;
  b.longest = std::max({h, 2 * F, V, S, T, m.q_dim + 2 * m.kv_dim});
  b.gamma = gamma_n(b.terms, u);
  return b;
}

// The same for a model config (any type with the ModelConfig accessors) and a batch of `tokens`
// tokens in sequences of `seq`.
template <class Config>
ChainBound model_chain(const Config& c, int64_t seq, int64_t tokens, bool backward, int64_t extra = 0,
                       double u = kUnitF32) {
  return decoder_chain({c.num_hidden_layers(), c.hidden_size(), c.intermediate_size(), c.vocab_size(),
                        c.head_dim(), c.q_dim(), c.kv_dim(), seq, tokens},
                       backward, extra, u);
}

}  // namespace tsp::testing
