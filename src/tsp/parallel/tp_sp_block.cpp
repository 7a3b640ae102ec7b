// TP x SP decoder block and vocabulary-parallel embedding / cross-entropy: the shared per-group
// attention and per-shard MLP (layout_kernels.h) on this tp rank's shard and this sp rank's
// zigzag tokens, with Megatron's all-reduces over tp and the K|V exchange over sp.
#include "tsp/parallel/tp_sp_block.h"

#include <cmath>
#include <optional>

#include "tsp/core/check.h"
#include "tsp/kernels/embedding.h"
#include "tsp/kernels/rmsnorm.h"
#include "tsp/parallel/shard_exchange.h"

namespace tsp::parallel {

using namespace layout_kernels;

void validate_tp_sp(const model::ModelConfig& c, int tp, int sp, int64_t seq) {
  TSP_CHECK(tp >= 1 && sp >= 1, "tp+sp: the degrees must be >= 1, got tp=", tp, " sp=", sp);
  auto divisible = [tp](int64_t size, const char* what, const char* why) {
    TSP_CHECK(size % tp == 0, "tp: ", what, "=", size, " is not divisible by the tp degree T=", tp,
              " (", why, ")");
  };
  divisible(c.num_attention_heads(), "num_attention_heads H", "each tp rank owns H/T query heads");
  divisible(c.num_key_value_heads(), "num_key_value_heads H_kv",
            "each tp rank owns H_kv/T key/value heads; H_kv < T is not supported");
  divisible(c.intermediate_size(), "intermediate_size F", "each tp rank owns F/T MLP rows");
  divisible(c.vocab_size(), "vocab_size V",
            "each tp rank owns V/T vocabulary rows; pad the vocabulary to a multiple of T");
  if (seq <= 0) return;
  const int64_t chunks = 2 * static_cast<int64_t>(sp);
  TSP_CHECK(seq % chunks == 0, "sp: sequence length S=", seq, " is not divisible by 2*sp=", chunks,
            " (context parallelism cuts each sequence into 2 sp zigzag chunks); choose S as a "
            "multiple of ", chunks);
  TSP_CHECK(seq <= c.max_position_embeddings(), "tp+sp: sequence length ", seq,
            " exceeds max_position_embeddings ", c.max_position_embeddings());
}

// ---- TpSpContext ----

TpSpContext::TpSpContext(comm::Communicator& tp, comm::Communicator& sp,
                         const model::ModelConfig& config, DType dtype, int64_t batch, int64_t seq,
                         CommClock* clock)
    : ZigzagContext(config, dtype, batch,
                    (validate_tp_sp(config, tp.size(), sp.size(), seq),
                     Zigzag(seq, sp.size(), sp.rank())),
                    clock, "tp+sp"),
      tp_(&tp),
      sp_(&sp),
      sizes_(TpShardSizes::of(config, tp.size())) {}

HeadGroupGeometry TpSpContext::geometry() const {
  return {.batch = batch(),
          .local_len = local_len(),
          .seq = seq(),
          .head_dim = config().head_dim(),
          .heads = sizes_.heads,
          .kv_heads = sizes_.kv_heads,
          .q_pos = local_positions(),
          .k_pos = gathered_positions(),
          .rope = rope(),
          .attention = config().attention_options()};
}

void TpSpContext::tp_all_reduce(Tensor& x, comm::ReduceOp op) const {
  if (tp_->size() == 1) return;
  ScopedCommWait wait(clock(), CommSite::activations);
  comm::all_reduce(*tp_, x, op);
}

comm::Request TpSpContext::start_tp_all_reduce(Tensor& x) const {
  if (tp_->size() == 1) return {};
  return comm::iall_reduce(*tp_, x);
}

void TpSpContext::finish_tp(comm::Request& request) const {
  if (!request.pending()) return;
  ScopedCommWait wait(clock(), CommSite::activations);
  request.wait();
}

int64_t tp_sp_block_activation_bytes(const model::ModelConfig& c, DType dtype, int tp, int sp,
                                     int64_t batch, int64_t seq) {
  validate_tp_sp(c, tp, sp, seq);
  const TpShardSizes s = TpShardSizes::of(c, tp);
  const int64_t local = seq / sp, T = batch * local, e = static_cast<int64_t>(dtype_size(dtype));
  return T * (c.hidden_size() + s.qkv_rows + s.q_rows + 2 * s.ffn_rows) * e +
         4 * batch * s.heads * local;
}

// ---- block ----

namespace {

// The residual enters the tp sum once: y := residual on tp rank 0, 0 elsewhere; every rank then
// adds its partial output and the all-reduce yields residual + the whole output (f32, rounded once).
void carry_residual(const TpSpContext& ctx, Tensor& y, const Tensor& residual) {
  if (ctx.tp().rank() == 0) y.copy_from(residual); else y.zero();
}

std::optional<KvExchange> sp_exchange(const TpSpContext& ctx) {
  if (ctx.sp().size() == 1) return std::nullopt;  // every key is local
  return std::optional<KvExchange>(std::in_place, ctx.sp(), ctx.clock(), ctx.dtype(), ctx.batch(),
                                   ctx.seq(), 2 * ctx.sizes().kv_rows);
}

KvExchange* ptr(std::optional<KvExchange>& kv) { return kv ? &*kv : nullptr; }

void attention_forward(const TpSpContext& ctx, const TpLayerShard& w, const Tensor& x_in,
                       TpSpBlockActivations& acts, MemCategory cat) {
  const model::ModelConfig& c = ctx.config();
  const TpShardSizes& s = ctx.sizes();
  const int64_t T = ctx.tokens(), h = c.hidden_size();
  Tensor n = Tensor::empty({T, h}, ctx.dtype(), MemCategory::workspace);
  kernels::rmsnorm_forward(x_in, w.input_norm, n, Tensor(), norm_options(c));
  acts.qkv = Tensor::empty({T, s.qkv_rows}, ctx.dtype(), cat);
  acts.attn = Tensor::empty({T, s.q_rows}, ctx.dtype(), cat);
  acts.lse = Tensor::empty({ctx.batch(), s.heads, ctx.local_len()}, DType::f32, cat);
  acts.x_mid = Tensor::empty({T, h}, ctx.dtype(), cat);
  Tensor y = f32_accumulator(acts.x_mid);
  carry_residual(ctx, y, x_in);
  std::optional<KvExchange> kv = sp_exchange(ctx);
  head_group_forward(ctx.geometry(), 0, n, attn_views(w.attn_packed, c, s), acts, ptr(kv), y);
  ctx.tp_all_reduce(y);  // Megatron g: the row-parallel o_proj's partial outputs
  finish_accumulator(y, acts.x_mid);
}

void mlp_forward(const TpSpContext& ctx, const TpLayerShard& w, const Tensor& x_out,
                 TpSpBlockActivations& acts, MemCategory cat) {
  const model::ModelConfig& c = ctx.config();
  const TpShardSizes& s = ctx.sizes();
  const int64_t T = ctx.tokens(), h = c.hidden_size();
  Tensor n = Tensor::empty({T, h}, ctx.dtype(), MemCategory::workspace);
  kernels::rmsnorm_forward(acts.x_mid, w.post_norm, n, Tensor(), norm_options(c));
  acts.gate_up = Tensor::empty({T, 2 * s.ffn_rows}, ctx.dtype(), cat);
  Tensor act, y;
  if (x_out.defined()) {
    act = Tensor::empty({T, s.ffn_rows}, ctx.dtype(), MemCategory::workspace);
    y = f32_accumulator(x_out);
    carry_residual(ctx, y, acts.x_mid);
  }
  mlp_shard_forward(n, mlp_views(w.mlp_packed, c, s), acts.gate_up, act, y);
  if (!x_out.defined()) return;
  ctx.tp_all_reduce(y);  // Megatron g: the row-parallel down_proj's partial outputs
  finish_accumulator(y, x_out);
}

void mlp_backward(const TpSpContext& ctx, const TpLayerShard& w, const TpSpBlockActivations& acts,
                  const Tensor& dx, const TpLayerShard& g) {
  const model::ModelConfig& c = ctx.config();
  const TpShardSizes& s = ctx.sizes();
  const DType dt = ctx.dtype();
  const int64_t T = ctx.tokens(), h = c.hidden_size();
  Tensor n = Tensor::empty({T, h}, dt, MemCategory::workspace);
  Tensor rstd = Tensor::empty({T}, DType::f32, MemCategory::workspace);
  kernels::rmsnorm_forward(acts.x_mid, w.post_norm, n, rstd, norm_options(c));
  Tensor dn = Tensor::zeros({T, h}, DType::f32, MemCategory::workspace);
  const Tensor dy = as_gemm_input(dx, dt);
  Tensor act = Tensor::empty({T, s.ffn_rows}, dt, MemCategory::workspace);
  Tensor dact = Tensor::empty({T, s.ffn_rows}, dt, MemCategory::workspace);
  mlp_shard_backward_data(mlp_views(w.mlp_packed, c, s), acts.gate_up, dy, act, dact, dn);
  // Megatron f backward: the gradient entering the column-parallel gate|up is summed over tp,
  // posted before the weight gradients so that they can overlap it.
  comm::Request sum = ctx.start_tp_all_reduce(dn);
  mlp_shard_backward_weights(n, acts.gate_up, dy, act, mlp_views(g.mlp_packed, c, s));
  ctx.finish_tp(sum);
  kernels::rmsnorm_backward(dn, acts.x_mid, w.post_norm, rstd, dn, g.post_norm);
  add_f32(dx, dn);
}

void attention_backward(const TpSpContext& ctx, const TpLayerShard& w, const Tensor& x_in,
                        const TpSpBlockActivations& acts, const Tensor& dx, const TpLayerShard& g) {
  const model::ModelConfig& c = ctx.config();
  const TpShardSizes& s = ctx.sizes();
  const DType dt = ctx.dtype();
  const int64_t T = ctx.tokens(), h = c.hidden_size();
  Tensor n = Tensor::empty({T, h}, dt, MemCategory::workspace);
  Tensor rstd = Tensor::empty({T}, DType::f32, MemCategory::workspace);
  kernels::rmsnorm_forward(x_in, w.input_norm, n, rstd, norm_options(c));
  Tensor dn = Tensor::zeros({T, h}, DType::f32, MemCategory::workspace);
  const Tensor dy = as_gemm_input(dx, dt);
  const HeadGroupGeometry geo = ctx.geometry();
  std::optional<KvExchange> kv = sp_exchange(ctx);
  const HeadGroupScratch scratch(geo, dt, kv.has_value());
  head_group_backward_data(geo, 0, attn_views(w.attn_packed, c, s), acts, dy, ptr(kv), scratch, dn);
  comm::Request sum = ctx.start_tp_all_reduce(dn);  // Megatron f backward (column-parallel q|k|v)
  head_group_backward_weights(geo, 0, n, dy, acts, scratch, attn_views(g.attn_packed, c, s), kDWAcc);
  ctx.finish_tp(sum);
  kernels::rmsnorm_backward(dn, x_in, w.input_norm, rstd, dn, g.input_norm);
  add_f32(dx, dn);
}

}  // namespace

void tp_sp_block_forward(const TpSpContext& ctx, const TpLayerShard& w, const Tensor& x_in,
                         const Tensor& x_out, TpSpBlockActivations& acts, MemCategory cat) {
  attention_forward(ctx, w, x_in, acts, cat);
  mlp_forward(ctx, w, x_out, acts, cat);
}

void tp_sp_block_backward(const TpSpContext& ctx, const TpLayerShard& w, const Tensor& x_in,
                          const TpSpBlockActivations& acts, const Tensor& dx,
                          const TpLayerShard& grads) {
  TSP_ASSERT(dx.dtype() == DType::f32 && dx.is_contiguous() && dx.dim(0) == ctx.tokens(),
             "tp_sp_block_backward: dx must be contiguous f32 [T, h], got ", dx.describe());
  mlp_backward(ctx, w, acts, dx, grads);
  attention_backward(ctx, w, x_in, acts, dx, grads);
}

// ---- vocabulary-parallel embedding and cross-entropy ----

namespace {

kernels::EmbeddingOptions own_rows(const TpSpContext& ctx) {
  return {.row_offset = ctx.vocab_offset(), .out_of_range = kernels::OutOfRangeIds::skip};
}

// Merges every tp rank's (max, sum, target logit) of its vocabulary slice into `state`: the global
// max (all-reduce max), then the sums rescaled to it and the target logits from their owners
// (one all-reduce sum of [2, T]).
void combine_over_tp(const TpSpContext& ctx, const Tensor& targets, kernels::CrossEntropyState& state) {
  const int64_t n = state.size();
  Tensor max = state.max();
  const Tensor local_max = Tensor::copy_of(max, DType::f32, MemCategory::workspace);
  ctx.tp_all_reduce(max, comm::ReduceOp::max);
  Tensor sums = Tensor::empty({2, n}, DType::f32, MemCategory::comm);
  const float *m = max.data<float>(), *lm = local_max.data<float>();
  const float *l = state.sum().data<float>(), *tl = state.target_logit().data<float>();
  const int32_t* tgt = targets.data<int32_t>();
  const int64_t lo = ctx.vocab_offset(), hi = lo + ctx.sizes().vocab_rows;
  float* out = sums.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    out[i] = l[i] * std::exp(lm[i] - m[i]);
    out[n + i] = tgt[i] >= lo && tgt[i] < hi ? tl[i] : 0.f;
  }
  ctx.tp_all_reduce(sums);
  Tensor sum = state.sum(), target = state.target_logit();
  sum.copy_from(sums.select(0, 0));
  target.copy_from(sums.select(0, 1));
}

}  // namespace

void vocab_parallel_embedding_forward(const TpSpContext& ctx, const Tensor& ids,
                                      const Tensor& table_shard, Tensor& out) {
  kernels::embedding_forward(ids, table_shard, out, own_rows(ctx));
  ctx.tp_all_reduce(out);  // one rank holds each row, the others add zeros: exact in any dtype
}

void vocab_parallel_embedding_backward(const TpSpContext& ctx, const Tensor& ids,
                                       const Tensor& dout, const Tensor& dtable_shard) {
  kernels::embedding_backward(ids, dout, dtable_shard, own_rows(ctx));
}

kernels::CrossEntropyTotals vocab_parallel_ce_forward(const TpSpContext& ctx, const Tensor& x,
                                                      const Tensor& head_shard, const Tensor& targets,
                                                      const Tensor& lse,
                                                      const kernels::CrossEntropyOptions& options) {
  TSP_ASSERT(targets.dtype() == DType::i32 && targets.is_contiguous(),
             "vocab_parallel_ce_forward: targets must be contiguous i32, got ", targets.describe());
  kernels::CrossEntropyState state(x.dim(0));
  kernels::cross_entropy_chunk_forward(x, head_shard, ctx.vocab_offset(), targets, state, options);
  if (ctx.tp().size() > 1) combine_over_tp(ctx, targets, state);
  return kernels::cross_entropy_finalize(state, targets, lse, Tensor(), options);
}

void vocab_parallel_ce_backward(const TpSpContext& ctx, const Tensor& x, const Tensor& head_shard,
                                const Tensor& targets, const Tensor& lse, float scale, Tensor& dx,
                                const Tensor& dhead_shard,
                                const kernels::CrossEntropyOptions& options) {
  kernels::cross_entropy_chunk_backward(x, head_shard, ctx.vocab_offset(), targets, lse, scale, dx,
                                        dhead_shard, options);
  ctx.tp_all_reduce(dx);  // Megatron f backward: the head is column-parallel over the vocabulary
}

}  // namespace tsp::parallel
