// Replicated-residual decode pieces: the decode block (decode_block.h) or decode_linear on this
// rank's weight slice, then one all_reduce (embedding, o_proj, MLP) or all_gather (head logits).
#include "tsp/infer/sharded/decode_ops.h"

#include "tsp/comm/collectives.h"
#include "tsp/core/check.h"
#include "tsp/infer/decode_block.h"
#include "tsp/kernels/decode_linear.h"
#include "tsp/kernels/rmsnorm.h"
#include "tsp/parallel/layout_kernels.h"

namespace tsp::infer {

using parallel::CommClock;
using parallel::ScopedCommWait;
using parallel::TpWeights;
using parallel::layout_kernels::norm_options;

void check_prompts(const model::ModelConfig& c, const std::vector<std::vector<int32_t>>& prompts,
                   int64_t batch, int64_t capacity, const char* who) {
  TSP_CHECK(static_cast<int64_t>(prompts.size()) == batch, who, ": ", prompts.size(),
            " prompts for a decoder of batch ", batch);
  for (size_t b = 0; b < prompts.size(); ++b) {
    const auto n = static_cast<int64_t>(prompts[b].size());
    TSP_CHECK(n > 0, who, ": prompt ", b, " is empty (it needs at least one token, e.g. BOS)");
    TSP_CHECK(n <= capacity, who, ": prompt ", b, " has ", n, " tokens but the capacity is ",
              capacity, " positions");
    for (size_t s = 0; s < prompts[b].size(); ++s) {
      const int32_t id = prompts[b][s];
      TSP_CHECK(id >= 0 && id < c.vocab_size(), who, ": token id ", id, " at [", b, ", ", s,
                "] is outside the vocabulary [0, ", c.vocab_size(), ")");
    }
  }
}

void check_tokens(const model::ModelConfig& c, std::span<const int32_t> tokens, int64_t batch,
                  const char* who) {
  TSP_CHECK(static_cast<int64_t>(tokens.size()) == batch, who, ": ", tokens.size(),
            " tokens for a batch of ", batch);
  for (size_t b = 0; b < tokens.size(); ++b)
    TSP_CHECK(tokens[b] >= 0 && tokens[b] < c.vocab_size(), who, ": token id ", tokens[b],
              " of sequence ", b, " is outside the vocabulary [0, ", c.vocab_size(), ")");
}

void check_decoder(const comm::Communicator& comm, const TpWeights& w, int64_t batch,
                   int64_t capacity, const char* who) {
  TSP_CHECK(w.degree() == comm.size() && w.rank() == comm.rank(), who,
            ": the weights are the shards of rank ", w.rank(), " of ", w.degree(),
            ", but this is rank ", comm.rank(), " of a group of ", comm.size());
  TSP_CHECK(batch >= 1, who, ": batch must be >= 1, got ", batch);
  TSP_CHECK(capacity >= 1 && capacity <= w.config().max_position_embeddings(), who, ": capacity ",
            capacity, " must be in [1, max_position_embeddings ",
            w.config().max_position_embeddings(), "]");
}

void reduce_into_residual(comm::Communicator& comm, Tensor& y_f32, const Tensor& x,
                          CommClock* clock) {
  {
    ScopedCommWait wait(clock);
    comm::all_reduce(comm, y_f32);
  }
  add_f32_into(x, y_f32);
}

Tensor sharded_embedding(comm::Communicator& comm, const TpWeights& w,
                         std::span<const int32_t> tokens, CommClock* clock) {
  const int64_t B = static_cast<int64_t>(tokens.size()), rows = w.sizes().vocab_rows;
  const int64_t first = comm.rank() * rows;
  Tensor x = Tensor::zeros({B, w.config().hidden_size()}, w.dtype(), MemCategory::activations);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t id = tokens[static_cast<size_t>(b)];
    if (id >= first && id < first + rows) x.slice(0, b, 1).copy_from(w.embed().slice(0, id - first, 1));
  }
  ScopedCommWait wait(clock);
  comm::all_reduce(comm, x);  // one non-zero term per row: exact in any dtype
  return x;
}

Tensor project_head_group(const TpWeights& w, int64_t layer, const Tensor& x,
                          const kernels::RopeTable& rope) {
  return decode_qkv(w.config(), shard_layer_views(w, layer), rope, x);
}

void sharded_mlp(comm::Communicator& comm, const TpWeights& w, int64_t layer, const Tensor& x,
                 CommClock* clock) {
  Tensor y = decode_mlp_block(w.config(), shard_layer_views(w, layer), x);
  reduce_into_residual(comm, y, x, clock);
}

Tensor sharded_head_logits(comm::Communicator& comm, const TpWeights& w, const Tensor& x,
                           CommClock* clock) {
  const model::ModelConfig& c = w.config();
  const int64_t B = x.dim(0), D = comm.size(), rows = w.sizes().vocab_rows;
  Tensor n = Tensor::empty({B, c.hidden_size()}, x.dtype(), MemCategory::workspace);
  kernels::rmsnorm_forward(x, w.final_norm(), n, Tensor(), norm_options(c));
  Tensor local = Tensor::empty({B, rows}, DType::f32, MemCategory::workspace);
  kernels::decode_linear(n, w.lm_head(), local);
  Tensor gathered = Tensor::empty({D, B, rows}, DType::f32, MemCategory::workspace);
  {
    ScopedCommWait wait(clock);
    comm::all_gather(comm, local, gathered);
  }
  Tensor logits = Tensor::empty({B, c.vocab_size()}, DType::f32, MemCategory::activations);
  // Block r of the gather holds vocabulary rows [r V/D, (r+1) V/D) of every sequence.
  logits.view({B, D, rows}).copy_from(gathered.transpose(0, 1));
  return logits;
}

}  // namespace tsp::infer
