// The baseline layouts' decoder block and vocabulary-parallel head on one rank of a tp x sp mesh
// (TSP.md §8; docs/baselines.md): Megatron tensor parallelism over tp (column-parallel q|k|v and
// gate|up, row-parallel o and down, activations replicated, an all-reduce after attention and
// after the MLP, and of the input gradients of both in the backward) composed with context
// parallelism over sp (zigzag token shards, replicated weights, K|V of this tp rank's heads
// all-gathered over sp, dK|dV reduce-scattered). Collectives over an axis of size 1 are skipped,
// so tp = 1 is pure SP, sp = 1 pure TP and tp = sp = 1 the single-rank block (DP).
#pragma once

#include <cstdint>

#include "tsp/comm/collectives.h"
#include "tsp/core/tensor.h"
#include "tsp/kernels/cross_entropy.h"
#include "tsp/model/decoder_block.h"
#include "tsp/model/model_config.h"
#include "tsp/parallel/comm_clock.h"
#include "tsp/parallel/layout_kernels.h"
#include "tsp/parallel/tp_weights.h"
#include "tsp/parallel/zigzag_context.h"

namespace tsp::parallel {

// Checks that `config` runs at tp degree T and sp degree S' with sequence length seq (seq <= 0:
// the model only): H % T, H_kv % T, F % T, V % T, seq % 2S', seq <= max positions. Throws
// InvalidArgument naming the first offending size and degree. Allocates nothing.
void validate_tp_sp(const model::ModelConfig& config, int tp, int sp, int64_t seq);

// Per-step constants of one rank of the tp x sp mesh: the zigzag step context over sp (local and
// gathered positions, RoPE table of the local tokens, clock), the two axis communicators and the
// tp shard sizes (TSP's partition at degree T: head group = tp rank).
class TpSpContext : public ZigzagContext {
 public:
  // Validates (validate_tp_sp) before allocating. Waits are timed into `clock` when given.
  TpSpContext(comm::Communicator& tp, comm::Communicator& sp, const model::ModelConfig& config,
              DType dtype, int64_t batch, int64_t seq, CommClock* clock = nullptr);

  comm::Communicator& tp() const { return *tp_; }
  comm::Communicator& sp() const { return *sp_; }
  const TpShardSizes& sizes() const { return sizes_; }  // per tp rank
  int64_t vocab_offset() const { return tp_->rank() * sizes_.vocab_rows; }
  // The attention geometry of this rank's head group (keys gathered over sp when sp > 1).
  layout_kernels::HeadGroupGeometry geometry() const;

  // Sum (or max) of x over tp, in place; nothing when tp has one rank. Timed.
  void tp_all_reduce(Tensor& x, comm::ReduceOp op = comm::ReduceOp::sum) const;
  // The same, posted: finish_tp() waits for it (timed).
  comm::Request start_tp_all_reduce(Tensor& x) const;
  void finish_tp(comm::Request& request) const;

 private:
  comm::Communicator* tp_;
  comm::Communicator* sp_;
  TpShardSizes sizes_;
};

// Saved tensors of one block on this rank: model::BlockActivations for this tp rank's head group
// and MLP shard at T = B S / sp local tokens:
//   x_mid [T, h] (replicated over tp), qkv [T, qkv_rows], attn [T, q_rows],
//   lse [B, H/T, S/sp] f32, gate_up [T, 2F/T].
using TpSpBlockActivations = model::BlockActivations;
// Bytes of the buffers above (docs/baselines.md, "Memory").
int64_t tp_sp_block_activation_bytes(const model::ModelConfig& config, DType dtype, int tp, int sp,
                                     int64_t batch, int64_t seq);

// x_in [T, h] (replicated over tp). x_out [T, h] receives the block output (replicated over tp);
// if undefined the MLP stops after gate/up (recomputation), without its all-reduce.
void tp_sp_block_forward(const TpSpContext& ctx, const TpLayerShard& w, const Tensor& x_in,
                         const Tensor& x_out, TpSpBlockActivations& acts,
                         MemCategory acts_category = MemCategory::activations);

// dx [T, h] f32 (replicated over tp): dL/dx_out on entry, dL/dx_in on exit. Gradients (f32) are
// ACCUMULATED into `grads`: this tp rank's shards of this sp rank's tokens' contribution (sum
// them over sp once per step); the norm gains' gradients are identical on every tp rank. acts is
// consumed.
void tp_sp_block_backward(const TpSpContext& ctx, const TpLayerShard& w, const Tensor& x_in,
                          const TpSpBlockActivations& acts, const Tensor& dx,
                          const TpLayerShard& grads);

// Vocabulary-parallel embedding: out [T, h] := rows of ids [T] (each tp rank looks up the ids of
// its vocabulary rows, zeros elsewhere; then summed over tp). Backward: dtable [V/T, h] f32 +=
// the rows of dout [T, h] f32 whose ids this tp rank owns.
void vocab_parallel_embedding_forward(const TpSpContext& ctx, const Tensor& ids,
                                      const Tensor& table_shard, Tensor& out);
void vocab_parallel_embedding_backward(const TpSpContext& ctx, const Tensor& ids,
                                       const Tensor& dout, const Tensor& dtable_shard);

// Vocabulary-parallel cross-entropy of the local tokens x [T, h] (replicated over tp) against the
// head rows [V/T, h] of this tp rank: each rank folds its slice into a CrossEntropyState, the
// per-token max is all-reduced (max) over tp, then the rescaled sums and the target logits (one
// [2, T] f32 buffer, the target's owner contributing it) are all-reduced (sum). Writes lse [T]
// f32 (the global log-sum-exp, on every tp rank); returns the totals of the local tokens (the
// same on every tp rank).
kernels::CrossEntropyTotals vocab_parallel_ce_forward(const TpSpContext& ctx, const Tensor& x,
                                                      const Tensor& head_shard, const Tensor& targets,
                                                      const Tensor& lse,
                                                      const kernels::CrossEntropyOptions& options);
// Backward: dx [T, h] f32 (ZERO on entry) := the whole gradient (this rank's slice's share summed
// over tp); dhead_shard [V/T, h] f32 += this rank's rows' gradient from the local tokens.
void vocab_parallel_ce_backward(const TpSpContext& ctx, const Tensor& x, const Tensor& head_shard,
                                const Tensor& targets, const Tensor& lse, float scale,
                                Tensor& dx, const Tensor& dhead_shard,
                                const kernels::CrossEntropyOptions& options);

}  // namespace tsp::parallel
