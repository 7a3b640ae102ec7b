// The shared block pieces of the layouts: one head group's attention and one MLP shard, forward
// and backward, and the K|V exchange over a zigzag sequence axis.
#include "tsp/parallel/layout_kernels.h"

#include "tsp/comm/collectives.h"
#include "tsp/core/check.h"
#include "tsp/kernels/bias.h"
#include "tsp/kernels/flash_attention.h"
#include "tsp/kernels/swiglu.h"

namespace tsp::parallel::layout_kernels {

void mm(const Tensor& a, const Tensor& b, Tensor c, const GemmOptions& options) {
  kernels::gemm(a, b, c, options);
}

kernels::RmsNormOptions norm_options(const model::ModelConfig& c) {
  return {.eps = static_cast<float>(c.rms_norm_eps())};
}

Tensor as_gemm_input(const Tensor& dx_f32, DType dtype) {
  return dtype == DType::f32 ? dx_f32 : Tensor::copy_of(dx_f32, dtype, MemCategory::workspace);
}

Tensor f32_accumulator(const Tensor& out) {
  return out.dtype() == DType::f32 ? out : Tensor::empty(out.shape(), DType::f32, MemCategory::workspace);
}

void finish_accumulator(const Tensor& acc, const Tensor& out) {
  if (acc.dtype() == out.dtype()) return;
  Tensor o = out;
  o.copy_from(acc);
}

Tensor heads_of(const Tensor& fused, int64_t batch, int64_t len, int64_t head_dim, int64_t first,
                int64_t count) {
  return fused.view({batch, len, fused.dim(1) / head_dim, head_dim}).slice(2, first, count);
}

// ---- KvExchange ----

KvExchange::KvExchange(comm::Communicator& comm, CommClock* clock, DType dtype, int64_t batch,
                       int64_t seq, int64_t width)
    : comm_(comm),
      clock_(clock),
      dtype_(dtype),
      batch_(batch),
      seq_(seq),
      local_len_(seq / comm.size()),
      width_(width) {
  send_ = Tensor::empty({batch * local_len_, width}, dtype, MemCategory::comm);
  all_ = Tensor::empty({batch * seq, width}, dtype, MemCategory::comm);
}

void KvExchange::prefetch(const Tensor& kv_local) {
  TSP_ASSERT(!pending_.pending(), "KvExchange: a gather is already in flight");
  send_.copy_from(kv_local);
  pending_ = comm::iall_gather(comm_, send_, all_);
  pending_source_ = kv_local.raw();
}

Tensor KvExchange::gather(const Tensor& kv_local) {
  if (pending_.pending()) {
    TSP_ASSERT(pending_source_ == kv_local.raw(), "KvExchange: gather of other K/V than prefetched");
    ScopedCommWait w(clock_, CommSite::kv_gather);
    pending_.wait();
  } else {
    send_.copy_from(kv_local);
    ScopedCommWait w(clock_, CommSite::kv_gather);
    comm::all_gather(comm_, send_, all_);
  }
  if (!needs_reorder()) return all_.view({batch_, seq_, width_});
  if (!ordered_.defined())
    ordered_ = Tensor::empty({batch_, seq_, width_}, dtype_, MemCategory::workspace);
  reorder(all_, ordered_, /*to_sequence=*/true);
  return ordered_;
}

Tensor KvExchange::reduce_scatter(const Tensor& dkv_full) {
  Tensor in = dkv_full;
  if (needs_reorder()) {
    in = Tensor::empty({batch_ * seq_, width_}, DType::f32, MemCategory::workspace);
    reorder(dkv_full, in, /*to_sequence=*/false);
  }
  Tensor out = Tensor::empty({batch_ * local_len_, width_}, DType::f32, MemCategory::comm);
  ScopedCommWait w(clock_, CommSite::kv_reduce_scatter);
  comm::reduce_scatter(comm_, in, out);
  return out;
}

void KvExchange::reorder(const Tensor& src, const Tensor& dst, bool to_sequence) {
  const Tensor rank_major = (to_sequence ? src : dst).view({comm_.size(), batch_, local_len_, width_});
  const Tensor batch_major = (to_sequence ? dst : src).view({batch_, seq_, width_});
  for (int r = 0; r < comm_.size(); ++r)
    for (int64_t b = 0; b < batch_; ++b) {
      Tensor rm = rank_major.select(0, r).select(0, b);
      Tensor bm = batch_major.select(0, b).slice(0, r * local_len_, local_len_);
      if (to_sequence) bm.copy_from(rm); else rm.copy_from(bm);
    }
}

// ---- one head group ----

namespace {

// [B, len, count, d] heads of a fused [T, W] buffer of the local tokens.
Tensor local_heads(const HeadGroupGeometry& g, const Tensor& fused, int64_t first, int64_t count) {
  return heads_of(fused, g.batch, g.local_len, g.head_dim, first, count);
}

// The group's keys and values ([B, seq, kv_heads, d] each): gathered over the sequence axis, or
// this rank's own k and v when there is no exchange.
struct Keys {
  Tensor k, v;
};
// The group's local k | v columns of the fused qkv buffer: what the exchange gathers.
Tensor local_kv(const HeadGroupGeometry& g, int64_t group, const model::BlockActivations& acts) {
  return acts.qkv.slice(1, group * g.qkv_rows() + g.q_rows(), 2 * g.kv_rows());
}

Keys keys_of(const HeadGroupGeometry& g, int64_t group, const model::BlockActivations& acts,
             KvExchange* kv) {
  const int64_t first = group * (g.heads + 2 * g.kv_heads) + g.heads;  // the group's first k head
  if (kv == nullptr)
    return {local_heads(g, acts.qkv, first, g.kv_heads),
            local_heads(g, acts.qkv, first + g.kv_heads, g.kv_heads)};
  const Tensor all = kv->gather(local_kv(g, group, acts));
  const Tensor kv4 = all.view({g.batch, g.seq, 2 * g.kv_heads, g.head_dim});
  return {kv4.slice(2, 0, g.kv_heads), kv4.slice(2, g.kv_heads, g.kv_heads)};
}

}  // namespace

void head_group_forward(const HeadGroupGeometry& g, int64_t group, const Tensor& n,
                        const AttnShardViews& w, const model::BlockActivations& acts,
                        KvExchange* kv, const Tensor& y) {
  const int64_t G = g.qkv_rows(), first = group * (g.heads + 2 * g.kv_heads);
  mm(n, w.qkv, acts.qkv.slice(1, group * G, G), kXWt);
  if (w.qkv_bias.defined()) kernels::bias_add_forward(acts.qkv.slice(1, group * G, G), w.qkv_bias);
  const Tensor q4 = local_heads(g, acts.qkv, first, g.heads);
  kernels::rope_forward(q4, g.rope);
  kernels::rope_forward(local_heads(g, acts.qkv, first + g.heads, g.kv_heads), g.rope);
  const Keys keys = keys_of(g, group, acts, kv);
  Tensor o4 = local_heads(g, acts.attn, group * g.heads, g.heads);
  Tensor lse = acts.lse.slice(1, group * g.heads, g.heads);
  kernels::flash_attention_forward(q4, keys.k, keys.v, g.q_pos, g.k_pos, o4, lse, g.attention);
  mm(acts.attn.slice(1, group * g.q_rows(), g.q_rows()), w.o, y, kXWtAcc);
}

HeadGroupScratch::HeadGroupScratch(const HeadGroupGeometry& g, DType dtype, bool exchange) {
  dattn = Tensor::empty({g.tokens(), g.q_rows()}, dtype, MemCategory::workspace);
  dqkv = Tensor::empty({g.tokens(), g.qkv_rows()}, dtype, MemCategory::workspace);
  if (exchange)
    dkv_full = Tensor::empty({g.batch, g.seq, 2 * g.kv_rows()}, DType::f32, MemCategory::workspace);
}

void head_group_backward_data(const HeadGroupGeometry& g, int64_t group, const AttnShardViews& w,
                              const model::BlockActivations& acts, const Tensor& dy,
                              KvExchange* kv, const HeadGroupScratch& s, const Tensor& dn,
                              int64_t next_group) {
  const int64_t first = group * (g.heads + 2 * g.kv_heads);
  mm(dy, w.o, s.dattn, kDyW);
  const Keys keys = keys_of(g, group, acts, kv);
  Tensor dq4 = local_heads(g, s.dqkv, 0, g.heads);
  Tensor dk4, dv4;
  if (kv != nullptr) {
    const Tensor dkv4 = s.dkv_full.view({g.batch, g.seq, 2 * g.kv_heads, g.head_dim});
    dk4 = dkv4.slice(2, 0, g.kv_heads);
    dv4 = dkv4.slice(2, g.kv_heads, g.kv_heads);
  } else {
    dk4 = local_heads(g, s.dqkv, g.heads, g.kv_heads);
    dv4 = local_heads(g, s.dqkv, g.heads + g.kv_heads, g.kv_heads);
  }
  kernels::flash_attention_backward(
      local_heads(g, acts.qkv, first, g.heads), keys.k, keys.v,
      local_heads(g, acts.attn, group * g.heads, g.heads),
      s.dattn.view({g.batch, g.local_len, g.heads, g.head_dim}),
      acts.lse.slice(1, group * g.heads, g.heads), g.q_pos, g.k_pos, dq4, dk4, dv4, g.attention);
  if (kv != nullptr && next_group >= 0) kv->prefetch(local_kv(g, next_group, acts));
  if (kv != nullptr)
    s.dqkv.slice(1, g.q_rows(), 2 * g.kv_rows()).copy_from(kv->reduce_scatter(s.dkv_full));
  kernels::rope_backward(dq4, g.rope);
  kernels::rope_backward(local_heads(g, s.dqkv, g.heads, g.kv_heads), g.rope);
  mm(s.dqkv, w.qkv, dn, kDyWAcc);
}

void head_group_backward_weights(const HeadGroupGeometry& g, int64_t group, const Tensor& n,
                                 const Tensor& dy, const model::BlockActivations& acts,
                                 const HeadGroupScratch& s, const AttnShardViews& dw,
                                 const GemmOptions& options) {
  mm(s.dqkv, n, dw.qkv, options);
  if (dw.qkv_bias.defined()) kernels::bias_backward(s.dqkv, dw.qkv_bias, options.beta != 0.f);
  mm(dy, acts.attn.slice(1, group * g.q_rows(), g.q_rows()), dw.o, options);
}

// ---- one MLP shard ----

void mlp_shard_forward(const Tensor& n, const MlpShardViews& w, const Tensor& gate_up,
                       const Tensor& act, const Tensor& y) {
  mm(n, w.gate_up, gate_up, kXWt);
  if (!act.defined()) return;
  const int64_t f = gate_up.dim(1) / 2;
  kernels::swiglu_forward(gate_up.slice(1, 0, f), gate_up.slice(1, f, f), act);
  mm(act, w.down, y, kXWtAcc);
}

void mlp_shard_backward_data(const MlpShardViews& w, const Tensor& gate_up, const Tensor& dy,
                             const Tensor& act, const Tensor& dact, const Tensor& dn) {
  const int64_t f = gate_up.dim(1) / 2;
  const Tensor gate = gate_up.slice(1, 0, f), up = gate_up.slice(1, f, f);
  kernels::swiglu_forward(gate, up, act);
  mm(dy, w.down, dact, kDyW);
  kernels::swiglu_backward(dact, gate, up, gate, up);  // gate_up := [dgate | dup] in place
  mm(gate_up, w.gate_up, dn, kDyWAcc);
}

void mlp_shard_backward_weights(const Tensor& n, const Tensor& gate_up, const Tensor& dy,
                                const Tensor& act, const MlpShardViews& dw) {
  mm(dy, act, dw.down, kDWAcc);
  mm(gate_up, n, dw.gate_up, kDWAcc);
}

}  // namespace tsp::parallel::layout_kernels
