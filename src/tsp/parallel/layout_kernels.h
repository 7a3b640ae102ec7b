// Pieces of a decoder block that every layout of this directory shares, so that TSP and the
// TP/SP baselines run the same math on the same kernels and differ only in how weights and
// activations move: GEMM shorthands and the f32-accumulation helpers, the K|V exchange over a
// zigzag sequence axis, the attention of ONE head group on this rank's tokens, and the gated MLP
// of ONE inner-dimension shard. TSP (tsp_block.cpp) loops them over broadcast / ring-circulated
// shards; TP+SP (tp_sp_block.cpp) applies its own shard once and all-reduces over tp.
#pragma once

#include <cstdint>

#include "tsp/comm/collectives.h"
#include "tsp/comm/communicator.h"
#include "tsp/core/tensor.h"
#include "tsp/kernels/gemm.h"
#include "tsp/kernels/rmsnorm.h"
#include "tsp/kernels/rope.h"
#include "tsp/model/decoder_block.h"
#include "tsp/model/model_config.h"
#include "tsp/parallel/comm_clock.h"
#include "tsp/parallel/tp_weights.h"

namespace tsp::parallel::layout_kernels {

using kernels::GemmOptions;

inline constexpr GemmOptions kXWt{.trans_b = true};                  // y = x @ W^T
inline constexpr GemmOptions kXWtAcc{.trans_b = true, .beta = 1.f};  // y += x @ W^T
inline constexpr GemmOptions kDyW{};                                 // dx = dy @ W
inline constexpr GemmOptions kDyWAcc{.beta = 1.f};                   // dx += dy @ W
inline constexpr GemmOptions kDWSet{.trans_a = true};                // dW = dy^T @ x
inline constexpr GemmOptions kDWAcc{.trans_a = true, .beta = 1.f};   // dW += dy^T @ x

// kernels::gemm on an output view held by value (the views here are temporaries).
void mm(const Tensor& a, const Tensor& b, Tensor c, const GemmOptions& options);

kernels::RmsNormOptions norm_options(const model::ModelConfig& c);

// The f32 upstream gradient in the GEMM input dtype (bf16 GEMMs need both operands bf16).
Tensor as_gemm_input(const Tensor& dx_f32, DType dtype);

// out itself when f32, else an f32 workspace of its shape (sums of several GEMMs into a bf16
// output would round after every term).
Tensor f32_accumulator(const Tensor& out);
// out := acc, rounded once, when f32_accumulator(out) gave a separate f32 workspace.
void finish_accumulator(const Tensor& acc, const Tensor& out);

// [batch, len, count, d] view of heads [first, first + count) of a contiguous fused buffer
// [batch * len, width] (width a multiple of d).
Tensor heads_of(const Tensor& fused, int64_t batch, int64_t len, int64_t head_dim, int64_t first,
                int64_t count);

// One head group's K|V for the whole sequence of a zigzag axis `comm` (tokens of rank r are
// zigzag shard r of S): this rank's [T, width] is all-gathered (blocks in rank order) and, for
// B > 1, reordered to [B, S, width] so that the attention kernel sees one strided key axis whose
// positions are Zigzag::gathered_positions(). The backward's dK|dV go the reverse way and are
// reduce-scattered (f32) to the owners of the tokens. Waits are timed into `clock`.
class KvExchange {
 public:
  KvExchange(comm::Communicator& comm, CommClock* clock, DType dtype, int64_t batch, int64_t seq,
             int64_t width);

  // kv_local: [T, width] view (k | v of one group, after RoPE). Returns [B, S, width]. When
  // prefetch(kv_local) posted this gather, only waits for it.
  Tensor gather(const Tensor& kv_local);
  // Posts the all-gather of kv_local and returns at once (the backward re-gathers saved K/V, so
  // the next group's gather overlaps this group's remaining work). The previous gather's result
  // must no longer be needed: the receive buffer is reused.
  void prefetch(const Tensor& kv_local);
  // dkv_full: [B, S, width] f32 partial sums in gathered order -> [T, width] f32 sums for this
  // rank's tokens.
  Tensor reduce_scatter(const Tensor& dkv_full);

 private:
  bool needs_reorder() const { return batch_ > 1 && comm_.size() > 1; }
  // rank-major [D, B, S/D, w] <-> batch-major [B, S, w] (rank blocks of S/D rows along S).
  void reorder(const Tensor& src, const Tensor& dst, bool to_sequence);

  comm::Communicator& comm_;
  CommClock* clock_;
  DType dtype_;
  int64_t batch_, seq_, local_len_, width_;
  Tensor send_, all_, ordered_;
  comm::Request pending_;            // a prefetched gather
  const void* pending_source_ = nullptr;  // its kv_local's data
};

// What the attention of one head group needs to know about this rank's tokens.
struct HeadGroupGeometry {
  int64_t batch = 0;
  int64_t local_len = 0;  // this rank's tokens per sequence (S / D of the sequence axis)
  int64_t seq = 0;        // keys per sequence after the exchange (S; local_len without one)
  int64_t head_dim = 0;
  int64_t heads = 0;      // query heads of the group
  int64_t kv_heads = 0;   // key/value heads of the group
  const Tensor& q_pos;    // [local_len] i32 global positions of the local tokens
  const Tensor& k_pos;    // [seq] i32 positions of the keys (gathered order)
  const kernels::RopeTable& rope;  // of q_pos
  kernels::FlashAttentionOptions attention = {};  // causal, and the model's sliding window

  int64_t tokens() const { return batch * local_len; }
  int64_t q_rows() const { return heads * head_dim; }
  int64_t kv_rows() const { return kv_heads * head_dim; }
  int64_t qkv_rows() const { return q_rows() + 2 * kv_rows(); }
};

// Attention of head group `group` on this rank's tokens. acts holds the block's fused buffers with
// the groups side by side: qkv [T, groups * qkv_rows] (group g = q | k | v), attn [T, groups *
// q_rows], lse [B, groups * heads, local_len] f32. Writes the group's q, k (after RoPE) and v, its
// attention output and lse; y [T, h] f32 += attn_g @ w.o^T. With w.qkv_bias (Qwen2) the group's
// q, k, v biases are added to the projection before RoPE. kv: the exchange over the sequence
// axis, or null when every key is local (then the keys are this rank's own k and v).
void head_group_forward(const HeadGroupGeometry& g, int64_t group, const Tensor& n,
                        const AttnShardViews& w, const model::BlockActivations& acts,
                        KvExchange* kv, const Tensor& y);

// Workspace of one head group's backward: dattn [T, q_rows], dqkv [T, qkv_rows] (activation
// dtype), dkv_full [B, seq, 2 kv_rows] f32 (only with an exchange).
struct HeadGroupScratch {
  HeadGroupScratch(const HeadGroupGeometry& g, DType dtype, bool exchange);
  Tensor dattn, dqkv, dkv_full;
};

// Data gradient of head_group_forward: dy [T, h] (GEMM dtype) is dL/dy. Leaves dq | dk | dv
// (after RoPE backward; dK|dV summed over the sequence axis) in s.dqkv and accumulates
// dn [T, h] f32 += dqkv @ w.qkv.
// With an exchange and next_group >= 0, the gather of next_group's K/V is posted as soon as
// this group's attention backward no longer reads the gathered keys.
void head_group_backward_data(const HeadGroupGeometry& g, int64_t group, const AttnShardViews& w,
                              const model::BlockActivations& acts, const Tensor& dy,
                              KvExchange* kv, const HeadGroupScratch& s, const Tensor& dn,
                              int64_t next_group = -1);
// Weight gradient (after head_group_backward_data): dw.qkv = dqkv^T n, dw.o = dy^T attn_g and,
// with dw.qkv_bias, the bias gradient = column sums of dqkv; set or accumulated as `options`
// says (kDWSet / kDWAcc), f32.
void head_group_backward_weights(const HeadGroupGeometry& g, int64_t group, const Tensor& n,
                                 const Tensor& dy, const model::BlockActivations& acts,
                                 const HeadGroupScratch& s, const AttnShardViews& dw,
                                 const GemmOptions& options);

// Gated MLP of one inner-dimension shard: gate_up [T, 2f] := n @ w.gate_up^T; then, unless act is
// undefined (recomputation stops there), act [T, f] := silu(gate) * up and y [T, h] f32 +=
// act @ w.down^T.
void mlp_shard_forward(const Tensor& n, const MlpShardViews& w, const Tensor& gate_up,
                       const Tensor& act, const Tensor& y);
// Data gradient: act := silu(gate) * up (for the weight gradient), gate_up := [dgate | dup] in
// place, dn [T, h] f32 += [dgate | dup] @ w.gate_up. dact [T, f] is workspace.
void mlp_shard_backward_data(const MlpShardViews& w, const Tensor& gate_up, const Tensor& dy,
                             const Tensor& act, const Tensor& dact, const Tensor& dn);
// Weight gradient (after the data gradient): dw.down += dy^T act, dw.gate_up += [dgate|dup]^T n.
void mlp_shard_backward_weights(const Tensor& n, const Tensor& gate_up, const Tensor& dy,
                                const Tensor& act, const MlpShardViews& dw);

}  // namespace tsp::parallel::layout_kernels
