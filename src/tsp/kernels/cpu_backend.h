// The CPU kernel backend: today's kernels. Its methods are defined in the kernel .cpp files of this
// folder (gemm.cpp defines CpuBackend::gemm, ...); backend.cpp registers it for Device::cpu.
#pragma once

#include "tsp/kernels/backend.h"

namespace tsp::kernels {

// Contracts: the public functions of the same name (kernel headers). Calls between these methods
// (cross-entropy's GEMMs) stay inside the CPU backend: final, so they bind directly.
class CpuBackend final : public KernelBackend {
 public:
  void gemm(const Tensor& a, const Tensor& b, Tensor& c, const GemmOptions& options) override;

  void flash_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                               const Tensor& q_pos, const Tensor& k_pos, Tensor& o,
                               Tensor& lse, const FlashAttentionOptions& options,
                               FlashAttentionStats* stats) override;
  void flash_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                const Tensor& o, const Tensor& d_o, const Tensor& lse,
                                const Tensor& q_pos, const Tensor& k_pos, Tensor& dq,
                                Tensor& dk, Tensor& dv, const FlashAttentionOptions& options,
                                FlashAttentionStats* stats) override;
  void merge_partials(const Tensor& o_a, const Tensor& lse_a, const Tensor& o_b,
                      const Tensor& lse_b, Tensor& o, Tensor& lse) override;

  void rmsnorm_forward(const Tensor& x, const Tensor& gain, const Tensor& y,
                       const Tensor& rstd, const RmsNormOptions& options) override;
  void rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& gain,
                        const Tensor& rstd, const Tensor& dx, const Tensor& dgain) override;
  void rope_forward(const Tensor& x, const RopeTable& table) override;
  void rope_backward(const Tensor& dx, const RopeTable& table) override;
  void swiglu_forward(const Tensor& gate, const Tensor& up, const Tensor& out) override;
  void swiglu_backward(const Tensor& dout, const Tensor& gate, const Tensor& up,
                       const Tensor& dgate, const Tensor& dup) override;
  void bias_add_forward(const Tensor& y, const Tensor& bias) override;
  void bias_backward(const Tensor& dy, const Tensor& dbias, bool accumulate) override;

  void embedding_forward(const Tensor& ids, const Tensor& table, const Tensor& out,
                         const EmbeddingOptions& options) override;
  void embedding_backward(const Tensor& ids, const Tensor& dout, const Tensor& dtable,
                          const EmbeddingOptions& options) override;

  void cross_entropy_chunk_forward(const Tensor& x, const Tensor& w_chunk,
                                   int64_t vocab_offset, const Tensor& targets,
                                   CrossEntropyState& state,
                                   const CrossEntropyOptions& options) override;
  CrossEntropyTotals cross_entropy_finalize(const CrossEntropyState& state,
                                            const Tensor& targets, const Tensor& lse,
                                            const Tensor& loss,
                                            const CrossEntropyOptions& options) override;
  void cross_entropy_chunk_backward(const Tensor& x, const Tensor& w_chunk,
                                    int64_t vocab_offset, const Tensor& targets,
                                    const Tensor& lse, float scale, const Tensor& dx,
                                    const Tensor& dw_chunk,
                                    const CrossEntropyOptions& options) override;
  CrossEntropyTotals cross_entropy_forward(const Tensor& x, const Tensor& w,
                                           const Tensor& targets, const Tensor& lse,
                                           const Tensor& loss,
                                           const CrossEntropyOptions& options) override;
  void cross_entropy_backward(const Tensor& x, const Tensor& w, const Tensor& targets,
                              const Tensor& lse, float scale, const Tensor& dx,
                              const Tensor& dw, const CrossEntropyOptions& options) override;

  void adamw_step(const Tensor& master, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                  const Tensor& grad, int64_t step, const AdamWOptions& options,
                  const Tensor& weight_out) override;
  double add_sum_of_squares(const Tensor& t, double sum) override;
  void decode_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& q_pos,
                        const Tensor& k_pos, Tensor& o, Tensor& lse, int64_t window) override;
  void decode_linear(const Tensor& x, const Tensor& w, Tensor& y, float beta) override;
};

}  // namespace tsp::kernels
