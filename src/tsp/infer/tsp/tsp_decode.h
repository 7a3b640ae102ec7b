// Weight-stationary TSP inference (TSP.md §6) on one rank of a TSP group: the prefill is the TSP
// forward keeping this rank's K/V in a sequence-sharded cache; a decode step moves O(h) per layer.
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
#include "tsp/infer/tsp/tsp_kv_placement.h"
#include "tsp/parallel/comm_clock.h"
#include "tsp/parallel/tp_weights.h"

namespace tsp::infer {

// Rank r of D (comm) holds the TSP partition of the weights (parallel::TpWeights: head group r,
// MLP slice r, vocabulary rows r; norm gains replicated) and a KvCache with ALL H_kv heads of the
// tokens it owns (positions recorded per slot, TspKvPlacement says which). Weights never move.
//
// Per decoded token and layer (x [B, h] replicated; e = bytes of the weights' dtype; n_r = the
// sequences whose new position rank r stores; Hg = H/D heads, q_rows = H d / D, kv_rows =
// H_kv d / D), bytes received by rank r:
//   1. n = rmsnorm(x); rank r computes q|k|v of head group r, RoPE at the new positions.
//   2. all_to_all_v: q of group r to every rank, k|v of sequence b only to the rank storing b's
//      new position (which writes them into its cache):   (D-1) e (B q_rows + n_r 2 kv_rows)
//   3. every rank attends all H query heads against the slots it holds (cache_attention): partial
//      o [B, H, d] and lse [B, H] (an empty shard gives the empty partial).
//   4. all_to_all: head group g's partials (o as f32, lse) to rank g:   (D-1) 4 B Hg (d + 1)
//   5. rank g merges the D partials in rank order (kernels::merge_partials, fp32), applies its
//      o_proj columns: y_g [B, h] f32; all_reduce (sum) y, x += y:    2 (D-1)/D 4 B h
//   6. MLP: rank r's F/D slice of gate/up/down, all_reduce (sum) of the [B, h] f32 partials,
//      x += z:                                                        2 (D-1)/D 4 B h
// i.e. (D-1)/D [e B h + 2 e H_kv d n_r + 4 B (h + H) + 16 B h]: O(h), never a weight.
// Once per token (not per layer): the embedding (owners of the ids' rows look them up, all_reduce
// of [B, h], 2 (D-1)/D 4 B h) and the logits (each rank's V/D slice, all_gather of [B, V/D] f32,
// (D-1) 4 B V/D). Sent bytes: the same for 4-6 and the reductions, and for 2
// (D-1) e B q_rows + (B - n_r) e 2 kv_rows.
class TspDecoder final : public Decoder {
 public:
  // comm: the TSP group; w: this rank's shards (degree comm.size(), rank comm.rank()). Room for
  // `batch` sequences of at most `capacity` positions each (prompt + generated tokens, <=
  // max_position_embeddings). Validated; the cache is allocated by prefill(), when the prompt
  // lengths (hence the zigzag shares) are known. comm and w must outlive the decoder.
  TspDecoder(comm::Communicator& comm, const parallel::TpWeights& w, int64_t batch,
             int64_t capacity, const DecodeOptions& options = {});

  // Collective. prompts: B non-empty lists of ids in [0, V), each at most capacity tokens. They
  // are left-aligned in one [B, S_pad] batch, S_pad = the longest prompt rounded UP to a multiple
  // of 2D, padded at the END with kPrefillPadId, and run through the TSP forward
  // (parallel::tsp_block_forward: zigzag tokens, broadcast attention shards, MLP ring). Padding
  // sits after every real token of its row, so no real query sees it (as in the single-rank
  // prefill). Each rank copies K (after RoPE) and V of its REAL tokens only (all heads) into its
  // cache, compacted, with their global positions; padding is never cached. S_pad must not exceed
  // max_position_embeddings. (Re)allocates the cache (local_capacity slots per sequence) and
  // returns the logits [B, V] f32 of each prompt's last token, identical on every rank.
  Tensor prefill(const std::vector<std::vector<int32_t>>& prompts) override;

  // Collective. One token per sequence (ids in [0, V)); the token of sequence b takes position
  // placement().length(b) and is cached by placement().owner_of_next(b). Returns the next-token
  // logits [B, V] f32, identical on every rank. After prefill; a sequence at capacity is refused.
  Tensor decode_step(std::span<const int32_t> tokens) override;

  // The longest prompt rounded up to a multiple of 2D.
  static int64_t padded_length(int64_t longest, int degree);
  // Slots per sequence each rank allocates: the largest TspKvPlacement::slots_needed over the
  // prompts for `capacity` tokens, so KvCache::bytes() per rank is 1/D of a single-rank cache of
  // `capacity` positions within one token's worth whenever capacity - prompt >= 2D - 1.
  static int64_t local_capacity(int degree, std::span<const int64_t> prompt_lengths,
                                int64_t capacity);

  bool prefilled() const { return cache_.has_value(); }
  const KvCache& cache() const override;  // this rank's shard (after prefill)
  const TspKvPlacement& placement() const { return placement_; }
  int64_t batch() const { return batch_; }
  int64_t capacity() const { return capacity_; }
  double comm_wait_seconds() const { return clock_.seconds; }

 private:
  void attention(int64_t layer, const Tensor& x, const Tensor& pos, const kernels::RopeTable& rope,
                 std::span<const int> owners, std::span<const int64_t> slots);
  Tensor exchange_qkv(const Tensor& qkv, std::span<const int> owners);
  Tensor merge_head_group(const Tensor& o, const Tensor& lse);

  comm::Communicator* comm_;
  const parallel::TpWeights* w_;
  int64_t batch_, capacity_;
  DecodeOptions options_;
  parallel::CommClock clock_;
  TspKvPlacement placement_;
  std::optional<KvCache> cache_;
};

}  // namespace tsp::infer
