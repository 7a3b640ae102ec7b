// decode_block: rmsnorm, the projections as decode_linear (few rows), RoPE at each token's
// position, the KV cache append and cache_attention, the gated MLP; rounding points as the
// training forward's, so a bf16 decode matches the bf16 forward.
#include "tsp/infer/decode_block.h"

#include "tsp/core/check.h"
#include "tsp/infer/cache_attention.h"
#include "tsp/kernels/bias.h"
#include "tsp/kernels/decode_linear.h"
#include "tsp/kernels/rmsnorm.h"
#include "tsp/kernels/swiglu.h"
#include "tsp/parallel/layout_kernels.h"

namespace tsp::infer {

using parallel::layout_kernels::norm_options;

DecodeLayerViews whole_layer_views(const model::ModelConfig& c, const model::LayerWeights& w) {
  return {.input_norm = w.input_norm, .post_norm = w.post_norm, .q = w.q, .k = w.k, .v = w.v,
          .q_bias = w.q_bias, .k_bias = w.k_bias, .v_bias = w.v_bias, .o = w.o, .gate = w.gate, .up = w.up,
          .down = w.down, .heads = c.num_attention_heads(), .kv_heads = c.num_key_value_heads()};
}

DecodeLayerViews shard_layer_views(const parallel::TpWeights& w, int64_t layer) {
  const model::ModelConfig& c = w.config();
  const parallel::TpShardSizes& s = w.sizes();
  const parallel::TpLayerShard& lw = w.layers()[static_cast<size_t>(layer)];
  const parallel::AttnShardViews a = parallel::attn_views(lw.attn_packed, c, s);
  const parallel::MlpShardViews m = parallel::mlp_views(lw.mlp_packed, c, s);
  // The group's q | k | v rows (and bias entries) are consecutive in the packed buffer.
  auto q_k_v = [&s](const Tensor& t, int64_t which) {
    if (!t.defined()) return Tensor();
    const int64_t first = which == 0 ? 0 : which == 1 ? s.q_rows : s.q_rows + s.kv_rows;
    return t.slice(0, first, which == 0 ? s.q_rows : s.kv_rows);
  };
  return {.input_norm = lw.input_norm, .post_norm = lw.post_norm, .q = q_k_v(a.qkv, 0), .k = q_k_v(a.qkv, 1),
          .v = q_k_v(a.qkv, 2), .q_bias = q_k_v(a.qkv_bias, 0), .k_bias = q_k_v(a.qkv_bias, 1),
          .v_bias = q_k_v(a.qkv_bias, 2), .o = a.o, .gate = m.gate_up.slice(0, 0, s.ffn_rows),
          .up = m.gate_up.slice(0, s.ffn_rows, s.ffn_rows), .down = m.down, .heads = s.heads,
          .kv_heads = s.kv_heads};
}

Tensor decode_qkv(const model::ModelConfig& c, const DecodeLayerViews& w, const kernels::RopeTable& rope,
                  const Tensor& x) {
  const int64_t B = x.dim(0), d = c.head_dim();
  const int64_t q_rows = w.heads * d, kv_rows = w.kv_heads * d;
  Tensor n = Tensor::empty({B, c.hidden_size()}, x.dtype(), MemCategory::workspace);
  kernels::rmsnorm_forward(x, w.input_norm, n, Tensor(), norm_options(c));
  Tensor qkv = Tensor::empty({B, q_rows + 2 * kv_rows}, x.dtype(), MemCategory::workspace);
  Tensor q = qkv.slice(1, 0, q_rows), k = qkv.slice(1, q_rows, kv_rows), v = qkv.slice(1, q_rows + kv_rows, kv_rows);
  kernels::decode_linear(n, w.q, q);
  kernels::decode_linear(n, w.k, k);
  kernels::decode_linear(n, w.v, v);
  if (w.q_bias.defined()) {  // Qwen2, before RoPE
    kernels::bias_add_forward(q, w.q_bias);
    kernels::bias_add_forward(k, w.k_bias);
    kernels::bias_add_forward(v, w.v_bias);
  }
  const Tensor tokens_as_seq = qkv.view({1, B, w.heads + 2 * w.kv_heads, d});
  kernels::rope_forward(tokens_as_seq.slice(2, 0, w.heads), rope);
  kernels::rope_forward(tokens_as_seq.slice(2, w.heads, w.kv_heads), rope);
  return qkv;
}

Tensor decode_attention_block(const model::ModelConfig& c, const DecodeLayerViews& w,
                              const kernels::RopeTable& rope, const Tensor& pos, const Tensor& x, KvCache& cache,
                              int64_t layer, int64_t kv_parts) {
  const int64_t B = x.dim(0), d = c.head_dim(), H = w.heads, Hkv = w.kv_heads;
  const Tensor heads = decode_qkv(c, w, rope, x).view({B, 1, H + 2 * Hkv, d});
  for (int64_t b = 0; b < B; ++b) {
    const int64_t slot = cache.length(b) - 1;  // claimed by the decoder's step
    const Tensor row = heads.slice(0, b, 1);
    cache.k(layer).slice(0, b, 1).slice(1, slot, 1).copy_from(row.slice(2, H, Hkv));
    cache.v(layer).slice(0, b, 1).slice(1, slot, 1).copy_from(row.slice(2, H + Hkv, Hkv));
  }
  Tensor a = Tensor::empty({B, H * d}, x.dtype(), MemCategory::workspace);
  Tensor a4 = a.view({B, 1, H, d});
  Tensor lse = Tensor::empty({B, H, 1}, DType::f32, MemCategory::workspace);
  cache_attention(heads.slice(2, 0, H), pos, cache, layer, a4, lse, kv_parts);
  Tensor y = Tensor::empty({B, c.hidden_size()}, DType::f32, MemCategory::workspace);
  kernels::decode_linear(a, w.o, y);
  return y;
}

Tensor decode_mlp_block(const model::ModelConfig& c, const DecodeLayerViews& w, const Tensor& x) {
  const int64_t B = x.dim(0), f = w.gate.dim(0);
  const DType dt = x.dtype();
  Tensor n = Tensor::empty({B, c.hidden_size()}, dt, MemCategory::workspace);
  kernels::rmsnorm_forward(x, w.post_norm, n, Tensor(), norm_options(c));
  Tensor gate_up = Tensor::empty({B, 2 * f}, dt, MemCategory::workspace);
  Tensor gate = gate_up.slice(1, 0, f), up = gate_up.slice(1, f, f);
  kernels::decode_linear(n, w.gate, gate);
  kernels::decode_linear(n, w.up, up);
  Tensor act = Tensor::empty({B, f}, dt, MemCategory::workspace);
  kernels::swiglu_forward(gate, up, act);
  Tensor y = Tensor::empty({B, c.hidden_size()}, DType::f32, MemCategory::workspace);
  kernels::decode_linear(act, w.down, y);
  return y;
}

void add_f32_into(const Tensor& x, const Tensor& y_f32) {
  TSP_ASSERT(x.is_contiguous() && y_f32.is_contiguous() && y_f32.dtype() == DType::f32 &&
                 x.numel() == y_f32.numel(),
             "add_f32_into: ", x.describe(), " += ", y_f32.describe());
  const float* y = y_f32.data<float>();
  const int64_t n = x.numel();
  if (x.dtype() == DType::f32) {
    float* p = x.data<float>();
    for (int64_t i = 0; i < n; ++i) p[i] += y[i];
    return;
  }
  TSP_ASSERT(x.dtype() == DType::bf16, "add_f32_into: x must be f32 or bf16, got ", x.dtype());
  bf16* p = x.data<bf16>();
  for (int64_t i = 0; i < n; ++i) p[i] = bf16(static_cast<float>(p[i]) + y[i]);
}

}  // namespace tsp::infer
