// Softmax cross-entropy of an LM head, folded over vocabulary chunks without ever materialising
// [N, V] logits: a per-token online-softmax state (running max, sum, target logit) for the ring.
#pragma once

#include <cstdint>

#include "tsp/core/tensor.h"

namespace tsp::kernels {

struct CrossEntropyOptions {
  int64_t ignore_index = -100;  // tokens whose target equals this contribute no loss, no gradient
  int64_t chunk_size = 4096;    // vocabulary columns per logits block: scratch is [N, chunk] f32
};

// Running state of N tokens over the vocabulary chunks folded so far (all f32 [N], workspace):
// max and sum are the OnlineSoftmax (m, l) of each row (softmax_merge.h), target_logit is NaN
// until the chunk holding the token's target has been folded.
class CrossEntropyState {
 public:
  explicit CrossEntropyState(int64_t n_tokens);
  void reset();  // back to "no chunk seen": m = -inf, l = 0, target = NaN
  int64_t size() const { return max_.dim(0); }
  const Tensor& max() const { return max_; }
  const Tensor& sum() const { return sum_; }
  const Tensor& target_logit() const { return target_; }

 private:
  Tensor max_, sum_, target_;
};

struct CrossEntropyTotals {
  double loss_sum = 0;  // sum of per-token losses of the valid tokens (reduce over ranks)
  int64_t n_valid = 0;  // tokens whose target != ignore_index (reduce over ranks)
};

// Folds vocabulary rows [vocab_offset, vocab_offset + Vc) into the state:
//   x: [N, h], w_chunk: [Vc, h] in HF [out, in] layout (logits = x @ w_chunk^T), both f32 or both
//   bf16 (unit inner stride, free row strides); targets: [N] i32|i64 global ids or ignore_index.
// Internally in blocks of options.chunk_size columns; chunks may be folded in any order.
void cross_entropy_chunk_forward(const Tensor& x, const Tensor& w_chunk, int64_t vocab_offset,
                                 const Tensor& targets, CrossEntropyState& state,
                                 const CrossEntropyOptions& options = {});

// After every vocabulary chunk has been folded: lse [N] f32 (for all tokens; the backward needs
// it), loss [N] f32 (lse - target logit; 0 for ignored tokens; pass an undefined Tensor to skip),
// and the totals. Throws InvalidArgument if a valid token's target was never folded (id outside
// the vocabulary) or its logit is not finite.
CrossEntropyTotals cross_entropy_finalize(const CrossEntropyState& state, const Tensor& targets,
                                          const Tensor& lse, const Tensor& loss,
                                          const CrossEntropyOptions& options = {});

// Backward of one chunk: recomputes logits, dlogits = (exp(logits - lse) - onehot) * scale with
// scale = 1 / n_valid_global (0 rows for ignored tokens), and ACCUMULATES (+=)
//   dx [N, h] f32 += dlogits @ w_chunk,   dw_chunk [Vc, h] f32 += dlogits^T @ x.
// Either output may be an undefined Tensor to skip it. With bf16 x and w, dlogits are rounded to
// bf16 for the two GEMMs (bf16 inputs, fp32 accumulation and outputs).
void cross_entropy_chunk_backward(const Tensor& x, const Tensor& w_chunk, int64_t vocab_offset,
                                  const Tensor& targets, const Tensor& lse, float scale,
                                  const Tensor& dx, const Tensor& dw_chunk,
                                  const CrossEntropyOptions& options = {});

// Whole-vocabulary conveniences over a full head weight w: [V, h] (vocab_offset 0). The forward
// also checks every target is in [0, V) or ignore_index. Mean loss = loss_sum / n_valid.
CrossEntropyTotals cross_entropy_forward(const Tensor& x, const Tensor& w, const Tensor& targets,
                                         const Tensor& lse, const Tensor& loss,
                                         const CrossEntropyOptions& options = {});
void cross_entropy_backward(const Tensor& x, const Tensor& w, const Tensor& targets,
                            const Tensor& lse, float scale, const Tensor& dx, const Tensor& dw,
                            const CrossEntropyOptions& options = {});

}  // namespace tsp::kernels
