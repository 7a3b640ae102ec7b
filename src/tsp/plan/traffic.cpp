// Per-collective traffic of every layout: the TSP schedule of TSP.md §4-§5, Megatron TP, SP (context
// parallel), their product, FSDP over SP and DP. Formulas and derivations: docs/planner.md.
#include "tsp/plan/traffic.h"

#include <algorithm>

#include "tsp/core/check.h"
#include "tsp/plan/param_share.h"

namespace tsp::plan {

int64_t RankCoords::on(Axis axis) const {
  switch (axis) {
    case Axis::dp: return dp;
    case Axis::pp: return pp;
    case Axis::sp: return sp;
    case Axis::tp: return tp;
    case Axis::tsp: return tsp;
  }
  return 0;
}

TrafficTotals& TrafficTotals::operator+=(const CollectiveTraffic& t) {
  calls += t.calls;
  bytes_sent += t.bytes_sent;
  bytes_received += t.bytes_received;
  return *this;
}

TrafficTotals totals(const PhaseTraffic& phase) {
  TrafficTotals s;
  for (const CollectiveTraffic& t : phase) s += t;
  return s;
}

TrafficTotals totals(const PhaseTraffic& phase, Axis axis) {
  TrafficTotals s;
  for (const CollectiveTraffic& t : phase) {
    if (t.axis == axis) s += t;
  }
  return s;
}

TrafficTotals totals(const PhaseTraffic& phase, Axis axis, CollectiveOp op) {
  TrafficTotals s;
  for (const CollectiveTraffic& t : phase) {
    if (t.axis == axis && t.op == op) s += t;
  }
  return s;
}

TrafficTotals micro_batch_totals(const LayerTraffic& layer, const StepTraffic& step, int64_t layers) {
  TrafficTotals s;
  for (const PhaseTraffic* p : {&layer.forward, &layer.backward, &layer.recompute}) {
    const TrafficTotals t = totals(*p);
    s.calls += layers * t.calls;
    s.bytes_sent += layers * t.bytes_sent;
    s.bytes_received += layers * t.bytes_received;
  }
  for (const PhaseTraffic* p : {&step.forward, &step.backward, &step.pipeline}) {
    for (const CollectiveTraffic& t : *p) s += t;
  }
  return s;
}

double message_bytes(const CollectiveTraffic& t) {
  if (t.calls <= 0) return 0;
  const double calls = static_cast<double>(t.calls), g = static_cast<double>(std::max<int64_t>(2, t.group));
  const double sent = static_cast<double>(t.bytes_sent), received = static_cast<double>(t.bytes_received);
  switch (t.op) {
    case CollectiveOp::send:
    case CollectiveOp::recv:
    case CollectiveOp::sendrecv: return std::max(sent, received) / calls;
    case CollectiveOp::broadcast: return (sent / (g - 1) + received) / calls;
    case CollectiveOp::reduce: return (sent + received) / calls * g / (2 * (g - 1));
    default: return std::max(sent, received) / calls / (g - 1);
  }
}

namespace {

// Sizes of one micro-batch in elements, and the wire sizes.
struct Dims {
  int64_t h, qd, kvd, F, V, T;  // T = B * S tokens of one micro-batch of one replica
  int64_t bias;                 // q/k/v bias entries of a layer (Qwen2), else 0
  int64_t e;                    // weight / activation bytes
  int64_t grad;                 // gradient wire bytes (f32)
  int64_t reduce;               // wire bytes of reductions of activations and their gradients
};

Dims dims_of(const model::ModelConfig& c, const Workload& w) {
  TSP_CHECK(w.precision.weight_bytes == w.precision.activation_bytes,
            "the engine stores weights and activations in one dtype; got weight bytes ",
            w.precision.weight_bytes, " and activation bytes ", w.precision.activation_bytes);
  return {.h = c.hidden_size(), .qd = c.q_dim(), .kvd = c.kv_dim(), .F = c.intermediate_size(),
          .V = c.vocab_size(), .T = w.tokens(), .bias = c.bias_params_per_layer(), .e = w.precision.activation_bytes,
          .grad = w.precision.grad_bytes, .reduce = w.precision.reduce_bytes};
}

// Appends one entry; a group of one rank moves nothing and is left out.
void add(PhaseTraffic& out, std::string what, Axis axis, CollectiveOp op, int64_t group,
         int64_t calls, Bytes bytes, bool overlaps) {
  if (group <= 1 || calls == 0) return;
  out.push_back({.what = std::move(what), .axis = axis, .op = op, .group = group, .calls = calls,
                 .bytes_sent = bytes.sent, .bytes_received = bytes.received,
                 .overlaps_compute = overlaps});
}

std::vector<int64_t> balanced_counts(int64_t n, int64_t group) {
  std::vector<int64_t> v(static_cast<size_t>(group));
  for (int64_t r = 0; r < group; ++r) v[static_cast<size_t>(r)] = balanced_block(n, group, r);
  return v;
}

// ---- TSP (TSP.md §4-§5), axis tsp of degree D, this rank p ----

// Packed attention shard of one head group: q, k, v rows and o columns (and q, k, v biases).
int64_t tsp_attention_shard(const Dims& d, int64_t D) {
  return ((2 * d.qd + 2 * d.kvd) * d.h + d.bias) / D;
}
int64_t tsp_mlp_shard(const Dims& d, int64_t D) { return 3 * d.F * d.h / D; }
// One rank's K|V block of one head group: its T/D tokens, 2 kvd / D columns.
int64_t tsp_kv_block(const Dims& d, int64_t D) { return d.T / D * 2 * d.kvd / D; }

void tsp_broadcast_shards(PhaseTraffic& out, const Dims& d, int64_t D, int64_t p) {
  Bytes b;
  for (int64_t r = 0; r < D; ++r) b += ledger_broadcast(tsp_attention_shard(d, D) * d.e, D, r == p);
  add(out, "attention shard (q,k,v rows + o columns of head group r)", Axis::tsp,
      CollectiveOp::broadcast, D, D, b, true);
}

void tsp_gather_kv(PhaseTraffic& out, const Dims& d, int64_t D) {
  add(out, "K|V of head group r (all tokens)", Axis::tsp, CollectiveOp::all_gather, D, D,
      D * ledger_all_gather(tsp_kv_block(d, D), d.e, D), true);
}

void tsp_ring_mlp(PhaseTraffic& out, const Dims& d, int64_t D, int64_t bytes_per_element,
                  const char* what) {
  add(out, what, Axis::tsp, CollectiveOp::sendrecv, D, D - 1,
      (D - 1) * ledger_sendrecv(tsp_mlp_shard(d, D) * bytes_per_element, D), true);
}

PhaseTraffic tsp_layer_forward(const Dims& d, int64_t D, int64_t p) {
  PhaseTraffic out;
  tsp_broadcast_shards(out, d, D, p);
  tsp_gather_kv(out, d, D);
  tsp_ring_mlp(out, d, D, d.e, "MLP shard (gate, up rows + down columns)");
  return out;
}

PhaseTraffic tsp_layer_backward(const Dims& d, int64_t D, int64_t p) {
  PhaseTraffic out;
  tsp_broadcast_shards(out, d, D, p);
  tsp_gather_kv(out, d, D);
  add(out, "dK|dV of head group r to the token owners", Axis::tsp, CollectiveOp::reduce_scatter,
      D, D, D * ledger_reduce_scatter(tsp_kv_block(d, D), d.grad, D), true);
  add(out, "attention shard gradient to its owner r", Axis::tsp, CollectiveOp::reduce, D, D,
      D * ledger_reduce(tsp_attention_shard(d, D), d.grad, D, p), true);
  tsp_ring_mlp(out, d, D, d.e, "MLP shard (gate, up rows + down columns)");
  tsp_ring_mlp(out, d, D, d.grad, "MLP gradient accumulator");
  return out;
}

// ---- Megatron TP (axis tp) x SP (axis sp): tokens t = T / sp per rank, heads / tp ----

PhaseTraffic tp_sp_layer_forward(const Dims& d, const Layout& l, const RankCoords& r) {
  PhaseTraffic out;
  const int64_t t = d.T / l.sp;
  add(out, "attention output (row-parallel o_proj)", Axis::tp, CollectiveOp::all_reduce, l.tp, 1,
      ledger_all_reduce(t * d.h, d.reduce, l.tp, r.tp), false);
  add(out, "MLP output (row-parallel down_proj)", Axis::tp, CollectiveOp::all_reduce, l.tp, 1,
      ledger_all_reduce(t * d.h, d.reduce, l.tp, r.tp), false);
  add(out, "K|V of this rank's heads (all tokens)", Axis::sp, CollectiveOp::all_gather, l.sp, 1,
      ledger_all_gather(t * 2 * d.kvd / l.tp, d.e, l.sp), false);
  return out;
}

PhaseTraffic tp_sp_layer_backward(const Dims& d, const Layout& l, const RankCoords& r) {
  PhaseTraffic out;
  const int64_t t = d.T / l.sp;
  add(out, "input gradient of gate/up (column-parallel)", Axis::tp, CollectiveOp::all_reduce, l.tp,
      1, ledger_all_reduce(t * d.h, d.reduce, l.tp, r.tp), false);
  add(out, "input gradient of q/k/v (column-parallel)", Axis::tp, CollectiveOp::all_reduce, l.tp,
      1, ledger_all_reduce(t * d.h, d.reduce, l.tp, r.tp), false);
  add(out, "K|V of this rank's heads (all tokens)", Axis::sp, CollectiveOp::all_gather, l.sp, 1,
      ledger_all_gather(t * 2 * d.kvd / l.tp, d.e, l.sp), false);
  add(out, "dK|dV to the token owners", Axis::sp, CollectiveOp::reduce_scatter, l.sp, 1,
      ledger_reduce_scatter(t * 2 * d.kvd / l.tp, d.grad, l.sp), false);
  return out;
}

// ---- FSDP over SP (axis sp of degree D) ----

void fsdp_kv(PhaseTraffic& out, const Dims& d, int64_t D, bool backward) {
  const int64_t t = d.T / D;
  add(out, "K|V of all heads (all tokens)", Axis::sp, CollectiveOp::all_gather, D, 1,
      ledger_all_gather(t * 2 * d.kvd, d.e, D), false);
  if (backward) {
    add(out, "dK|dV to the token owners", Axis::sp, CollectiveOp::reduce_scatter, D, 1,
        ledger_reduce_scatter(t * 2 * d.kvd, d.grad, D), false);
  }
}

void fsdp_gather_unit(PhaseTraffic& out, const char* what, int64_t unit, int64_t wire, int64_t D,
                      int64_t rank) {
  if (unit == 0) return;
  add(out, what, Axis::sp, CollectiveOp::all_gather, D, 1,
      ledger_all_gather(balanced_counts(unit, D), wire, rank), true);
}

void fsdp_scatter_grad(PhaseTraffic& out, const char* what, int64_t unit, int64_t wire, int64_t D,
                       int64_t rank) {
  if (unit == 0) return;
  add(out, what, Axis::sp, CollectiveOp::reduce_scatter, D, 1,
      ledger_reduce_scatter(balanced_counts(unit, D), wire, rank), true);
}

void check_rank(const Layout& l, const RankCoords& r) {
  for (Axis a : kAxes) {
    TSP_CHECK(r.on(a) >= 0 && r.on(a) < l.degree(a), "rank coordinate ", r.on(a), " on axis ",
              axis_name(a), " outside layout ", l.name());
  }
}

void check_divisible(const model::ModelConfig& c, const Workload& w, const Layout& l) {
  validate_sizes(c, w);
  require_divisible(c, w, l);
}

}  // namespace

LayerTraffic layer_traffic(const model::ModelConfig& c, const Workload& w, const Layout& l,
                           const RankCoords& r) {
  check_divisible(c, w, l);
  check_rank(l, r);
  const Dims d = dims_of(c, w);
  LayerTraffic out;
  switch (l.kind) {
    case LayoutKind::tsp:
      out.forward = tsp_layer_forward(d, l.tsp, r.tsp);
      out.backward = tsp_layer_backward(d, l.tsp, r.tsp);
      break;
    case LayoutKind::tp:
    case LayoutKind::sp:
    case LayoutKind::tp_sp:
    case LayoutKind::dp:
      out.forward = tp_sp_layer_forward(d, l, r);
      out.backward = tp_sp_layer_backward(d, l, r);
      break;
    case LayoutKind::fsdp_sp: {
      const int64_t unit = fsdp_layer_unit(c);
      fsdp_gather_unit(out.forward, "layer weights", unit, d.e, l.sp, r.sp);
      fsdp_kv(out.forward, d, l.sp, false);
      fsdp_gather_unit(out.backward, "layer weights", unit, d.e, l.sp, r.sp);
      fsdp_kv(out.backward, d, l.sp, true);
      fsdp_scatter_grad(out.backward, "layer weight gradients", unit, d.grad, l.sp, r.sp);
      // Recomputation runs inside the backward, where the layer's weights are gathered anyway:
      // only the K|V exchange repeats.
      if (w.recompute == Recompute::full) fsdp_kv(out.recompute, d, l.sp, false);
      return out;
    }
  }
  if (w.recompute == Recompute::full) {
    out.recompute = out.forward;
    // The TP/SP engine's recomputed MLP stops after gate/up (its output is not needed): the
    // recomputation repeats the attention's all-reduce and K|V gather, not the MLP's all-reduce.
    if (l.kind != LayoutKind::tsp) {
      std::erase_if(out.recompute, [](const CollectiveTraffic& x) {
        return x.what == "MLP output (row-parallel down_proj)";
      });
    }
  }
  return out;
}

namespace {

void tsp_step(StepTraffic& out, const Dims& d, int64_t D, int64_t p, bool first, bool last) {
  const int64_t t_loc = d.T / D, V_shard = d.V / D;
  // Token ids modelled as uniform over the vocabulary owners: each owner gets 1/D of them.
  std::vector<int64_t> to_each = balanced_counts(t_loc, D);
  std::vector<int64_t> from_each(static_cast<size_t>(D), balanced_block(t_loc, D, p));
  if (first) {
    add(out.forward, "token ids to their vocabulary owners (expected, uniform ids)", Axis::tsp,
        CollectiveOp::all_to_all, D, 1, ledger_all_to_all(to_each, from_each, 4, p), false);
    add(out.forward, "embedding rows back (expected, uniform ids)", Axis::tsp,
        CollectiveOp::all_to_all, D, 1, ledger_all_to_all(from_each, to_each, d.h * d.e, p), false);
    add(out.backward, "embedding row gradients to their owners (expected, uniform ids)", Axis::tsp,
        CollectiveOp::all_to_all, D, 1, ledger_all_to_all(to_each, from_each, d.h * d.grad, p),
        false);
  }
  if (last) {
    const Bytes shard = (D - 1) * ledger_sendrecv(V_shard * d.h * d.e, D);
    add(out.forward, "LM head vocabulary shard", Axis::tsp, CollectiveOp::sendrecv, D, D - 1, shard,
        true);
    add(out.backward, "LM head vocabulary shard", Axis::tsp, CollectiveOp::sendrecv, D, D - 1, shard,
        true);
    add(out.backward, "LM head gradient accumulator", Axis::tsp, CollectiveOp::sendrecv, D, D - 1,
        (D - 1) * ledger_sendrecv(V_shard * d.h * d.grad, D), true);
  }
}

void tp_step(StepTraffic& out, const Dims& d, const Layout& l, const RankCoords& r, bool first,
             bool last) {
  const int64_t t = d.T / l.sp;
  if (first) {
    add(out.forward, "vocab-parallel embedding output", Axis::tp, CollectiveOp::all_reduce, l.tp, 1,
        ledger_all_reduce(t * d.h, d.reduce, l.tp, r.tp), false);
  }
  if (last) {
    // The engine all-reduces the per-token max first, then the rescaled sums and target logits
    // packed together (tp_sp_block.cpp): AR(t) + AR(2t).
    add(out.forward, "cross-entropy max per token", Axis::tp, CollectiveOp::all_reduce, l.tp, 1,
        ledger_all_reduce(t, 4, l.tp, r.tp), false);
    add(out.forward, "cross-entropy sum of exp and target logit per token", Axis::tp,
        CollectiveOp::all_reduce, l.tp, 1, ledger_all_reduce(2 * t, 4, l.tp, r.tp), false);
    add(out.backward, "input gradient of the vocab-parallel head", Axis::tp,
        CollectiveOp::all_reduce, l.tp, 1, ledger_all_reduce(t * d.h, d.reduce, l.tp, r.tp), false);
  }
}

// As parallel/fsdp_sp_layout.cpp: the embedding table is gathered for the lookup only (its
// backward scatter-add needs no weights); the final gain and the head table (tied: the embedding
// again) are gathered once for the head's forward and backward, which run back to back; the
// f32 gradients of the final gain, the head and the embedding are reduce-scattered separately.
void fsdp_step(StepTraffic& out, const model::ModelConfig& c, const Dims& d, const Layout& l,
               const RankCoords& r, bool first, bool last) {
  const int64_t D = l.sp, table = c.embedding_params(), h = c.hidden_size();
  if (first) fsdp_gather_unit(out.forward, "embedding table", table, d.e, D, r.sp);
  if (last) {
    fsdp_gather_unit(out.forward, "final norm gain", h, d.e, D, r.sp);
    fsdp_gather_unit(out.forward, "LM head table (tied: the embedding)", table, d.e, D, r.sp);
    fsdp_scatter_grad(out.backward, "final norm gain gradient", h, d.grad, D, r.sp);
    fsdp_scatter_grad(out.backward, "LM head gradient", table, d.grad, D, r.sp);
  }
  if (first) fsdp_scatter_grad(out.backward, "embedding gradient", table, d.grad, D, r.sp);
}

void pipeline_step(StepTraffic& out, const Dims& d, const Layout& l, int64_t stage) {
  if (l.pp == 1) return;
  const int64_t t = d.T / l.token_shards();
  const int64_t act = t * d.h * d.e, grad = t * d.h * d.grad;
  if (stage > 0) {
    add(out.pipeline, "activations from the previous stage", Axis::pp, CollectiveOp::recv, l.pp, 1,
        {.sent = 0, .received = act}, false);
    add(out.pipeline, "activation gradients to the previous stage", Axis::pp, CollectiveOp::send,
        l.pp, 1, {.sent = grad, .received = 0}, false);
  }
  if (stage < l.pp - 1) {
    add(out.pipeline, "activations to the next stage", Axis::pp, CollectiveOp::send, l.pp, 1,
        {.sent = act, .received = 0}, false);
    add(out.pipeline, "activation gradients from the next stage", Axis::pp, CollectiveOp::recv,
        l.pp, 1, {.sent = 0, .received = grad}, false);
  }
}

void gradient_sync(StepTraffic& out, const Dims& d, const Layout& l, const RankCoords& r,
                   const ParamShare& share, bool tied) {
  if (l.kind == LayoutKind::tsp) {
    add(out.gradient_sync, "replicated norm gain gradients", Axis::tsp, CollectiveOp::all_reduce,
        l.tsp, 1, ledger_all_reduce(share.replicated_norms(), d.grad, l.tsp, r.tsp), false);
  }
  if (l.kind == LayoutKind::sp || l.kind == LayoutKind::tp_sp) {
    add(out.gradient_sync, "gradients of the replicated weights", Axis::sp,
        CollectiveOp::all_reduce, l.sp, 1, ledger_all_reduce(share.total(), d.grad, l.sp, r.sp),
        false);
  }
  add(out.gradient_sync, "gradients of this rank's parameters", Axis::dp, CollectiveOp::all_reduce,
      l.dp, 1, ledger_all_reduce(share.total(), d.grad, l.dp, r.dp), false);
  // parallel/pipeline_stage.h: the tied embedding's gradient, summed between its two holders.
  const bool ends = r.pp == 0 || r.pp == l.pp - 1;
  if (tied && l.pp > 1 && ends) {
    const int64_t bytes = d.V * d.h / l.weight_shards() * d.grad;
    add(out.gradient_sync, "tied embedding gradient between the first and last stage", Axis::pp,
        CollectiveOp::sendrecv, l.pp, 1, {.sent = bytes, .received = bytes}, false);
  }
}

}  // namespace

StepTraffic step_traffic(const model::ModelConfig& c, const Workload& w, const Layout& l,
                         const RankCoords& r) {
  check_divisible(c, w, l);
  check_rank(l, r);
  const Dims d = dims_of(c, w);
  const bool first = r.pp == 0, last = r.pp == l.pp - 1;
  const int64_t shard_rank = l.kind == LayoutKind::fsdp_sp ? r.sp : 0;
  const ParamShare share = param_share(c, l, r.pp, shard_rank);
  StepTraffic out;
  switch (l.kind) {
    case LayoutKind::tsp: tsp_step(out, d, l.tsp, r.tsp, first, last); break;
    case LayoutKind::tp:
    case LayoutKind::tp_sp: tp_step(out, d, l, r, first, last); break;
    case LayoutKind::fsdp_sp: fsdp_step(out, c, d, l, r, first, last); break;
    case LayoutKind::sp:
    case LayoutKind::dp: break;
  }
  pipeline_step(out, d, l, r.pp);
  gradient_sync(out, d, l, r, share, c.tie_word_embeddings());
  return out;
}

}  // namespace tsp::plan
