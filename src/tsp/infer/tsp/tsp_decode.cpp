// TspDecoder: the TSP prefill (tsp_block_forward per layer, this rank's real K/V copied into its
// cache) and the weight-stationary decode step (q/k/v exchange, partial attention, merge, MLP).
#include "tsp/infer/tsp/tsp_decode.h"

#include <algorithm>

#include "tsp/comm/collectives.h"
#include "tsp/core/check.h"
#include "tsp/infer/cache_attention.h"
#include "tsp/kernels/decode_linear.h"
#include "tsp/infer/prompt_batch.h"
#include "tsp/infer/sharded/decode_ops.h"
#include "tsp/kernels/softmax_merge.h"
#include "tsp/parallel/tsp_block.h"
#include "tsp/parallel/vocab_parallel.h"
#include "tsp/parallel/zigzag.h"

namespace tsp::infer {

namespace {

using parallel::ScopedCommWait;
using parallel::TpShardSizes;

std::vector<int64_t> lengths_of(const std::vector<std::vector<int32_t>>& prompts) {
  std::vector<int64_t> n;
  for (const auto& p : prompts) n.push_back(static_cast<int64_t>(p.size()));
  return n;
}

// The real (non-padding) rows of one of this rank's two zigzag chunks of one sequence.
struct RealRun {
  int64_t local_row;  // first row in the rank's [S/D] local order
  int64_t position;   // its global position
  int64_t count;      // real tokens of the chunk (a prefix of it)
};
std::vector<RealRun> real_runs(const parallel::Zigzag& z, int64_t len) {
  const int64_t c = z.chunk(), D = z.degree(), r = z.rank();
  std::vector<RealRun> runs;
  for (const int64_t chunk : {r, 2 * D - 1 - r}) {
    const int64_t first = chunk * c;
    const int64_t count = std::clamp<int64_t>(len - first, 0, c);
    if (count > 0) runs.push_back({chunk == r ? 0 : c, first, count});
  }
  return runs;
}

// Copies K (after RoPE) and V of this rank's real prompt tokens of every head group from the
// block's qkv buffer [T, D * (q_rows + 2 kv_rows)] into slots [0, share) of `cache`, compacted.
void store_prompt_kv(const parallel::TspContext& ctx, const Tensor& qkv,
                     std::span<const int64_t> lengths, int64_t layer, KvCache& cache) {
  const TpShardSizes& s = ctx.sizes();
  const int64_t D = ctx.degree(), group_heads = s.heads + 2 * s.kv_heads;
  const Tensor heads = qkv.view({ctx.batch(), ctx.local_len(), D * group_heads, ctx.config().head_dim()});
  for (int64_t b = 0; b < ctx.batch(); ++b) {
    int64_t slot = 0;
    for (const RealRun& run : real_runs(ctx.zigzag(), lengths[static_cast<size_t>(b)])) {
      const Tensor rows = heads.slice(0, b, 1).slice(1, run.local_row, run.count);
      for (int64_t g = 0; g < D; ++g) {
        const int64_t k_first = g * group_heads + s.heads;
        cache.k(layer).slice(0, b, 1).slice(1, slot, run.count).slice(2, g * s.kv_heads, s.kv_heads)
            .copy_from(rows.slice(2, k_first, s.kv_heads));
        cache.v(layer).slice(0, b, 1).slice(1, slot, run.count).slice(2, g * s.kv_heads, s.kv_heads)
            .copy_from(rows.slice(2, k_first + s.kv_heads, s.kv_heads));
      }
      slot += run.count;
    }
  }
}

// Global positions of the slots store_prompt_kv filled, and the local lengths.
void record_prompt_positions(const parallel::Zigzag& z, std::span<const int64_t> lengths,
                             KvCache& cache) {
  int32_t* pos = cache.positions().data<int32_t>();
  for (int64_t b = 0; b < cache.batch(); ++b) {
    int64_t slot = 0;
    for (const RealRun& run : real_runs(z, lengths[static_cast<size_t>(b)]))
      for (int64_t i = 0; i < run.count; ++i)
        pos[b * cache.capacity() + slot++] = static_cast<int32_t>(run.position + i);
    cache.set_length(b, slot);
  }
}

// [B, h] rows of each prompt's last real token, on every rank: its owner contributes the row of
// its local x [B * S/D, h], the others zeros, summed over the group (exact: one term per row).
Tensor last_token_rows(comm::Communicator& comm, const parallel::Zigzag& z, const Tensor& x,
                       std::span<const int64_t> lengths, parallel::CommClock* clock) {
  const auto batch = static_cast<int64_t>(lengths.size());
  const int64_t c = z.chunk(), D = z.degree();
  Tensor out = Tensor::zeros({batch, x.dim(1)}, x.dtype(), MemCategory::workspace);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t pos = lengths[static_cast<size_t>(b)] - 1, chunk = pos / c;
    const int64_t owner = chunk < D ? chunk : 2 * D - 1 - chunk;
    if (owner != z.rank()) continue;
    const int64_t row = (chunk < D ? 0 : c) + pos - chunk * c;
    out.slice(0, b, 1).copy_from(x.slice(0, b * z.local_len() + row, 1));
  }
  ScopedCommWait wait(clock);
  comm::all_reduce(comm, out);
  return out;
}

}  // namespace

TspDecoder::TspDecoder(comm::Communicator& comm, const parallel::TpWeights& w, int64_t batch,
                       int64_t capacity, const DecodeOptions& options)
    : comm_(&comm), w_(&w), batch_(batch), capacity_(capacity), options_(options),
      placement_(comm.size(), std::max<int64_t>(batch, 1)) {
  check_decoder(comm, w, batch, capacity, "TspDecoder");
  TSP_CHECK(options.kv_parts >= 1, "TspDecoder: kv_parts must be >= 1, got ", options.kv_parts);
}

const KvCache& TspDecoder::cache() const {
  TSP_CHECK(cache_.has_value(), "TspDecoder: no KV cache before prefill()");
  return *cache_;
}

int64_t TspDecoder::padded_length(int64_t longest, int degree) {
  const int64_t m = 2 * static_cast<int64_t>(degree);
  return (longest + m - 1) / m * m;
}

int64_t TspDecoder::local_capacity(int degree, std::span<const int64_t> prompt_lengths,
                                   int64_t capacity) {
  int64_t longest = 0, slots = 0;
  for (const int64_t n : prompt_lengths) longest = std::max(longest, n);
  const int64_t seq = padded_length(longest, degree);
  for (const int64_t n : prompt_lengths)
    slots = std::max(slots, TspKvPlacement::slots_needed(n, capacity, seq, degree));
  return slots;
}

Tensor TspDecoder::prefill(const std::vector<std::vector<int32_t>>& prompts) {
  const model::ModelConfig& c = w_->config();
  check_prompts(c, prompts, batch_, capacity_, "TspDecoder::prefill");
  const std::vector<int64_t> lengths = lengths_of(prompts);
  const int64_t seq = padded_length(*std::max_element(lengths.begin(), lengths.end()), comm_->size());
  TSP_CHECK(seq <= c.max_position_embeddings(), "TspDecoder::prefill: the longest prompt, padded to ",
            seq, " tokens (a multiple of 2D = ", 2 * comm_->size(),
            " for the zigzag), exceeds max_position_embeddings ", c.max_position_embeddings());
  cache_.reset();
  cache_.emplace(c, w_->dtype(), batch_, local_capacity(comm_->size(), lengths, capacity_));
  placement_ = TspKvPlacement(comm_->size(), batch_);
  placement_.assign_prompts(lengths, seq);

  const parallel::TspContext ctx(*comm_, c, w_->dtype(), batch_, seq, &clock_);
  const int64_t T = ctx.tokens(), h = c.hidden_size();
  const Tensor ids = ctx.zigzag().take_local(padded_prompts(prompts, seq), MemCategory::workspace);
  Tensor x = Tensor::empty({T, h}, w_->dtype(), MemCategory::activations);
  parallel::VocabExchange(*comm_, ids.view({T}), ctx.sizes().vocab_rows, &clock_).lookup(w_->embed(), x);
  for (int64_t l = 0; l < c.num_hidden_layers(); ++l) {
    Tensor next = Tensor::empty({T, h}, w_->dtype(), MemCategory::activations);
    parallel::TspBlockActivations acts;
    parallel::tsp_block_forward(ctx, w_->layers()[static_cast<size_t>(l)], x, next, acts);
    store_prompt_kv(ctx, acts.qkv, lengths, l, *cache_);
    x = next;  // the block's saved activations are released here
  }
  record_prompt_positions(ctx.zigzag(), lengths, *cache_);
  return sharded_head_logits(*comm_, *w_, last_token_rows(*comm_, ctx.zigzag(), x, lengths, &clock_),
                             &clock_);
}

Tensor TspDecoder::decode_step(std::span<const int32_t> tokens) {
  const model::ModelConfig& c = w_->config();
  TSP_CHECK(cache_.has_value(), "TspDecoder::decode_step: call prefill() first");
  check_tokens(c, tokens, batch_, "TspDecoder::decode_step");
  for (int64_t b = 0; b < batch_; ++b)
    TSP_CHECK(placement_.length(b) < capacity_, "TspDecoder::decode_step: sequence ", b,
              " already holds ", placement_.length(b), " tokens, the capacity (", capacity_,
              " positions); no room for another token");
  // Positions, owners and (on the owner) the slot of every sequence's new token.
  Tensor pos = Tensor::empty({batch_}, DType::i32, MemCategory::workspace);
  std::vector<int> owners(static_cast<size_t>(batch_));
  std::vector<int64_t> slots(static_cast<size_t>(batch_), -1);
  for (int64_t b = 0; b < batch_; ++b) {
    pos.data<int32_t>()[b] = static_cast<int32_t>(placement_.length(b));
    owners[static_cast<size_t>(b)] = placement_.append(b);
    if (owners[static_cast<size_t>(b)] == comm_->rank())
      slots[static_cast<size_t>(b)] = cache_->claim_slot(b, pos.data<int32_t>()[b]);
  }
  const Tensor x = sharded_embedding(*comm_, *w_, tokens, &clock_);
  const kernels::RopeTable rope(pos, c.head_dim(), c.rope_options());
  for (int64_t l = 0; l < c.num_hidden_layers(); ++l) {
    attention(l, x, pos, rope, owners, slots);
    sharded_mlp(*comm_, *w_, l, x, &clock_);
  }
  return sharded_head_logits(*comm_, *w_, x, &clock_);
}

// all_to_all_v of this rank's q|k|v [B, qkv_rows]: its q block to every rank, the k|v row of
// sequence b only to owners[b]. Returns what arrived, rank by rank: [q_i (B q_rows) | k|v_i of
// the sequences this rank owns, in order (2 kv_rows each)].
Tensor TspDecoder::exchange_qkv(const Tensor& qkv, std::span<const int> owners) {
  const TpShardSizes& s = w_->sizes();
  const int D = comm_->size(), me = comm_->rank();
  const int64_t B = batch_, kv = 2 * s.kv_rows;
  std::vector<int64_t> owned(static_cast<size_t>(D), 0);
  for (const int o : owners) ++owned[static_cast<size_t>(o)];
  std::vector<int64_t> send_counts(static_cast<size_t>(D)), recv_counts(static_cast<size_t>(D));
  int64_t send_total = 0;
  for (int j = 0; j < D; ++j) {
    send_counts[static_cast<size_t>(j)] = B * s.q_rows + owned[static_cast<size_t>(j)] * kv;
    recv_counts[static_cast<size_t>(j)] = B * s.q_rows + owned[static_cast<size_t>(me)] * kv;
    send_total += send_counts[static_cast<size_t>(j)];
  }
  Tensor send = Tensor::empty({send_total}, qkv.dtype(), MemCategory::comm);
  int64_t at = 0;
  for (int j = 0; j < D; ++j) {
    send.slice(0, at, B * s.q_rows).view({B, s.q_rows}).copy_from(qkv.slice(1, 0, s.q_rows));
    at += B * s.q_rows;
    for (int64_t b = 0; b < B; ++b) {
      if (owners[static_cast<size_t>(b)] != j) continue;
      send.slice(0, at, kv).view({1, kv}).copy_from(qkv.slice(0, b, 1).slice(1, s.q_rows, kv));
      at += kv;
    }
  }
  Tensor recv = Tensor::empty({D * recv_counts[0]}, qkv.dtype(), MemCategory::comm);
  ScopedCommWait wait(&clock_);
  comm::all_to_all_v(*comm_, send, send_counts, recv, recv_counts);
  return recv;
}

// Rank g's merged attention output [B, q_rows] (weights' dtype) of its head group from the
// partials of every rank: o [B, 1, H, d] and lse [B, H, 1] of this rank's slots. Group g's o (as
// f32) and lse go to rank g in one all_to_all; rank g folds them in rank order with
// kernels::merge_partials (the engine's online-softmax merge), in fp32.
Tensor TspDecoder::merge_head_group(const Tensor& o, const Tensor& lse) {
  const TpShardSizes& s = w_->sizes();
  const int D = comm_->size();
  const int64_t B = batch_, Hg = s.heads, d = w_->config().head_dim();
  const int64_t o_elems = B * Hg * d, block = o_elems + B * Hg;
  Tensor send = Tensor::empty({D * block}, DType::f32, MemCategory::comm);
  for (int g = 0; g < D; ++g) {
    send.slice(0, g * block, o_elems).view({B, 1, Hg, d}).copy_from(o.slice(2, g * Hg, Hg));
    send.slice(0, g * block + o_elems, B * Hg).view({B, Hg, 1}).copy_from(lse.slice(1, g * Hg, Hg));
  }
  Tensor recv = Tensor::empty({D * block}, DType::f32, MemCategory::comm);
  {
    ScopedCommWait wait(&clock_);
    comm::all_to_all(*comm_, send, recv);
  }
  Tensor o_acc = recv.slice(0, 0, o_elems).view({B, 1, Hg, d});
  Tensor lse_acc = recv.slice(0, o_elems, B * Hg).view({B, Hg, 1});
  for (int i = 1; i < D; ++i) {
    const Tensor o_i = recv.slice(0, i * block, o_elems).view({B, 1, Hg, d});
    const Tensor lse_i = recv.slice(0, i * block + o_elems, B * Hg).view({B, Hg, 1});
    kernels::merge_partials(o_acc, lse_acc, o_i, lse_i, o_acc, lse_acc);
  }
  Tensor a = Tensor::empty({B, s.q_rows}, w_->dtype(), MemCategory::workspace);
  a.view({B, 1, Hg, d}).copy_from(o_acc);  // the attention output's rounding point (bf16)
  return a;
}

// x [B, h] += the attention block of `layer` for the B new tokens (steps 1-5 of the header).
void TspDecoder::attention(int64_t layer, const Tensor& x, const Tensor& pos,
                           const kernels::RopeTable& rope, std::span<const int> owners,
                           std::span<const int64_t> slots) {
  const model::ModelConfig& c = w_->config();
  const TpShardSizes& s = w_->sizes();
  const int D = comm_->size();
  const int64_t B = batch_, d = c.head_dim(), H = c.num_attention_heads();
  const Tensor recv = exchange_qkv(project_head_group(*w_, layer, x, rope), owners);

  // Every rank's q into q_all [B, H d] (group i's heads from block i); the k|v rows of the
  // sequences this rank owns into their claimed slots (group i's kv heads from block i).
  Tensor q_all = Tensor::empty({B, H * d}, w_->dtype(), MemCategory::workspace);
  const int64_t block = recv.numel() / D;
  for (int i = 0; i < D; ++i) {
    const Tensor blk = recv.slice(0, i * block, block);
    q_all.slice(1, i * s.q_rows, s.q_rows).copy_from(blk.slice(0, 0, B * s.q_rows).view({B, s.q_rows}));
    int64_t at = B * s.q_rows;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t slot = slots[static_cast<size_t>(b)];
      if (slot < 0) continue;
      const Tensor kv = blk.slice(0, at, 2 * s.kv_rows).view({1, 1, 2 * s.kv_heads, d});
      at += 2 * s.kv_rows;
      cache_->k(layer).slice(0, b, 1).slice(1, slot, 1).slice(2, i * s.kv_heads, s.kv_heads)
          .copy_from(kv.slice(2, 0, s.kv_heads));
      cache_->v(layer).slice(0, b, 1).slice(1, slot, 1).slice(2, i * s.kv_heads, s.kv_heads)
          .copy_from(kv.slice(2, s.kv_heads, s.kv_heads));
    }
  }
  Tensor o = Tensor::empty({B, 1, H, d}, w_->dtype(), MemCategory::workspace);
  Tensor lse = Tensor::empty({B, H, 1}, DType::f32, MemCategory::workspace);
  cache_attention(q_all.view({B, 1, H, d}), pos, *cache_, layer, o, lse, options_.kv_parts);
  const Tensor a = merge_head_group(o, lse);
  Tensor y = Tensor::empty({B, c.hidden_size()}, DType::f32, MemCategory::workspace);
  const parallel::TpLayerShard& lw = w_->layers()[static_cast<size_t>(layer)];
  kernels::decode_linear(a, parallel::attn_views(lw.attn_packed, c, s).o, y);
  reduce_into_residual(*comm_, y, x, &clock_);
}

}  // namespace tsp::infer
