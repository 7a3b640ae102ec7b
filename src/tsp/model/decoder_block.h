// One Llama decoder block on T = B*S tokens in logical (unsharded) shapes:
//   x_mid = x + o_proj(attn(rope(q), rope(k), v))   with q, k, v = proj(rmsnorm(x))
//   x_out = x_mid + down(silu(gate(n)) * up(n))      with n = rmsnorm(x_mid)
// Forward keeps what the backward needs (BlockActivations); the backward recomputes the cheap
// element-wise pieces (both normed inputs with their rstd, silu(gate) * up). Used by Transformer
// and by the block benchmark; see docs/model.md for the memory formula.
#pragma once

#include <cstdint>

#include "tsp/core/tensor.h"
#include "tsp/kernels/rope.h"
#include "tsp/model/model_config.h"
#include "tsp/model/model_weights.h"

namespace tsp::model {

// Per-step constants shared by every block on this rank: the batch geometry, the global positions
// of this rank's token columns and their RoPE table. Built directly it is the plain model's (all S
// columns, positions 0..S-1); the sequence-sharded layouts' contexts extend it with their token
// partition and communicators (parallel/zigzag_context.h), so there is one step context.
class BlockContext {
 public:
  // dtype: activation storage (f32 or bf16). Allocates the [S] positions and the [S, d/2] table.
  BlockContext(const ModelConfig& config, DType dtype, int64_t batch, int64_t seq);

  const ModelConfig& config() const { return config_; }
  DType dtype() const { return dtype_; }
  int64_t batch() const { return batch_; }
  int64_t seq() const { return seq_; }                 // S, the whole sequence
  int64_t local_len() const { return local_pos_.numel(); }  // this rank's columns per sequence
  int64_t tokens() const { return batch_ * local_len(); }   // T = B * local_len()
  const Tensor& local_positions() const { return local_pos_; }  // [local_len()] i32
  const kernels::RopeTable& rope() const { return rope_; }      // of the local positions

 protected:
  // Throws unless dtype is f32 or bf16 and batch > 0 (naming `who`); allocates nothing. A derived
  // context calls it before it builds the positions it passes below.
  static void check_step(DType dtype, int64_t batch, const char* who);
  // A context over this rank's columns of [B, seq]: local_positions [S_local] i32 are their global
  // positions. `who` names the layout in the errors.
  BlockContext(const ModelConfig& config, DType dtype, int64_t batch, int64_t seq,
               Tensor local_positions, const char* who);

 private:
  ModelConfig config_;
  DType dtype_;
  int64_t batch_, seq_;
  Tensor local_pos_;
  kernels::RopeTable rope_;
};

// What one block saves for its backward (besides its input x), all in the activation dtype
// except lse. The backward CONSUMES these buffers (it writes gradients into qkv's and gate_up's
// storage in place), so a BlockActivations serves exactly one backward.
struct BlockActivations {
  Tensor x_mid;    // [T, h]        residual stream after attention
  Tensor qkv;      // [T, (H + 2 H_kv) d]  q and k after RoPE, v (columns q | k | v)
  Tensor attn;     // [T, H d]      attention output (input of o_proj)
  Tensor lse;      // [B, H, S] f32 attention log-sum-exp
  Tensor gate_up;  // [T, 2 F]      gate and up pre-activations (columns gate | up)

  void reset() { *this = BlockActivations(); }
  // Bytes of the buffers above for a config (equals the sum of their nbytes()).
  static int64_t bytes(const ModelConfig& config, DType dtype, int64_t batch, int64_t seq);
};

// x_in: [T, h] activation dtype. Fills `acts` (category `acts_category`). If x_out is defined
// ([T, h], must not alias x_in) it receives the block output; if undefined, the MLP stops after
// the gate/up projections (what recomputation needs: the down projection's output is not).
void block_forward(const BlockContext& ctx, const LayerWeights& w, const Tensor& x_in,
                   const Tensor& x_out, BlockActivations& acts,
                   MemCategory acts_category = MemCategory::activations);

// dx: [T, h] f32, on entry dL/dx_out, on exit dL/dx_in. Weight gradients (f32) are ACCUMULATED
// into `grads`. x_in and acts are those of the matching block_forward; acts is consumed.
void block_backward(const BlockContext& ctx, const LayerWeights& w, const Tensor& x_in,
                    const BlockActivations& acts, const Tensor& dx, LayerWeights& grads);

}  // namespace tsp::model
