// The pieces of a sharded decode step around a replicated residual stream x [B, h], shared by the
// TSP and TP decoders: vocabulary-sharded embedding and head, head-group projection, MLP slice.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "tsp/comm/communicator.h"
#include "tsp/core/tensor.h"
#include "tsp/kernels/rope.h"
#include "tsp/parallel/comm_clock.h"
#include "tsp/parallel/tp_weights.h"

namespace tsp::infer {

// Both decoders keep x [B, h] identical on every rank of `comm` and hold the TSP partition of the
// weights (parallel::TpWeights of degree comm.size() and rank comm.rank(): head group, MLP slice
// and vocabulary rows of that rank). Weights never move: every function below computes with this
// rank's slice and ends with one collective of B h (or B V / D) values. Waits are timed into
// `clock` when given.

// Checks shared by the decoders, before anything is allocated (InvalidArgument naming `who`, the
// prompt and the numbers): B prompts, each non-empty, ids in [0, V), at most `capacity` tokens.
void check_prompts(const model::ModelConfig& config, const std::vector<std::vector<int32_t>>& prompts,
                   int64_t batch, int64_t capacity, const char* who);
// One token per sequence (B of them), ids in [0, V).
void check_tokens(const model::ModelConfig& config, std::span<const int32_t> tokens, int64_t batch,
                  const char* who);
// Checks that w is rank comm.rank() of a partition of degree comm.size(), batch >= 1 and
// 1 <= capacity <= max_position_embeddings.
void check_decoder(const comm::Communicator& comm, const parallel::TpWeights& w, int64_t batch,
                   int64_t capacity, const char* who);

// y [B, h] f32 (this rank's partial sum of a row-parallel o_proj or down_proj slice) is summed over
// comm in place (all_reduce: 2 (D-1)/D B h f32 per rank), then x += y.
void reduce_into_residual(comm::Communicator& comm, Tensor& y_f32, const Tensor& x,
                          parallel::CommClock* clock);

// x [B, h] in the weights' dtype := embed_tokens rows of `tokens` (ids in [0, V), one per
// sequence): the owner of each id's vocabulary row (id / (V/D)) writes it, the others zeros, then an
// all_reduce (sum; bf16 travels as f32). The table never moves.
Tensor sharded_embedding(comm::Communicator& comm, const parallel::TpWeights& w,
                         std::span<const int32_t> tokens, parallel::CommClock* clock);

// [B, qkv_rows] = q | k | v of this rank's head group for the B rows of x, q and k rotated by
// `rope` (a table of B positions, one per row): decode_block's decode_qkv on the shard.
Tensor project_head_group(const parallel::TpWeights& w, int64_t layer, const Tensor& x,
                          const kernels::RopeTable& rope);

// x += down(silu(gate(n)) * up(n)) with n = rmsnorm(x): this rank's F/D slice gives a [B, h] f32
// partial sum (decode_block's decode_mlp_block), reduced over comm (reduce_into_residual).
void sharded_mlp(comm::Communicator& comm, const parallel::TpWeights& w, int64_t layer,
                 const Tensor& x, parallel::CommClock* clock);

// Logits [B, V] f32, identical on every rank: final rmsnorm of x (replicated), this rank's V/D
// rows of the LM head, all_gather ((D-1) B V/D f32 received per rank), reordered to [B, V].
// Every rank then samples the same token from the same logits and seed.
Tensor sharded_head_logits(comm::Communicator& comm, const parallel::TpWeights& w, const Tensor& x,
                           parallel::CommClock* clock);

}  // namespace tsp::infer
