// The step-time model: per phase, overlappable collectives cost max(compute, their sum), the others
// add (and so does all but the eager part of each message between nodes whose transfers progress
// only inside MPI calls); gradient sync overlaps the backward but for the last layer; pipelines
// pay a bubble.
#include "tsp/plan/time_model.h"

#include <algorithm>
#include <array>

#include "tsp/core/checked_math.h"
#include "tsp/plan/param_share.h"
#include "tsp/plan/placement.h"
#include "tsp/plan/traffic.h"

namespace tsp::plan {

namespace {

// The share of causal attention's (query, key) pairs that a sliding window W keeps: query i sees
// min(i + 1, W) keys instead of i + 1 (1 without a window or when W >= S): Mistral's attention
// work is O(S W), and the flash kernel skips the tiles outside the window.
double window_share(int64_t seq, int64_t window) {
  if (window <= 0 || window >= seq) return 1.0;
  const double S = static_cast<double>(seq), W = static_cast<double>(window);
  const double causal = S * (S + 1) / 2, windowed = W * (W + 1) / 2 + (S - W) * W;
  return windowed / causal;
}

}  // namespace

Flops layer_flops(const model::ModelConfig& c, const Workload& w, const Layout& l) {
  const double T = static_cast<double>(w.tokens()), S = static_cast<double>(w.seq);
  const double matmul = 2.0 * static_cast<double>(c.matrix_params_per_layer()) * T;
  const double attention = 2.0 * static_cast<double>(w.batch) * S * S * static_cast<double>(c.q_dim()) *
                           window_share(w.seq, c.sliding_window());
  const double fwd = (matmul + attention) / static_cast<double>(l.model_parallel());
  return {.forward = fwd, .backward = 2 * fwd,
          .recompute = w.recompute == Recompute::full ? fwd : 0.0};
}

Flops layer_attention_flops(const model::ModelConfig& c, const Workload& w, const Layout& l) {
  const double S = static_cast<double>(w.seq);
  const double fwd = 2.0 * static_cast<double>(w.batch) * S * S * static_cast<double>(c.q_dim()) *
                     window_share(w.seq, c.sliding_window()) / static_cast<double>(l.model_parallel());
  return {.forward = fwd, .backward = 2 * fwd,
          .recompute = w.recompute == Recompute::full ? fwd : 0.0};
}

Flops head_flops(const model::ModelConfig& c, const Workload& w, const Layout& l) {
  const double fwd = 2.0 * static_cast<double>(c.vocab_size() * c.hidden_size()) *
                     static_cast<double>(w.tokens()) / static_cast<double>(l.model_parallel());
  return {.forward = fwd, .backward = 3 * fwd, .recompute = 0};
}

double model_flops(const model::ModelConfig& c, const Workload& w) {
  const Layout whole{};  // one rank holds the whole model: model_parallel() == 1
  const Flops layer = layer_flops(c, w, whole), head = head_flops(c, w, whole);
  return static_cast<double>(c.num_hidden_layers()) * (layer.forward + layer.backward) +
         3 * head.forward;
}

namespace {

constexpr size_t kAxisCount = kAxes.size();

// Seconds accumulated per additive term of one stage and micro-batch.
struct Ledger {
  double compute = 0;
  std::array<double, kAxisCount> exposed{};  // per axis
  std::array<double, kAxisCount> raw{};      // per axis, no overlap

  void add_scaled(const Ledger& o, double k) {
    compute += k * o.compute;
    for (size_t i = 0; i < kAxisCount; ++i) {
      exposed[i] += k * o.exposed[i];
      raw[i] += k * o.raw[i];
    }
  }
  double total() const {
    double s = compute;
    for (double e : exposed) s += e;
    return s;
  }
};

// One phase: compute plus its collectives under the overlap rule.
Ledger phase(double compute_s, const PhaseTraffic& traffic, const Cluster& c, const Layout& l) {
  Ledger out;
  out.compute = compute_s;
  std::array<double, kAxisCount> hidden{};
  double hidden_sum = 0;
  for (const CollectiveTraffic& t : traffic) {
    const double s = collective_seconds(c, l, t);
    const auto a = static_cast<size_t>(t.axis);
    out.raw[a] += s;
    // The share of the transfer that can run during the phase's compute: all of it, unless it
    // crosses nodes whose transfers progress only inside MPI calls; then only the eager part of
    // each message (Cluster::inter_node_eager_bytes), the rest waits for the call that waits.
    double share = t.overlaps_compute ? 1.0 : 0.0;
    if (share > 0 && !c.inter_node_background_progress && collective_link(c, l, t.axis, t.op).inter_node) {
      const double m = message_bytes(t);
      share = m > 0 ? std::min(1.0, static_cast<double>(c.inter_node_eager_bytes) / m) : 1.0;
    }
    hidden[a] += share * s;
    hidden_sum += share * s;
    out.exposed[a] += (1 - share) * s;
  }
  // Overlappable transfers cost only what exceeds the compute, shared by axis in proportion.
  const double excess = std::max(0.0, hidden_sum - compute_s);
  if (hidden_sum > 0) {
    for (size_t a = 0; a < kAxisCount; ++a) out.exposed[a] += excess * hidden[a] / hidden_sum;
  }
  return out;
}

struct StageTime {
  Ledger micro;          // one micro-batch on this stage
  Ledger layer_fwd, layer_bwd, layer_rc;
  double backward_s = 0;  // the stage's layer backward (+ recompute) time, for gradient sync
  Ledger sync;            // gradient synchronisation, unoverlapped
  bool sync_hideable = true;  // false when it crosses nodes whose transfers progress only in calls
  int64_t layers = 0;
};

StageTime stage_time(const model::ModelConfig& cfg, const Workload& w, const Layout& l,
                     const Cluster& c, int64_t stage) {
  const double rate = c.matmul_flops(w.precision.bf16_math());
  const double att_rate = c.attention_flops(w.precision.bf16_math());
  const RankCoords rank{.pp = stage};
  const LayerTraffic lt = layer_traffic(cfg, w, l, rank);
  const StepTraffic st = step_traffic(cfg, w, l, rank);
  const Flops lf = layer_flops(cfg, w, l), af = layer_attention_flops(cfg, w, l), hf = head_flops(cfg, w, l);
  // Seconds of a layer phase: its attention at the attention rate, the rest at the matmul rate.
  auto seconds = [&](double all, double attention) { return (all - attention) / rate + attention / att_rate; };
  StageTime s;
  s.layers = cfg.num_hidden_layers() / l.pp;
  s.layer_fwd = phase(seconds(lf.forward, af.forward), lt.forward, c, l);
  s.layer_bwd = phase(seconds(lf.backward, af.backward), lt.backward, c, l);
  s.layer_rc = phase(seconds(lf.recompute, af.recompute), lt.recompute, c, l);
  const auto L = static_cast<double>(s.layers);
  s.micro.add_scaled(s.layer_fwd, L);
  s.micro.add_scaled(s.layer_bwd, L);
  s.micro.add_scaled(s.layer_rc, L);
  const bool last = stage == l.pp - 1;
  s.micro.add_scaled(phase(last ? hf.forward / rate : 0, st.forward, c, l), 1);
  s.micro.add_scaled(phase(last ? hf.backward / rate : 0, st.backward, c, l), 1);
  s.micro.add_scaled(phase(0, st.pipeline, c, l), 1);
  s.backward_s = L * (s.layer_bwd.total() + s.layer_rc.total());
  s.sync = phase(0, st.gradient_sync, c, l);
  // The sync's all-reduces take several rounds, each needing MPI progress between them: over a
  // link without background progress at most a first round's eager part would move early, so the
  // whole sync is taken as exposed.
  for (const CollectiveTraffic& t : st.gradient_sync)
    if (!c.inter_node_background_progress && collective_link(c, l, t.axis, t.op).inter_node) s.sync_hideable = false;
  return s;
}

std::string exposed_name(size_t axis) {
  return std::string(axis_name(kAxes[axis])) + " comm (exposed)";
}

}  // namespace

StepTime step_time(const model::ModelConfig& cfg, const Workload& w, const Layout& l,
                   const Cluster& c) {
  validate(c);
  StageTime s = stage_time(cfg, w, l, c, 0);
  if (l.pp > 1) {
    StageTime last = stage_time(cfg, w, l, c, l.pp - 1);
    if (last.micro.total() > s.micro.total()) s = last;
  }
  const auto m = static_cast<double>(w.micro_batches);
  Ledger step;
  step.add_scaled(s.micro, m);
  const double bubble = static_cast<double>(l.pp - 1) * s.micro.total();
  // Gradient sync: per-layer buckets overlap the backward of the layers after them, so only the
  // last layer's bucket, or what exceeds the rest of the backward, is exposed.
  const double sync = s.sync.total();
  const double layers = static_cast<double>(s.layers);
  const double sync_exposed =
      sync == 0 ? 0
      : s.sync_hideable ? std::max(sync / layers, sync - s.backward_s * (layers - 1) / layers)
                        : sync;

  StepTime out;
  out.step_s = step.total() + bubble + sync_exposed;
  out.tokens_per_step = product_checked("tokens per step", {l.dp, w.micro_batches, w.tokens()});
  out.tokens_per_s = static_cast<double>(out.tokens_per_step) / out.step_s;
  out.layer_forward_s = s.layer_fwd.total();
  out.layer_backward_s = s.layer_bwd.total();
  out.layer_recompute_s = s.layer_rc.total();
  out.terms.push_back({"compute", step.compute});
  for (size_t a = 0; a < kAxisCount; ++a) {
    if (step.exposed[a] > 0) out.terms.push_back({exposed_name(a), step.exposed[a]});
  }
  if (bubble > 0) out.terms.push_back({"pipeline bubble", bubble});
  if (sync_exposed > 0) out.terms.push_back({"gradient sync (exposed)", sync_exposed});
  const auto top = std::max_element(out.terms.begin(), out.terms.end(),
                                     [](const TimeTerm& a, const TimeTerm& b) {
                                       return a.seconds < b.seconds;
                                     });
  out.dominant = top->name;
  for (size_t a = 0; a < kAxisCount; ++a) {
    const double raw = step.raw[a] + s.sync.raw[a];
    if (raw > 0) out.comm_by_axis.push_back({std::string(axis_name(kAxes[a])), raw});
  }
  return out;
}

}  // namespace tsp::plan
