// Memory per category: model state from the parameter share, activations from the engine's formula,
// comm from the schedule's in-flight buffers, workspace from the backward's temporaries.
#include "tsp/plan/memory_model.h"

#include <algorithm>
#include <numeric>

#include "tsp/core/check.h"
#include "tsp/core/checked_math.h"
#include "tsp/plan/param_share.h"

namespace tsp::plan {

int64_t MemoryEstimate::total() const {
  int64_t sum = 0;
  for (const int64_t b : bytes) sum = add_checked(sum, b, "memory total");
  return sum;
}

namespace {

// Per-rank shapes of one micro-batch: local tokens and the widths of the head-sharded tensors.
struct LocalShapes {
  int64_t t;        // tokens held by this rank
  int64_t qkv;      // columns of the saved q|k|v
  int64_t attn;     // columns of the saved attention output
  int64_t ffn;      // F columns held (gate and up each)
  int64_t heads;    // query heads whose lse is saved
  int64_t vocab;    // vocabulary columns this rank's head computes
};

LocalShapes local_shapes(const model::ModelConfig& c, const Workload& w, const Layout& l) {
  const int64_t head_split = (l.kind == LayoutKind::tp || l.kind == LayoutKind::tp_sp) ? l.tp : 1;
  const int64_t vocab_split = l.kind == LayoutKind::tsp ? l.tsp : head_split;
  return {.t = w.tokens() / l.token_shards(),
          .qkv = (c.q_dim() + 2 * c.kv_dim()) / head_split,
          .attn = c.q_dim() / head_split,
          .ffn = c.intermediate_size() / head_split,
          .heads = c.num_attention_heads() / head_split,
          .vocab = c.vocab_size() / vocab_split};
}

int64_t in_flight_micro_batches(const Workload& w, const Layout& l, int64_t stage) {
  return std::min(l.pp - stage, w.micro_batches);
}

void check_fits(const model::ModelConfig& c, const Workload& w, const Layout& l, int64_t stage) {
  validate_sizes(c, w);
  require_divisible(c, w, l);
  TSP_CHECK(stage >= 0 && stage < l.pp, "stage ", stage, " outside pp=", l.pp);
}

// In-flight communication buffers: the largest phase of the schedule.
// staging: the gradient staging buffer of a replica-axis reduction after the backward (0: none);
// the persistent reduce-scatter scratch of the token axis is live then too.
int64_t comm_bytes(const model::ModelConfig& c, const Workload& w, const Layout& l, bool first, bool last,
                   int64_t staging) {
  const int64_t h = c.hidden_size(), T = w.tokens(), kvd = c.kv_dim();
  const int64_t e = w.precision.weight_bytes, g = w.precision.grad_bytes;
  const LocalShapes s = local_shapes(c, w, l);
  switch (l.kind) {
    case LayoutKind::tsp: {
      // Mirrors parallel/tsp_block.cpp, vocab_parallel.cpp and shard_exchange.h: min(2, D-1)
      // receive buffers per circulating/broadcast shard, two f32 accumulators in the backward
      // rings, one head group's K|V (this rank's send copy and the gathered sequence), and in the
      // attention backward the f32 group weight gradient and this rank's dK|dV share; the ring
      // reduce-scatter keeps 2 blocks of scratch from the first dK|dV of >= 64 KiB on; the token
      // ids this rank looks up for others (their expectation, T/D) live through the step.
      const int64_t D = l.tsp, t_loc = T / D, kvw = 2 * kvd / D;
      const int64_t wb = D <= 1 ? 0 : std::min<int64_t>(2, D - 1), gb = D <= 1 ? 0 : 2;
      const int64_t attn = ((2 * c.q_dim() + 2 * kvd) * h + c.bias_params_per_layer()) / D, mlp = 3 * c.intermediate_size() * h / D;
      const int64_t vr = s.vocab * h;
      const int64_t kv = t_loc * kvw * e + T * kvw * e;
      const int64_t scratch = D > 1 && T * kvw * 4 >= (int64_t{64} << 10) ? 2 * t_loc * kvw * 4 : 0;
      const int64_t fwd = std::max(wb * attn * e + kv, wb * mlp * e);
      const int64_t bwd_attn = wb * attn * e + kv + attn * g + t_loc * kvw * 4 + scratch;
      const int64_t bwd_mlp = wb * mlp * e + gb * mlp * g + scratch;
      const int64_t head = last ? wb * vr * e + gb * vr * g : 0;
      return std::max({fwd, bwd_attn, bwd_mlp, head, staging + scratch}) + t_loc * 4;
    }
    case LayoutKind::tp:
    case LayoutKind::sp:
    case LayoutKind::tp_sp:
    case LayoutKind::dp: {
      // TP all-reduces f32 activations in place (the blocks accumulate in f32); the embedding's
      // bf16 output (first stage) through an f32 comm buffer of [t, h]; the cross-entropy's
      // packed (sum, target) all-reduce holds 2t f32. SP: one K|V exchange
      // as TSP's (send copy, gathered sequence, this rank's f32 dK|dV share) for the rank's
      // heads, and the ring reduce-scatter's persistent scratch.
      const int64_t act_e = w.precision.activation_bytes;
      const int64_t reduce = l.tp > 1 ? std::max(act_e == 4 || !first ? 0 : s.t * h * 4, 2 * s.t * 4) : 0;
      int64_t kv = 0, scratch = 0;
      if (l.sp > 1) {
        const int64_t kw = 2 * kvd / l.tp, t = T / l.sp;
        scratch = T * kw * 4 >= (int64_t{64} << 10) ? 2 * t * kw * 4 : 0;
        kv = t * kw * e + T * kw * e + t * kw * 4 + scratch;
      }
      return std::max({reduce, kv, staging + scratch});
    }
    case LayoutKind::fsdp_sp: {
      // As parallel/fsdp_sp_layout.cpp (docs/fsdp_sp.md): b full layers in flight (2 with the
      // prefetch when there is a next layer), K|V of all heads (send copy t kv e, gathered T kv e),
      // in the backward the full-layer f32 gradient, this rank's piece and its dK|dV share; the
      // head phase holds the gathered gain and table with the full f32 table gradient; the ring
      // reduce-scatter keeps 2 output blocks of scratch from its first input of >= 64 KiB on.
      const int64_t D = l.sp, W = fsdp_layer_unit(c), kv = 2 * kvd, t = T / D;
      const int64_t Vh = c.embedding_params();
      const int64_t b = c.num_hidden_layers() / l.pp > 1 ? 2 : 1;
      const int64_t kvx = (t + T) * kv * e;
      const int64_t layer_fwd = b * W * e + kvx;
      const int64_t layer_bwd = b * W * e + 4 * W + kvx + 4 * t * kv;
      const int64_t head = last ? h * e + Vh * e + 4 * Vh + 4 * Vh / D : 0;
      const int64_t emb = first ? 4 * Vh + 4 * Vh / D : 0;
      int64_t block = 0;
      for (const int64_t input : {W, T * kv, Vh})
        if (D > 1 && 4 * input >= (int64_t{64} << 10)) block = std::max(block, input / D);
      const int64_t scratch = 2 * 4 * block;
      return std::max({layer_fwd, layer_bwd, head, emb, staging}) + scratch;
    }
  }
  return 0;
}

// The block backward's temporaries (decoder_block.cpp) or the LM head's, whichever is larger:
// f32 dx and dn, the normed input, rstd, a bf16 copy of dy, and the larger of the MLP's
// activation and the attention's d(attn)+d(qkv); the head: dx, its normed input and one
// vocabulary chunk of f32 logits and their gradient. Kernel-internal scratch is not counted.
int64_t workspace_bytes(const model::ModelConfig& c, const Workload& w, const Layout& l) {
  const LocalShapes s = local_shapes(c, w, l);
  const int64_t h = c.hidden_size(), e = w.precision.activation_bytes;
  // TSP works on one head group / one MLP shard at a time.
  const int64_t split = l.kind == LayoutKind::tsp ? l.tsp : 1;
  const int64_t common = 4 * s.t * h + s.t * h * e + 4 * s.t;  // dx, normed input, rstd
  const int64_t dy_copy = e != 4 ? s.t * h * e : 0;
  const int64_t mlp = s.t * s.ffn / split * e;
  const int64_t attn = s.t * (s.attn + s.qkv) / split * e;
  const int64_t block = common + 4 * s.t * h + dy_copy + std::max(mlp, attn);
  const int64_t head = common + 2 * s.t * std::min(w.vocab_chunk, s.vocab) * 4;
  return std::max(block, head);
}

}  // namespace

int64_t activation_peak_bytes(const model::ModelConfig& c, const Workload& w, const Layout& l,
                              int64_t stage) {
  check_fits(c, w, l, stage);
  const LocalShapes s = local_shapes(c, w, l);
  const int64_t e = w.precision.activation_bytes, h = c.hidden_size();
  const int64_t layers = c.num_hidden_layers() / l.pp;
  const int64_t x = s.t * h * e;
  const int64_t block = s.t * (h + s.qkv + s.attn + 2 * s.ffn) * e + 4 * s.heads * s.t;
  const int64_t lse = stage == l.pp - 1 ? 4 * s.t : 0;
  const int64_t k = in_flight_micro_batches(w, l, stage);
  // As model::predicted_activation_peak_bytes: the residual stream stays alive through the
  // forward; every block's tensors too, or only the one being recomputed.
  if (w.recompute == Recompute::none) return k * ((layers + 1) * x + layers * block) + lse;
  return k * (layers + 1) * x + std::max(block, lse);
}

MemoryEstimate memory_of_stage(const model::ModelConfig& c, const Workload& w, const Layout& l,
                               int64_t stage) {
  check_fits(c, w, l, stage);
  const ParamShare share = param_share(c, l, stage);
  const Precision& p = w.precision;
  MemoryEstimate m;
  m.stage = stage;
  m[MemCategory::weights] = share.total() * p.weight_bytes;
  m[MemCategory::grads] = share.total() * p.grad_bytes;
  m[MemCategory::optimizer] = share.total() * p.optimizer_bytes();
  m[MemCategory::activations] = activation_peak_bytes(c, w, l, stage);
  m[MemCategory::kv_cache] = 0;  // training keeps no KV cache
  // After the backward, gradients summed over a replica axis (dp, or sp for the layouts whose
  // weights are replicated over sp) are packed through one staging buffer of at most 16 MiB
  // (parallel::kGradStagingBytes, sharded_grad.h), while the phase buffers are already freed.
  const bool replicated_over_sp = l.sp > 1 && (l.kind == LayoutKind::sp || l.kind == LayoutKind::tp_sp);
  const int64_t staging = (l.dp > 1 || replicated_over_sp)
                              ? std::min<int64_t>(int64_t{16} << 20, m[MemCategory::grads])
                              : 0;
  // With tied embeddings over stages, the first and last stage exchange the embedding's f32
  // gradient shard after the backward (parallel/pipeline_stage.h), through one receive buffer
  // that is freed before the staging buffer is used.
  const bool ends = stage == 0 || stage == l.pp - 1;
  const int64_t tied_exchange =
      c.tie_word_embeddings() && l.pp > 1 && ends
          ? c.embedding_params() / l.weight_shards() * p.grad_bytes
          : 0;
  m[MemCategory::comm] = comm_bytes(c, w, l, stage == 0, stage == l.pp - 1, std::max(staging, tied_exchange));
  m[MemCategory::workspace] = workspace_bytes(c, w, l);
  return m;
}

MemoryEstimate memory(const model::ModelConfig& c, const Workload& w, const Layout& l) {
  MemoryEstimate worst = memory_of_stage(c, w, l, 0);
  if (l.pp > 1) {
    const MemoryEstimate last = memory_of_stage(c, w, l, l.pp - 1);
    if (last.total() > worst.total()) worst = last;
  }
  return worst;
}

}  // namespace tsp::plan
