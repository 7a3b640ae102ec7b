// Decoder block forward/backward on the kernel layer: fused q|k|v and gate|up buffers written by
// GEMMs into column slices, RoPE and flash attention on strided views of them, no copies.
#include "tsp/model/decoder_block.h"

#include <utility>

#include "tsp/core/check.h"
#include "tsp/kernels/bias.h"
#include "tsp/kernels/flash_attention.h"
#include "tsp/kernels/gemm.h"
#include "tsp/kernels/rmsnorm.h"
#include "tsp/kernels/swiglu.h"

namespace tsp::model {

namespace {

using kernels::gemm;
using kernels::GemmOptions;

constexpr GemmOptions kXWt{.trans_b = true};                          // y = x @ W^T
constexpr GemmOptions kXWtAcc{.trans_b = true, .beta = 1.f};          // y += x @ W^T
constexpr GemmOptions kDyW{};                                         // dx = dy @ W
constexpr GemmOptions kDyWAcc{.beta = 1.f};                           // dx += dy @ W
constexpr GemmOptions kDW{.trans_a = true, .beta = 1.f};              // dW += dy^T @ x

// [S] i32 0..S-1.
Tensor positions_0_to(int64_t seq) {
  TSP_CHECK(seq > 0, "BlockContext: seq must be positive, got ", seq);
  Tensor p = Tensor::empty({seq}, DType::i32, MemCategory::workspace);
  int32_t* d = p.data<int32_t>();
  for (int64_t i = 0; i < seq; ++i) d[i] = static_cast<int32_t>(i);
  return p;
}

// [T, W] fused buffer -> [B, S, heads, d] view of heads [first, first + count).
Tensor heads_view(const Tensor& fused, int64_t batch, int64_t seq, int64_t head_dim,
                  int64_t first, int64_t count) {
  return fused.view({batch, seq, fused.dim(1) / head_dim, head_dim}).slice(2, first, count);
}

// a += b, both contiguous f32 [T, h].
void add_inplace(const Tensor& a, const Tensor& b) {
  float* pa = a.data<float>();
  const float* pb = b.data<float>();
  const int64_t n = a.numel();
  for (int64_t i = 0; i < n; ++i) pa[i] += pb[i];
}

// The f32 upstream gradient in the GEMM input dtype (bf16 GEMMs need both operands bf16).
Tensor as_gemm_input(const Tensor& dx_f32, DType dtype) {
  return dtype == DType::f32 ? dx_f32 : Tensor::copy_of(dx_f32, dtype, MemCategory::workspace);
}

}  // namespace

void BlockContext::check_step(DType dtype, int64_t batch, const char* who) {
  TSP_CHECK_DTYPE(dtype == DType::f32 || dtype == DType::bf16, who,
                  ": activation dtype must be f32 or bf16, got ", dtype);
  TSP_CHECK(batch > 0, who, ": batch must be positive, got ", batch);
}

BlockContext::BlockContext(const ModelConfig& config, DType dtype, int64_t batch, int64_t seq)
    : BlockContext(config, dtype, batch, seq,
                   (check_step(dtype, batch, "BlockContext"), positions_0_to(seq)),
                   "BlockContext") {}

BlockContext::BlockContext(const ModelConfig& config, DType dtype, int64_t batch, int64_t seq,
                           Tensor local_positions, const char* who)
    : config_(config),
      dtype_(dtype),
      batch_(batch),
      seq_(seq),
      local_pos_(std::move(local_positions)),
      rope_(local_pos_, config.head_dim(), config.rope_options()) {
  check_step(dtype, batch, who);  // the callers checked before building the positions
}

int64_t BlockActivations::bytes(const ModelConfig& c, DType dtype, int64_t batch, int64_t seq) {
  const int64_t t = batch * seq, e = static_cast<int64_t>(dtype_size(dtype));
  const int64_t width = c.hidden_size() + (c.q_dim() + 2 * c.kv_dim()) + c.q_dim() +
                        2 * c.intermediate_size();
  return t * width * e + 4 * batch * c.num_attention_heads() * seq;
}

void block_forward(const BlockContext& ctx, const LayerWeights& w, const Tensor& x_in,
                   const Tensor& x_out, BlockActivations& acts, MemCategory cat) {
  const ModelConfig& c = ctx.config();
  const DType dt = ctx.dtype();
  TSP_ASSERT(ctx.local_len() == ctx.seq(), "the plain block attends over whole sequences; a "
             "sequence-sharded context needs its layout's block");
  const int64_t B = ctx.batch(), S = ctx.local_len(), T = ctx.tokens(), h = c.hidden_size();
  const int64_t H = c.num_attention_heads(), Hkv = c.num_key_value_heads(), d = c.head_dim();
  const int64_t qd = c.q_dim(), kvd = c.kv_dim(), F = c.intermediate_size();
  const kernels::RmsNormOptions norm{.eps = static_cast<float>(c.rms_norm_eps())};

  // Attention: n = rmsnorm(x); [q | k | v] = n @ [Wq; Wk; Wv]^T into one buffer.
  Tensor n = Tensor::empty({T, h}, dt, MemCategory::workspace);
  kernels::rmsnorm_forward(x_in, w.input_norm, n, Tensor(), norm);
  acts.qkv = Tensor::empty({T, qd + 2 * kvd}, dt, cat);
  {
    Tensor q = acts.qkv.slice(1, 0, qd), k = acts.qkv.slice(1, qd, kvd),
           v = acts.qkv.slice(1, qd + kvd, kvd);
    gemm(n, w.q, q, kXWt);
    gemm(n, w.k, k, kXWt);
    gemm(n, w.v, v, kXWt);
    if (c.qkv_bias()) {  // Qwen2: before RoPE, as HF adds them inside the projections
      kernels::bias_add_forward(q, w.q_bias);
      kernels::bias_add_forward(k, w.k_bias);
      kernels::bias_add_forward(v, w.v_bias);
    }
  }
  const Tensor q4 = heads_view(acts.qkv, B, S, d, 0, H);
  const Tensor k4 = heads_view(acts.qkv, B, S, d, H, Hkv);
  const Tensor v4 = heads_view(acts.qkv, B, S, d, H + Hkv, Hkv);
  kernels::rope_forward(q4, ctx.rope());
  kernels::rope_forward(k4, ctx.rope());
  acts.attn = Tensor::empty({T, qd}, dt, cat);
  acts.lse = Tensor::empty({B, H, S}, DType::f32, cat);
  Tensor attn4 = acts.attn.view({B, S, H, d});
  kernels::flash_attention_forward(q4, k4, v4, ctx.local_positions(), ctx.local_positions(), attn4, acts.lse,
                                   c.attention_options());
  acts.x_mid = Tensor::empty({T, h}, dt, cat);
  acts.x_mid.copy_from(x_in);
  gemm(acts.attn, w.o, acts.x_mid, kXWtAcc);

  // MLP: n = rmsnorm(x_mid); [gate | up] = n @ [Wg; Wu]^T; x_out = x_mid + down(silu(g) * u).
  kernels::rmsnorm_forward(acts.x_mid, w.post_norm, n, Tensor(), norm);
  acts.gate_up = Tensor::empty({T, 2 * F}, dt, cat);
  Tensor gate = acts.gate_up.slice(1, 0, F), up = acts.gate_up.slice(1, F, F);
  gemm(n, w.gate, gate, kXWt);
  gemm(n, w.up, up, kXWt);
  n = Tensor();
  if (!x_out.defined()) return;
  Tensor act = Tensor::empty({T, F}, dt, MemCategory::workspace);
  kernels::swiglu_forward(gate, up, act);
  Tensor out = x_out;
  out.copy_from(acts.x_mid);
  gemm(act, w.down, out, kXWtAcc);
}

void block_backward(const BlockContext& ctx, const LayerWeights& w, const Tensor& x_in,
                    const BlockActivations& acts, const Tensor& dx, LayerWeights& g) {
  const ModelConfig& c = ctx.config();
  const DType dt = ctx.dtype();
  TSP_ASSERT(ctx.local_len() == ctx.seq(), "the plain block attends over whole sequences; a "
             "sequence-sharded context needs its layout's block");
  const int64_t B = ctx.batch(), S = ctx.local_len(), T = ctx.tokens(), h = c.hidden_size();
  const int64_t H = c.num_attention_heads(), Hkv = c.num_key_value_heads(), d = c.head_dim();
  const int64_t qd = c.q_dim(), kvd = c.kv_dim(), F = c.intermediate_size();
  const kernels::RmsNormOptions norm{.eps = static_cast<float>(c.rms_norm_eps())};
  TSP_ASSERT(dx.dtype() == DType::f32 && dx.is_contiguous() && dx.dim(0) == T && dx.dim(1) == h,
             "block_backward: dx must be contiguous f32 [T, h], got ", dx.describe());

  Tensor n = Tensor::empty({T, h}, dt, MemCategory::workspace);
  Tensor rstd = Tensor::empty({T}, DType::f32, MemCategory::workspace);
  Tensor dn = Tensor::empty({T, h}, DType::f32, MemCategory::workspace);

  // ---- MLP ----
  {
    Tensor dy = as_gemm_input(dx, dt);
    Tensor gate = acts.gate_up.slice(1, 0, F), up = acts.gate_up.slice(1, F, F);
    Tensor act = Tensor::empty({T, F}, dt, MemCategory::workspace);
    kernels::swiglu_forward(gate, up, act);
    gemm(dy, act, g.down, kDW);             // dWdown += dy^T act
    gemm(dy, w.down, act, kDyW);            // act := d act = dy Wdown
    kernels::swiglu_backward(act, gate, up, gate, up);  // gate_up := [dgate | dup] in place
    act = Tensor();
    dy = Tensor();
    kernels::rmsnorm_forward(acts.x_mid, w.post_norm, n, rstd, norm);
    gemm(gate, n, g.gate, kDW);
    gemm(up, n, g.up, kDW);
    gemm(gate, w.gate, dn, kDyW);
    gemm(up, w.up, dn, kDyWAcc);
    kernels::rmsnorm_backward(dn, acts.x_mid, w.post_norm, rstd, dn, g.post_norm);
    add_inplace(dx, dn);
  }

  // ---- attention ----
  {
    Tensor dy = as_gemm_input(dx, dt);
    gemm(dy, acts.attn, g.o, kDW);          // dWo += dy^T attn
    Tensor dattn = Tensor::empty({T, qd}, dt, MemCategory::workspace);
    gemm(dy, w.o, dattn, kDyW);
    dy = Tensor();
    Tensor dqkv = Tensor::empty({T, qd + 2 * kvd}, dt, MemCategory::workspace);
    Tensor dq4 = heads_view(dqkv, B, S, d, 0, H), dk4 = heads_view(dqkv, B, S, d, H, Hkv),
           dv4 = heads_view(dqkv, B, S, d, H + Hkv, Hkv);
    kernels::flash_attention_backward(
        heads_view(acts.qkv, B, S, d, 0, H), heads_view(acts.qkv, B, S, d, H, Hkv),
        heads_view(acts.qkv, B, S, d, H + Hkv, Hkv), acts.attn.view({B, S, H, d}),
        dattn.view({B, S, H, d}), acts.lse, ctx.local_positions(), ctx.local_positions(), dq4, dk4, dv4,
        c.attention_options());
    dattn = Tensor();
    kernels::rope_backward(dq4, ctx.rope());
    kernels::rope_backward(dk4, ctx.rope());
    Tensor dq = dqkv.slice(1, 0, qd), dk = dqkv.slice(1, qd, kvd),
           dv = dqkv.slice(1, qd + kvd, kvd);
    kernels::rmsnorm_forward(x_in, w.input_norm, n, rstd, norm);
    gemm(dq, n, g.q, kDW);
    gemm(dk, n, g.k, kDW);
    gemm(dv, n, g.v, kDW);
    if (c.qkv_bias()) {
      kernels::bias_backward(dq, g.q_bias, /*accumulate=*/true);
      kernels::bias_backward(dk, g.k_bias, /*accumulate=*/true);
      kernels::bias_backward(dv, g.v_bias, /*accumulate=*/true);
    }
    gemm(dq, w.q, dn, kDyW);
    gemm(dk, w.k, dn, kDyWAcc);
    gemm(dv, w.v, dn, kDyWAcc);
    kernels::rmsnorm_backward(dn, x_in, w.input_norm, rstd, dn, g.input_norm);
    add_inplace(dx, dn);
  }
}

}  // namespace tsp::model
