// The kernel backend seam: one implementation of every kernel per device (KernelBackend), looked
// up by the operands' device. The public functions of the kernel headers dispatch through it.
#pragma once

#include <cstdint>

#include "tsp/core/device.h"
#include "tsp/core/tensor.h"
#include "tsp/kernels/adamw.h"
#include "tsp/kernels/bias.h"
#include "tsp/kernels/cross_entropy.h"
#include "tsp/kernels/decode_attention.h"
#include "tsp/kernels/decode_linear.h"
#include "tsp/kernels/embedding.h"
#include "tsp/kernels/flash_attention.h"
#include "tsp/kernels/gemm.h"
#include "tsp/kernels/rmsnorm.h"
#include "tsp/kernels/rope.h"
#include "tsp/kernels/softmax_merge.h"
#include "tsp/kernels/sum_of_squares.h"
#include "tsp/kernels/swiglu.h"

namespace tsp::kernels {

// Every kernel entry point of a device. Each method has the contract of the public function of
// the same name (its header documents it: shapes, dtypes, layouts, errors, determinism); the
// public function has already checked that the defined operands share this backend's device and
// passes the arguments through unchanged (defaults filled in). The CPU implementation is
// CpuBackend (cpu_backend.h); docs/architecture.md, "Backend seam", describes adding another.
class KernelBackend {
 public:
  virtual void gemm(const Tensor& a, const Tensor& b, Tensor& c, const GemmOptions& options) = 0;

  virtual void flash_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                       const Tensor& q_pos, const Tensor& k_pos, Tensor& o,
                                       Tensor& lse, const FlashAttentionOptions& options,
                                       FlashAttentionStats* stats) = 0;
  virtual void flash_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                        const Tensor& o, const Tensor& d_o, const Tensor& lse,
                                        const Tensor& q_pos, const Tensor& k_pos, Tensor& dq,
                                        Tensor& dk, Tensor& dv, const FlashAttentionOptions& options,
                                        FlashAttentionStats* stats) = 0;
  virtual void merge_partials(const Tensor& o_a, const Tensor& lse_a, const Tensor& o_b,
                              const Tensor& lse_b, Tensor& o, Tensor& lse) = 0;

  virtual void rmsnorm_forward(const Tensor& x, const Tensor& gain, const Tensor& y,
                               const Tensor& rstd, const RmsNormOptions& options) = 0;
  virtual void rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& gain,
                                const Tensor& rstd, const Tensor& dx, const Tensor& dgain) = 0;
  // The table is host memory (RopeTable), built once per step from host positions.
  virtual void rope_forward(const Tensor& x, const RopeTable& table) = 0;
  virtual void rope_backward(const Tensor& dx, const RopeTable& table) = 0;
  virtual void swiglu_forward(const Tensor& gate, const Tensor& up, const Tensor& out) = 0;
  virtual void swiglu_backward(const Tensor& dout, const Tensor& gate, const Tensor& up,
                               const Tensor& dgate, const Tensor& dup) = 0;
  virtual void bias_add_forward(const Tensor& y, const Tensor& bias) = 0;
  virtual void bias_backward(const Tensor& dy, const Tensor& dbias, bool accumulate) = 0;

  virtual void embedding_forward(const Tensor& ids, const Tensor& table, const Tensor& out,
                                 const EmbeddingOptions& options) = 0;
  virtual void embedding_backward(const Tensor& ids, const Tensor& dout, const Tensor& dtable,
                                  const EmbeddingOptions& options) = 0;

  virtual void cross_entropy_chunk_forward(const Tensor& x, const Tensor& w_chunk,
                                           int64_t vocab_offset, const Tensor& targets,
                                           CrossEntropyState& state,
                                           const CrossEntropyOptions& options) = 0;
  virtual CrossEntropyTotals cross_entropy_finalize(const CrossEntropyState& state,
                                                    const Tensor& targets, const Tensor& lse,
                                                    const Tensor& loss,
                                                    const CrossEntropyOptions& options) = 0;
  virtual void cross_entropy_chunk_backward(const Tensor& x, const Tensor& w_chunk,
                                            int64_t vocab_offset, const Tensor& targets,
                                            const Tensor& lse, float scale, const Tensor& dx,
                                            const Tensor& dw_chunk,
                                            const CrossEntropyOptions& options) = 0;
  virtual CrossEntropyTotals cross_entropy_forward(const Tensor& x, const Tensor& w,
                                                   const Tensor& targets, const Tensor& lse,
                                                   const Tensor& loss,
                                                   const CrossEntropyOptions& options) = 0;
  virtual void cross_entropy_backward(const Tensor& x, const Tensor& w, const Tensor& targets,
                                      const Tensor& lse, float scale, const Tensor& dx,
                                      const Tensor& dw, const CrossEntropyOptions& options) = 0;

  virtual void adamw_step(const Tensor& master, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                          const Tensor& grad, int64_t step, const AdamWOptions& options,
                          const Tensor& weight_out) = 0;
  virtual double add_sum_of_squares(const Tensor& t, double sum) = 0;
  virtual void decode_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                const Tensor& q_pos, const Tensor& k_pos, Tensor& o, Tensor& lse,
                                int64_t window) = 0;
  virtual void decode_linear(const Tensor& x, const Tensor& w, Tensor& y, float beta) = 0;

 protected:
  ~KernelBackend() = default;  // registered objects live until exit; never deleted through this
};

// The backend of `device`; throws DeviceError when the build has none for it. The CPU backend is
// registered from the start.
KernelBackend& backend_for(Device device);
// Installs `backend` for `device` (nullptr removes it) and returns the previous one: how a device
// backend registers itself at start-up, and how tests route a device to a recording backend.
KernelBackend* register_backend(Device device, KernelBackend* backend);

namespace detail {
[[noreturn]] void throw_mixed_devices(const char* op, const Tensor& first, const Tensor& other);
}  // namespace detail

// The device shared by the defined operands of `op` (undefined ones are optional outputs and are
// skipped; none defined means cpu). Throws DeviceError naming both when two differ.
template <class... Tensors>
Device operand_device(const char* op, const Tensor& first, const Tensors&... rest) {
  const Tensor* seen = first.defined() ? &first : nullptr;
  [[maybe_unused]] auto visit = [&](const Tensor& t) {
    if (!t.defined()) return;
    if (seen == nullptr) {
      seen = &t;
    } else if (t.device() != seen->device()) [[unlikely]] {
      detail::throw_mixed_devices(op, *seen, t);
    }
  };
  (visit(rest), ...);
  return seen != nullptr ? seen->device() : Device::cpu;
}

}  // namespace tsp::kernels
