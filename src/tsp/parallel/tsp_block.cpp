// TSP decoder block: attention over broadcast head-group shards with a per-group K/V all-gather,
// the MLP over ring-circulated shards, and their backward (TSP.md §4-§5; docs/tsp.md). The
// per-group attention and per-shard MLP math is layout_kernels.h, shared with the TP/SP layouts.
#include "tsp/parallel/tsp_block.h"

#include "tsp/comm/collectives.h"
#include "tsp/core/check.h"
#include "tsp/kernels/rmsnorm.h"
#include "tsp/parallel/layout_kernels.h"
#include "tsp/parallel/shard_exchange.h"

namespace tsp::parallel {

namespace {

using namespace layout_kernels;

HeadGroupGeometry geometry(const TspContext& ctx) {
  return {.batch = ctx.batch(),
          .local_len = ctx.local_len(),
          .seq = ctx.seq(),
          .head_dim = ctx.config().head_dim(),
          .heads = ctx.sizes().heads,
          .kv_heads = ctx.sizes().kv_heads,
          .q_pos = ctx.local_positions(),
          .k_pos = ctx.gathered_positions(),
          .rope = ctx.rope(),
          .attention = ctx.config().attention_options()};
}

KvExchange kv_exchange(const TspContext& ctx) {
  return KvExchange(ctx.comm(), ctx.clock(), ctx.dtype(), ctx.batch(), ctx.seq(),
                    2 * ctx.sizes().kv_rows);
}

void attention_forward(const TspContext& ctx, const TpLayerShard& w, const Tensor& x_in,
                       TspBlockActivations& acts, MemCategory cat) {
  const model::ModelConfig& c = ctx.config();
  const TpShardSizes& s = ctx.sizes();
  const int64_t T = ctx.tokens(), h = c.hidden_size(), G = s.qkv_rows, D = ctx.degree();
  Tensor n = Tensor::empty({T, h}, ctx.dtype(), MemCategory::workspace);
  kernels::rmsnorm_forward(x_in, w.input_norm, n, Tensor(), norm_options(c));
  acts.qkv = Tensor::empty({T, D * G}, ctx.dtype(), cat);
  acts.attn = Tensor::empty({T, c.q_dim()}, ctx.dtype(), cat);
  acts.lse = Tensor::empty({ctx.batch(), c.num_attention_heads(), ctx.local_len()}, DType::f32, cat);
  acts.x_mid = Tensor::empty({T, h}, ctx.dtype(), cat);
  // The head groups' o_proj outputs are summed in f32 and rounded once (as one single-rank GEMM).
  Tensor y = f32_accumulator(acts.x_mid);
  y.copy_from(x_in);
  ShardBroadcast weights(ctx.comm(), w.attn_packed, MemCategory::comm, ctx.clock());
  KvExchange kv = kv_exchange(ctx);
  const HeadGroupGeometry g = geometry(ctx);
  for (int r = 0; r < D; ++r)
    head_group_forward(g, r, n, attn_views(weights.acquire(r), c, s), acts, &kv, y);
  finish_accumulator(y, acts.x_mid);
}

void mlp_forward(const TspContext& ctx, const TpLayerShard& w, const Tensor& x_out,
                 TspBlockActivations& acts, MemCategory cat) {
  const model::ModelConfig& c = ctx.config();
  const TpShardSizes& s = ctx.sizes();
  const int64_t T = ctx.tokens(), h = c.hidden_size(), f = s.ffn_rows;
  Tensor n = Tensor::empty({T, h}, ctx.dtype(), MemCategory::workspace);
  kernels::rmsnorm_forward(acts.x_mid, w.post_norm, n, Tensor(), norm_options(c));
  acts.gate_up = Tensor::empty({T, 2 * c.intermediate_size()}, ctx.dtype(), cat);
  Tensor act, y;
  if (x_out.defined()) {
    act = Tensor::empty({T, f}, ctx.dtype(), MemCategory::workspace);
    y = f32_accumulator(x_out);  // the shards' outputs summed in f32, rounded once
    y.copy_from(acts.x_mid);
  }
  ShardRing ring(ctx.comm(), w.mlp_packed, MemCategory::comm, ctx.clock());
  for (int t = 0; t < ctx.degree(); ++t) {
    const MlpShardViews ws = mlp_views(ring.acquire(t), c, s);
    mlp_shard_forward(n, ws, acts.gate_up.slice(1, ring.owner(t) * 2 * f, 2 * f), act, y);
  }
  if (x_out.defined()) finish_accumulator(y, x_out);
}

void mlp_backward(const TspContext& ctx, const TpLayerShard& w, const TspBlockActivations& acts,
                  const Tensor& dx, const TpLayerShard& g) {
  const model::ModelConfig& c = ctx.config();
  const TpShardSizes& s = ctx.sizes();
  const DType dt = ctx.dtype();
  const int64_t T = ctx.tokens(), h = c.hidden_size(), f = s.ffn_rows;
  Tensor n = Tensor::empty({T, h}, dt, MemCategory::workspace);
  Tensor rstd = Tensor::empty({T}, DType::f32, MemCategory::workspace);
  kernels::rmsnorm_forward(acts.x_mid, w.post_norm, n, rstd, norm_options(c));
  Tensor dn = Tensor::zeros({T, h}, DType::f32, MemCategory::workspace);
  const Tensor dy = as_gemm_input(dx, dt);
  Tensor act = Tensor::empty({T, f}, dt, MemCategory::workspace);
  Tensor dact = Tensor::empty({T, f}, dt, MemCategory::workspace);
  ShardRing ring(ctx.comm(), w.mlp_packed, MemCategory::comm, ctx.clock());
  GradRing grads(ctx.comm(), s.mlp_elements, MemCategory::comm, ctx.clock());
  for (int t = 0; t < ctx.degree(); ++t) {
    const MlpShardViews ws = mlp_views(ring.acquire(t), c, s);
    const Tensor gu = acts.gate_up.slice(1, ring.owner(t) * 2 * f, 2 * f);
    // Data gradient first (needs only the weights), then the weight gradient into the accumulator
    // (which, for t >= 1, may still be arriving from rank - 1).
    mlp_shard_backward_data(ws, gu, dy, act, dact, dn);
    const MlpShardViews gs = mlp_views(t == 0 ? g.mlp_packed : grads.acquire(t), c, s);
    mlp_shard_backward_weights(n, gu, dy, act, gs);
    if (t > 0) grads.release(t);
  }
  grads.finish(g.mlp_packed);
  kernels::rmsnorm_backward(dn, acts.x_mid, w.post_norm, rstd, dn, g.post_norm);
  add_f32(dx, dn);
}

void attention_backward(const TspContext& ctx, const TpLayerShard& w, const Tensor& x_in,
                        const TspBlockActivations& acts, const Tensor& dx, const TpLayerShard& g) {
  const model::ModelConfig& c = ctx.config();
  const TpShardSizes& s = ctx.sizes();
  const DType dt = ctx.dtype();
  const int64_t T = ctx.tokens(), h = c.hidden_size(), D = ctx.degree();
  Tensor n = Tensor::empty({T, h}, dt, MemCategory::workspace);
  Tensor rstd = Tensor::empty({T}, DType::f32, MemCategory::workspace);
  kernels::rmsnorm_forward(x_in, w.input_norm, n, rstd, norm_options(c));
  Tensor dn = Tensor::zeros({T, h}, DType::f32, MemCategory::workspace);
  const Tensor dy = as_gemm_input(dx, dt);
  const HeadGroupGeometry geo = geometry(ctx);
  const HeadGroupScratch scratch(geo, dt, /*exchange=*/true);
  Tensor wgrad = Tensor::empty({s.attn_elements}, DType::f32, MemCategory::comm);
  ShardBroadcast weights(ctx.comm(), w.attn_packed, MemCategory::comm, ctx.clock());
  KvExchange kv = kv_exchange(ctx);
  // Group r's weight gradients travel to their owner r while group r + 1's data gradient runs
  // (and group r + 1's K/V gather is posted inside group r's): the waits then absorb the ranks'
  // drift instead of each blocking collective exposing it.
  comm::Request reducing;
  int reducing_root = -1;
  const auto finish_reduce = [&] {
    if (reducing_root < 0) return;
    {
      ScopedCommWait wait(ctx.clock(), CommSite::grad_reduce);
      reducing.wait();
    }
    if (reducing_root == ctx.rank()) add_f32(g.attn_packed, wgrad);
    reducing_root = -1;
  };
  for (int r = 0; r < D; ++r) {
    head_group_backward_data(geo, r, attn_views(weights.acquire(r), c, s), acts, dy, &kv, scratch,
                             dn, r + 1 < D ? r + 1 : -1);
    finish_reduce();  // wgrad is reused below
    // This rank's share of group r's weight gradients, summed onto the owner r in f32.
    head_group_backward_weights(geo, r, n, dy, acts, scratch, attn_views(wgrad, c, s), kDWSet);
    reducing = comm::ireduce(ctx.comm(), wgrad, r);
    reducing_root = r;
  }
  kernels::rmsnorm_backward(dn, x_in, w.input_norm, rstd, dn, g.input_norm);
  finish_reduce();
  add_f32(dx, dn);
}

}  // namespace

void validate_tsp(const model::ModelConfig& config, int degree, int64_t seq) {
  TSP_CHECK(degree >= 1, "tsp: the degree must be >= 1, got ", degree);
  Zigzag::validate(seq, degree);
  TSP_CHECK(seq <= config.max_position_embeddings(), "tsp: sequence length ", seq,
            " exceeds max_position_embeddings ", config.max_position_embeddings());
  (void)TpShardSizes::of(config, degree);
}

TspContext::TspContext(comm::Communicator& comm, const model::ModelConfig& config, DType dtype,
                       int64_t batch, int64_t seq, CommClock* clock)
    : ZigzagContext(config, dtype, batch,
                    (validate_tsp(config, comm.size(), seq), Zigzag(seq, comm.size(), comm.rank())),
                    clock, "tsp"),
      comm_(&comm),
      sizes_(TpShardSizes::of(config, comm.size())) {}

void tsp_block_forward(const TspContext& ctx, const TpLayerShard& w, const Tensor& x_in,
                       const Tensor& x_out, TspBlockActivations& acts, MemCategory cat) {
  attention_forward(ctx, w, x_in, acts, cat);
  mlp_forward(ctx, w, x_out, acts, cat);
}

void tsp_block_backward(const TspContext& ctx, const TpLayerShard& w, const Tensor& x_in,
                        const TspBlockActivations& acts, const Tensor& dx, const TpLayerShard& g) {
  TSP_ASSERT(dx.dtype() == DType::f32 && dx.is_contiguous() && dx.dim(0) == ctx.tokens(),
             "tsp_block_backward: dx must be contiguous f32 [T, h], got ", dx.describe());
  mlp_backward(ctx, w, acts, dx, g);
  attention_backward(ctx, w, x_in, acts, dx, g);
}

}  // namespace tsp::parallel
