// One decoder block under TSP on this rank's zigzag tokens (TSP.md §4.1, §4.2, §5): attention
// with broadcast weight shards and an all-gather of each head group's K/V, the gated MLP with its
// shards circulating in a ring; backward with the weights obtained again, dK/dV reduce-scattered
// to the token owners, attention weight gradients reduced onto their owner and MLP gradients
// carried around the ring. No all-reduce anywhere.
#pragma once

#include <cstdint>

#include "tsp/comm/communicator.h"
#include "tsp/core/tensor.h"
#include "tsp/model/decoder_block.h"
#include "tsp/model/model_config.h"
#include "tsp/parallel/comm_clock.h"
#include "tsp/parallel/tp_weights.h"
#include "tsp/parallel/zigzag_context.h"

namespace tsp::parallel {

// Checks everything a TSP run of `config` at degree D and sequence length S needs (S % 2D, H % D,
// H_kv % D, F % D, V % D, S <= max positions) and throws InvalidArgument naming the first problem.
// Allocates nothing: call it on every rank before building weights.
void validate_tsp(const model::ModelConfig& config, int degree, int64_t seq);

// Per-step constants of one TSP group: the zigzag step context (geometry, local and gathered
// positions, RoPE table, clock), the communicator of the tsp axis and the shard sizes at its degree.
class TspContext : public ZigzagContext {
 public:
  // Validates (validate_tsp: degree, seq % 2D, head/F/V divisibility, max positions) before
  // allocating. Waits for communication are timed into `clock` when given.
  TspContext(comm::Communicator& comm, const model::ModelConfig& config, DType dtype, int64_t batch,
             int64_t seq, CommClock* clock = nullptr);

  comm::Communicator& comm() const { return *comm_; }
  const TpShardSizes& sizes() const { return sizes_; }
  int degree() const { return sizes_.degree; }
  int rank() const { return zigzag().rank(); }

 private:
  comm::Communicator* comm_;
  TpShardSizes sizes_;
};

// Saved tensors of one TSP block: model::BlockActivations at T = B S / D local tokens, with the
// fused columns grouped by shard instead of by projection:
//   qkv     [T, D * (q_rows + 2 kv_rows)]  block r = q | k | v of head group r (after RoPE)
//   attn    [T, H d]                       head order (group r = columns [r q_rows, ...))
//   lse     [B, H, S/D] f32
//   gate_up [T, 2F]                        block s = gate | up of MLP shard s
//   x_mid   [T, h]
// Same bytes as BlockActivations::bytes(config, dtype, B, S / D).
using TspBlockActivations = model::BlockActivations;

// x_in [T, h]. Fills acts (category acts_category). x_out [T, h] receives the block output; if
// undefined the MLP stops after gate/up (recomputation), still circulating every shard.
void tsp_block_forward(const TspContext& ctx, const TpLayerShard& w, const Tensor& x_in,
                       const Tensor& x_out, TspBlockActivations& acts,
                       MemCategory acts_category = MemCategory::activations);

// dx [T, h] f32: dL/dx_out on entry, dL/dx_in on exit. Gradients (f32, this rank's shards) are
// ACCUMULATED into `grads`; replicated norm gains receive this rank's partial sums only (sum them
// over the group once per step). acts is consumed.
void tsp_block_backward(const TspContext& ctx, const TpLayerShard& w, const Tensor& x_in,
                        const TspBlockActivations& acts, const Tensor& dx, const TpLayerShard& grads);

}  // namespace tsp::parallel
