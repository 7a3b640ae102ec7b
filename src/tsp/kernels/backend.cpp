// The kernel backend registry (the CPU backend installed from the start) and the public kernel
// functions of the kernel headers: each finds its operands' device and forwards to its backend.
#include "tsp/kernels/backend.h"

#include <array>
#include <atomic>

#include "tsp/core/check.h"
#include "tsp/kernels/cpu_backend.h"

namespace tsp::kernels {
namespace {

// Constant-initialised and trivially destructible: usable by kernels that run during exit.
constinit CpuBackend cpu_backend;
constinit std::array<std::atomic<KernelBackend*>, kMaxDevices> backends{&cpu_backend};

size_t slot(Device device) {
  const size_t i = static_cast<uint8_t>(device);
  TSP_CHECK_T(DeviceError, i < backends.size(), "device ", static_cast<int>(i),
              " is outside the registry (", kMaxDevices, " slots)");
  return i;
}

}  // namespace

KernelBackend& backend_for(Device device) {
  KernelBackend* b = backends[slot(device)].load(std::memory_order_acquire);
  TSP_CHECK_T(DeviceError, b != nullptr, "no kernel backend for device ", device_name(device),
              ": this build has no kernels for it");
  return *b;
}

KernelBackend* register_backend(Device device, KernelBackend* backend) {
  return backends[slot(device)].exchange(backend, std::memory_order_acq_rel);
}

void detail::throw_mixed_devices(const char* op, const Tensor& first, const Tensor& other) {
  TSP_THROW(DeviceError, op, ": operands on different devices: ", first.describe(), " on ",
            device_name(first.device()), " and ", other.describe(), " on ", device_name(other.device()));
}

// ---- The public kernel functions: one device check and one call into the backend. ----

void gemm(const Tensor& a, const Tensor& b, Tensor& c, const GemmOptions& options) {
  backend_for(operand_device("gemm", a, b, c)).gemm(a, b, c, options);
}

void flash_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& q_pos,
                             const Tensor& k_pos, Tensor& o, Tensor& lse,
                             const FlashAttentionOptions& options, FlashAttentionStats* stats) {
  backend_for(operand_device("flash_attention_forward", q, k, v, q_pos, k_pos, o, lse))
      .flash_attention_forward(q, k, v, q_pos, k_pos, o, lse, options, stats);
}

void flash_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                              const Tensor& d_o, const Tensor& lse, const Tensor& q_pos,
                              const Tensor& k_pos, Tensor& dq, Tensor& dk, Tensor& dv,
                              const FlashAttentionOptions& options, FlashAttentionStats* stats) {
  backend_for(operand_device("flash_attention_backward", q, k, v, o, d_o, lse, q_pos, k_pos, dq, dk, dv))
      .flash_attention_backward(q, k, v, o, d_o, lse, q_pos, k_pos, dq, dk, dv, options, stats);
}

void merge_partials(const Tensor& o_a, const Tensor& lse_a, const Tensor& o_b, const Tensor& lse_b,
                    Tensor& o, Tensor& lse) {
  backend_for(operand_device("merge_partials", o_a, lse_a, o_b, lse_b, o, lse))
      .merge_partials(o_a, lse_a, o_b, lse_b, o, lse);
}

void rmsnorm_forward(const Tensor& x, const Tensor& gain, const Tensor& y, const Tensor& rstd,
                     const RmsNormOptions& options) {
  backend_for(operand_device("rmsnorm_forward", x, gain, y, rstd)).rmsnorm_forward(x, gain, y, rstd, options);
}

void rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& gain, const Tensor& rstd,
                      const Tensor& dx, const Tensor& dgain) {
  backend_for(operand_device("rmsnorm_backward", dy, x, gain, rstd, dx, dgain))
      .rmsnorm_backward(dy, x, gain, rstd, dx, dgain);
}

void rope_forward(const Tensor& x, const RopeTable& table) {
  backend_for(operand_device("rope_forward", x)).rope_forward(x, table);
}

void rope_backward(const Tensor& dx, const RopeTable& table) {
  backend_for(operand_device("rope_backward", dx)).rope_backward(dx, table);
}

void swiglu_forward(const Tensor& gate, const Tensor& up, const Tensor& out) {
  backend_for(operand_device("swiglu_forward", gate, up, out)).swiglu_forward(gate, up, out);
}

void swiglu_backward(const Tensor& dout, const Tensor& gate, const Tensor& up, const Tensor& dgate,
                     const Tensor& dup) {
  backend_for(operand_device("swiglu_backward", dout, gate, up, dgate, dup))
      .swiglu_backward(dout, gate, up, dgate, dup);
}

void bias_add_forward(const Tensor& y, const Tensor& bias) {
  backend_for(operand_device("bias_add_forward", y, bias)).bias_add_forward(y, bias);
}

void bias_backward(const Tensor& dy, const Tensor& dbias, bool accumulate) {
  backend_for(operand_device("bias_backward", dy, dbias)).bias_backward(dy, dbias, accumulate);
}

void embedding_forward(const Tensor& ids, const Tensor& table, const Tensor& out,
                       const EmbeddingOptions& options) {
  backend_for(operand_device("embedding_forward", ids, table, out))
      .embedding_forward(ids, table, out, options);
}

void embedding_backward(const Tensor& ids, const Tensor& dout, const Tensor& dtable,
                        const EmbeddingOptions& options) {
  backend_for(operand_device("embedding_backward", ids, dout, dtable))
      .embedding_backward(ids, dout, dtable, options);
}

void cross_entropy_chunk_forward(const Tensor& x, const Tensor& w_chunk, int64_t vocab_offset,
                                 const Tensor& targets, CrossEntropyState& state,
                                 const CrossEntropyOptions& options) {
  backend_for(operand_device("cross_entropy_chunk_forward", x, w_chunk, targets, state.max(), state.sum(),
                             state.target_logit()))
      .cross_entropy_chunk_forward(x, w_chunk, vocab_offset, targets, state, options);
}

CrossEntropyTotals cross_entropy_finalize(const CrossEntropyState& state, const Tensor& targets,
                                          const Tensor& lse, const Tensor& loss,
                                          const CrossEntropyOptions& options) {
  return backend_for(operand_device("cross_entropy_finalize", state.max(), state.sum(), state.target_logit(),
                                    targets, lse, loss))
      .cross_entropy_finalize(state, targets, lse, loss, options);
}

void cross_entropy_chunk_backward(const Tensor& x, const Tensor& w_chunk, int64_t vocab_offset,
                                  const Tensor& targets, const Tensor& lse, float scale,
                                  const Tensor& dx, const Tensor& dw_chunk,
                                  const CrossEntropyOptions& options) {
  backend_for(operand_device("cross_entropy_chunk_backward", x, w_chunk, targets, lse, dx, dw_chunk))
      .cross_entropy_chunk_backward(x, w_chunk, vocab_offset, targets, lse, scale, dx, dw_chunk, options);
}

CrossEntropyTotals cross_entropy_forward(const Tensor& x, const Tensor& w, const Tensor& targets,
                                         const Tensor& lse, const Tensor& loss,
                                         const CrossEntropyOptions& options) {
  return backend_for(operand_device("cross_entropy_forward", x, w, targets, lse, loss))
      .cross_entropy_forward(x, w, targets, lse, loss, options);
}

void cross_entropy_backward(const Tensor& x, const Tensor& w, const Tensor& targets,
                            const Tensor& lse, float scale, const Tensor& dx, const Tensor& dw,
                            const CrossEntropyOptions& options) {
  backend_for(operand_device("cross_entropy_backward", x, w, targets, lse, dx, dw))
      .cross_entropy_backward(x, w, targets, lse, scale, dx, dw, options);
}

void adamw_step(const Tensor& master, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                const Tensor& grad, int64_t step, const AdamWOptions& options,
                const Tensor& weight_out) {
  backend_for(operand_device("adamw_step", master, exp_avg, exp_avg_sq, grad, weight_out))
      .adamw_step(master, exp_avg, exp_avg_sq, grad, step, options, weight_out);
}

double add_sum_of_squares(const Tensor& t, double sum) {
  return backend_for(operand_device("add_sum_of_squares", t)).add_sum_of_squares(t, sum);
}

void decode_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& q_pos,
                      const Tensor& k_pos, Tensor& o, Tensor& lse, int64_t window) {
  backend_for(operand_device("decode_attention", q, k, v, q_pos, k_pos, o, lse))
      .decode_attention(q, k, v, q_pos, k_pos, o, lse, window);
}

void decode_linear(const Tensor& x, const Tensor& w, Tensor& y, float beta) {
  backend_for(operand_device("decode_linear", x, w, y)).decode_linear(x, w, y, beta);
}

}  // namespace tsp::kernels
