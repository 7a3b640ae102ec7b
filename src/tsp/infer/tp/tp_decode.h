// Megatron tensor-parallel inference, the baseline of the TSP decode: weights by head group and
// MLP slice, the KV cache by head (each rank caches its H_kv/T heads of every position).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "tsp/comm/communicator.h"
#include "tsp/core/tensor.h"
#include "tsp/infer/decoder.h"
#include "tsp/infer/kv_cache.h"
#include "tsp/kernels/rope.h"
#include "tsp/parallel/comm_clock.h"
#include "tsp/parallel/tp_weights.h"

namespace tsp::infer {

// Rank r of T (comm) holds the same weight partition as TSP at degree T (parallel::TpWeights:
// head group r, MLP slice r, vocabulary rows r) and a KvCache of head group r only: H/T query and
// H_kv/T key/value heads of every position, exactly 1/T of the single-rank cache.
//
// Per decoded token and layer (x [B, h] replicated), bytes received by every rank:
//   rank r: q|k|v of head group r, RoPE, k|v into its cache, attention of its H/T heads over all
//   positions, y_r = attn_r @ o_proj columns r (f32); all_reduce (sum) y, x += y:  2 (T-1)/T 4 B h
//   MLP slice r, all_reduce (sum) of the [B, h] f32 partials, x += z:              2 (T-1)/T 4 B h
// i.e. 16 (T-1)/T B h; once per token the embedding and the logits exactly as TspDecoder.
class TpDecoder final : public Decoder {
 public:
  // comm: the tp group; w: this rank's shards (degree comm.size(), rank comm.rank()). Room for
  // `batch` sequences of at most `capacity` positions each (<= max_position_embeddings). Collective
  // (it splits an sp communicator of one rank off comm); comm and w must outlive the decoder.
  TpDecoder(comm::Communicator& comm, const parallel::TpWeights& w, int64_t batch,
            int64_t capacity, const DecodeOptions& options = {});

  // Collective. The tensor-parallel forward (parallel::tp_sp_block_forward over an sp axis of one
  // rank, which needs an even length) over the prompts left-aligned and padded at the end with
  // kPrefillPadId to S_pad = the longest prompt rounded up to even; this rank's heads' K (after
  // RoPE) and V of the real tokens go to slots [0, len_b). (Re)allocates the cache (capacity
  // slots) and returns the last tokens' logits [B, V] f32, identical on every rank.
  Tensor prefill(const std::vector<std::vector<int32_t>>& prompts) override;
  // Collective. One token per sequence at position cache().length(b), cached by every rank (its
  // heads). Returns the next-token logits [B, V] f32, identical on every rank.
  Tensor decode_step(std::span<const int32_t> tokens) override;

  // The configuration of one head group (h/T, H/T, H_kv/T; same head_dim and layers): the shape
  // of this rank's KvCache.
  static model::ModelConfig head_group_config(const model::ModelConfig& config, int degree);

  bool prefilled() const { return cache_.has_value(); }
  const KvCache& cache() const override;
  int64_t batch() const { return batch_; }
  int64_t capacity() const { return capacity_; }
  double comm_wait_seconds() const { return clock_.seconds; }

 private:
  void attention(int64_t layer, const Tensor& x, const Tensor& pos, const kernels::RopeTable& rope);

  comm::Communicator* comm_;
  comm::Communicator self_;  // an sp axis of one rank for TpSpContext (the self transport)
  const parallel::TpWeights* w_;
  int64_t batch_, capacity_;
  DecodeOptions options_;
  parallel::CommClock clock_;
  std::optional<KvCache> cache_;
};

}  // namespace tsp::infer
