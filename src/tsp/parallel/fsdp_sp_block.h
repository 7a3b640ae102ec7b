// One decoder block of the FSDP-over-SP baseline (TSP.md §8, docs/fsdp_sp.md) on this rank's
// zigzag tokens: the layer's full weights arrive as ONE all-gathered buffer of D packed pieces
// (rank order), the projections run block-wise on them (output column block r comes from rank r's
// row block, so nothing is copied), attention all-gathers K|V of every head over the axis. The
// backward writes the full-layer f32 weight gradients in the same piece layout and reduce-scatters
// them to their owners in one call; dK|dV (f32) are reduce-scattered to the token owners.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "tsp/comm/collectives.h"
#include "tsp/comm/communicator.h"
#include "tsp/core/tensor.h"
#include "tsp/model/decoder_block.h"
#include "tsp/model/model_config.h"
#include "tsp/parallel/comm_clock.h"
#include "tsp/parallel/fsdp_sp_weights.h"
#include "tsp/parallel/zigzag_context.h"

namespace tsp::parallel {

// Checks everything an FSDP-over-SP run of `config` at degree D and sequence length S needs
// (S % 2D, S <= max positions, every row count divisible by D) and throws InvalidArgument naming
// the first problem. Allocates nothing: call it on every rank before building anything.
void validate_fsdp_sp(const model::ModelConfig& config, int degree, int64_t seq);

// Per-step constants of one FSDP group: the zigzag step context (geometry, local and gathered
// positions, RoPE table of the local positions, clock), the axis communicator and the piece sizes.
class FsdpSpContext : public ZigzagContext {
 public:
  // Validates (validate_fsdp_sp) before allocating.
  FsdpSpContext(comm::Communicator& comm, const model::ModelConfig& config, DType dtype,
                int64_t batch, int64_t seq, CommClock* clock = nullptr);

  comm::Communicator& comm() const { return *comm_; }
  const FsdpSpSizes& sizes() const { return sizes_; }
  int degree() const { return sizes_.degree; }

 private:
  comm::Communicator* comm_;
  FsdpSpSizes sizes_;
};

// The all-gathers of a sequence of packed pieces, in the order a pass uses them (the layers
// 0..L-1 in the forward, L-1..0 in the backward): acquire(i) returns item i's gathered
// [D * piece] buffer (MemCategory::comm). With prefetch, item i+1's iall_gather is posted before
// acquire(i) returns, into a second buffer, so it travels while item i computes; without, each
// acquire gathers and waits. Waits are timed into the clock.
class PieceGather {
 public:
  PieceGather(comm::Communicator& comm, std::vector<Tensor> pieces, bool prefetch,
              CommClock* clock = nullptr);
  // Items in order 0, 1, ...; the buffer stays valid until acquire(i + 1).
  const Tensor& acquire(size_t i);
  // Full-layer buffers a pass holds: 2 with prefetch and more than one item, else 1.
  static int64_t buffers(size_t items, bool prefetch) { return prefetch && items > 1 ? 2 : 1; }

 private:
  void post(size_t i);

  comm::Communicator& comm_;
  CommClock* clock_;
  std::vector<Tensor> pieces_;
  bool prefetch_;
  std::array<Tensor, 2> bufs_;
  comm::Request pending_;
  int64_t posted_ = -1;  // item whose gather is in flight or done
  size_t next_ = 0;
};

// The saved tensors are exactly model::BlockActivations at T = B S / D local tokens (same column
// layouts: qkv = q | k | v of all heads, gate_up = gate | up), so the activation memory is the
// single-rank model's at S / D tokens.
//
// gathered: [D * piece] the all-gathered layer. x_in [T, h]. x_out [T, h] receives the output; if
// undefined the MLP stops after gate/up (recomputation).
void fsdp_block_forward(const FsdpSpContext& ctx, const Tensor& gathered, const Tensor& x_in,
                        const Tensor& x_out, model::BlockActivations& acts,
                        MemCategory acts_category = MemCategory::activations);

// dx [T, h] f32: dL/dx_out on entry, dL/dx_in on exit. The full-layer f32 gradient is
// reduce-scattered over the axis (one call) and ACCUMULATED into grad_piece ([piece] f32, this
// rank's packed gradient piece). acts is consumed.
void fsdp_block_backward(const FsdpSpContext& ctx, const Tensor& gathered, const Tensor& x_in,
                         const model::BlockActivations& acts, const Tensor& dx,
                         const Tensor& grad_piece);

// full [D * n] f32 (any shape) summed over the axis; this rank's block n is ADDED to piece (f32,
// n elements, contiguous). One reduce_scatter (timed).
void reduce_scatter_add(const FsdpSpContext& ctx, const Tensor& full, const Tensor& piece);
// The full tensor [piece.dim(0) * D, ...] of row-split pieces: one all_gather (timed), comm.
Tensor gather_full(const FsdpSpContext& ctx, const Tensor& piece);

}  // namespace tsp::parallel
