// Table and JSON rendering of plans.
#include "tsp/plan/report.h"

#include <cstdio>
#include <sstream>

#include <nlohmann/json.hpp>

namespace tsp::plan {

using nlohmann::json;

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string pad(const std::string& s, size_t width, bool left = false) {
  if (s.size() >= width) return s;
  const std::string fill(width - s.size(), ' ');
  return left ? s + fill : fill + s;
}

std::string gib(int64_t bytes) { return fixed(static_cast<double>(bytes) / kGiB, 2); }

std::string seconds(double s) {
  if (s >= 1) return fixed(s, 2) + " s";
  return fixed(s * 1e3, 1) + " ms";
}

std::string human_rate(double tokens_per_s) {
  if (tokens_per_s >= 1e6) return fixed(tokens_per_s / 1e6, 2) + "M";
  if (tokens_per_s >= 1e3) return fixed(tokens_per_s / 1e3, 1) + "k";
  return fixed(tokens_per_s, 1);
}

std::string header(const ReportContext& x) {
  const Precision& p = x.work.precision;
  const Cluster& c = x.cluster;
  std::ostringstream os;
  os << "model " << x.model_name << ": " << x.config.summary() << "\n"
     << "workload: batch " << x.work.batch << " x seq " << x.work.seq << " per replica, "
     << x.work.micro_batches << " micro-batch(es) per step, precision " << p.name << " ("
     << p.weight_bytes << " B weights, " << p.grad_bytes << " B grads, " << p.optimizer_bytes()
     << " B optimizer per parameter; reductions " << p.reduce_bytes << " B), recompute "
     << recompute_name(x.work.recompute) << "\n";
  if (x.work.seq > x.config.max_position_embeddings())
    os << "warning: seq " << x.work.seq << " exceeds max_position_embeddings "
       << x.config.max_position_embeddings() << " of model " << x.model_name
       << ": the model was not trained at these positions (the plan is computed anyway)\n";
  os << "cluster " << c.name << ": " << c.devices_per_node << " devices/node, "
     << fixed(c.memory_per_device_gib, 1) << " GiB each, "
     << fixed(p.bf16_math() ? c.matmul_tflops_bf16 : c.matmul_tflops_fp32, 1)
     << " TFLOP/s achieved (" << (p.bf16_math() ? "bf16" : "fp32") << "), intra-node "
     << topology_name(c.intra_node_topology) << " " << fixed(c.intra_node_bandwidth_gbs, 1)
     << " GB/s" << (c.intra_node_topology == IntraNodeTopology::full_mesh ? " per link" : "")
     << ", inter-node " << fixed(c.inter_node_bandwidth_gbs, 1) << " GB/s per device\n"
     << "devices: " << x.devices << "\n";
  return os.str();
}

constexpr MemCategory kCategories[] = {MemCategory::weights,     MemCategory::grads,
                                       MemCategory::optimizer,   MemCategory::activations,
                                       MemCategory::kv_cache,    MemCategory::comm,
                                       MemCategory::workspace};

size_t name_width(const std::vector<LayoutPlan>& plans) {
  size_t w = 6;
  for (const LayoutPlan& p : plans) w = std::max(w, p.layout.name().size());
  return w + 2;
}

std::string memory_table(const std::vector<LayoutPlan>& plans) {
  const size_t w = name_width(plans);
  std::ostringstream os;
  os << "Memory per device (GiB, peak per category):\n" << pad("layout", w, true);
  for (MemCategory c : kCategories) os << pad(std::string(mem_category_name(c)), 12);
  os << pad("total", 10) << "  fits\n";
  for (const LayoutPlan& p : plans) {
    os << pad(p.layout.name(), w, true);
    if (!p.problems.empty()) {
      os << "  (not divisible, see below)\n";
      continue;
    }
    for (MemCategory c : kCategories) os << pad(gib(p.memory[c]), 12);
    os << pad(gib(p.memory.total()), 10) << "  " << (p.fits ? "yes" : "NO") << "\n";
  }
  return os.str();
}

std::string time_table(const std::vector<LayoutPlan>& plans) {
  const size_t w = name_width(plans);
  std::ostringstream os;
  os << "Traffic per layer per device (GiB received) and predicted step:\n"
     << pad("layout", w, true) << pad("fwd", 8) << pad("bwd", 8) << pad("recomp", 8)
     << pad("layer f+b", 11) << pad("step", 11) << pad("tokens/s", 10) << "  dominant\n";
  for (const LayoutPlan& p : plans) {
    if (!p.problems.empty()) continue;
    const StepTime& t = p.time;
    os << pad(p.layout.name(), w, true) << pad(gib(totals(p.layer.forward).bytes_received), 8)
       << pad(gib(totals(p.layer.backward).bytes_received), 8)
       << pad(gib(totals(p.layer.recompute).bytes_received), 8)
       << pad(seconds(t.layer_forward_s + t.layer_backward_s + t.layer_recompute_s), 11)
       << pad(seconds(t.step_s), 11) << pad(human_rate(t.tokens_per_s), 10) << "  " << t.dominant
       << (p.fits ? "" : "  [out of memory]") << "\n";
  }
  return os.str();
}

void phase_detail(std::ostringstream& os, const char* phase, const PhaseTraffic& traffic) {
  for (const CollectiveTraffic& t : traffic) {
    os << "    " << pad(phase, 14, true) << pad(std::string(axis_name(t.axis)), 4, true) << " "
       << pad(std::string(collective_op_name(t.op)), 15, true) << pad(std::to_string(t.calls), 5)
       << " calls " << pad(fixed(static_cast<double>(t.bytes_received) / (1 << 20), 2), 12)
       << " MiB recv " << pad(fixed(static_cast<double>(t.bytes_sent) / (1 << 20), 2), 12)
       << " MiB sent  " << t.what << (t.overlaps_compute ? " [overlapped]" : "") << "\n";
  }
}

std::string detail_section(const std::vector<LayoutPlan>& plans) {
  std::ostringstream os;
  os << "Collectives per device (per layer, then per step outside the layers):\n";
  for (const LayoutPlan& p : plans) {
    if (!p.problems.empty()) continue;
    os << "  " << p.layout.name() << ":\n";
    phase_detail(os, "layer fwd", p.layer.forward);
    phase_detail(os, "layer bwd", p.layer.backward);
    phase_detail(os, "layer recomp", p.layer.recompute);
    phase_detail(os, "step fwd", p.step.forward);
    phase_detail(os, "step bwd", p.step.backward);
    phase_detail(os, "pipeline", p.step.pipeline);
    phase_detail(os, "grad sync", p.step.gradient_sync);
  }
  return os.str();
}

std::string rejected_section(const std::vector<LayoutPlan>& plans) {
  std::ostringstream os;
  for (const LayoutPlan& p : plans) {
    if (!p.valid()) os << "  " << p.layout.name() << ": " << p.rejection << "\n";
  }
  const std::string body = os.str();
  return body.empty() ? std::string() : std::string("Rejected:\n").append(body);
}

std::string body(const std::vector<LayoutPlan>& plans, bool detail) {
  std::ostringstream os;
  os << memory_table(plans) << "\n" << time_table(plans);
  if (detail) os << "\n" << detail_section(plans);
  const std::string rejected = rejected_section(plans);
  if (!rejected.empty()) os << "\n" << rejected;
  return os.str();
}

}  // namespace

std::string format_plans(const ReportContext& ctx, const std::vector<LayoutPlan>& plans,
                         bool detail) {
  return header(ctx) + "\n" + body(plans, detail);
}

std::string format_search(const ReportContext& ctx, const SearchResult& r, int64_t top,
                          bool detail) {
  std::ostringstream os;
  os << header(ctx) << "\n";
  if (r.ranked.empty()) {
    os << "No valid layout for " << ctx.devices << " devices.\n";
  } else {
    const LayoutPlan& b = r.ranked.front();
    os << "Best: " << b.layout.name() << " (" << layout_kind_name(b.layout.kind) << "), "
       << human_rate(b.time.tokens_per_s) << " tokens/s, step " << seconds(b.time.step_s)
       << ", " << gib(b.memory.total()) << " GiB per device, dominated by " << b.time.dominant
       << "\n";
  }
  std::vector<LayoutPlan> shown = r.ranked;
  if (top > 0 && static_cast<int64_t>(shown.size()) > top) shown.resize(static_cast<size_t>(top));
  os << "Valid layouts: " << r.ranked.size() << " (showing " << shown.size() << "), rejected: "
     << r.rejected.size() << "\n\n";
  if (!shown.empty()) os << memory_table(shown) << "\n" << time_table(shown);
  if (detail && !shown.empty()) os << "\n" << detail_section({shown.front()});
  const std::string rejected = rejected_section(r.rejected);
  if (!rejected.empty()) os << "\n" << rejected;
  return os.str();
}

namespace {

json traffic_json(const PhaseTraffic& phase) {
  json a = json::array();
  for (const CollectiveTraffic& t : phase) {
    a.push_back({{"what", t.what},
                 {"axis", axis_name(t.axis)},
                 {"op", collective_op_name(t.op)},
                 {"group", t.group},
                 {"calls", t.calls},
                 {"bytes_sent", t.bytes_sent},
                 {"bytes_received", t.bytes_received},
                 {"overlaps_compute", t.overlaps_compute}});
  }
  return a;
}

json plan_json(const LayoutPlan& p) {
  const Layout& l = p.layout;
  json j = {{"layout", l.name()},
            {"kind", layout_kind_name(l.kind)},
            {"degrees", {{"dp", l.dp}, {"pp", l.pp}, {"sp", l.sp}, {"tp", l.tp}, {"tsp", l.tsp}}},
            {"valid", p.valid()},
            {"rejection", p.rejection},
            {"problems", p.problems}};
  if (!p.problems.empty()) return j;
  json mem;
  for (MemCategory c : kCategories) mem[std::string(mem_category_name(c))] = p.memory[c];
  mem["total"] = p.memory.total();
  mem["stage"] = p.memory.stage;
  j["memory_bytes"] = mem;
  j["fits"] = p.fits;
  j["traffic"] = {{"layer",
                   {{"forward", traffic_json(p.layer.forward)},
                    {"backward", traffic_json(p.layer.backward)},
                    {"recompute", traffic_json(p.layer.recompute)}}},
                  {"step",
                   {{"forward", traffic_json(p.step.forward)},
                    {"backward", traffic_json(p.step.backward)},
                    {"pipeline", traffic_json(p.step.pipeline)},
                    {"gradient_sync", traffic_json(p.step.gradient_sync)}}},
                  {"layer_bytes_received",
                   {{"forward", totals(p.layer.forward).bytes_received},
                    {"backward", totals(p.layer.backward).bytes_received},
                    {"recompute", totals(p.layer.recompute).bytes_received}}}};
  const StepTime& t = p.time;
  json terms, comm;
  for (const TimeTerm& x : t.terms) terms[x.name] = x.seconds;
  for (const TimeTerm& x : t.comm_by_axis) comm[x.name] = x.seconds;
  j["time"] = {{"step_s", t.step_s},
               {"tokens_per_s", t.tokens_per_s},
               {"tokens_per_step", t.tokens_per_step},
               {"layer_forward_s", t.layer_forward_s},
               {"layer_backward_s", t.layer_backward_s},
               {"layer_recompute_s", t.layer_recompute_s},
               {"terms_s", terms},
               {"dominant", t.dominant},
               {"comm_unoverlapped_s", comm}};
  return j;
}

}  // namespace

std::string plans_to_json(const ReportContext& x, const std::vector<LayoutPlan>& plans,
                          const std::string& best) {
  const Precision& p = x.work.precision;
  json j;
  j["generator"] = "tsp plan";
  j["model"] = {{"name", x.model_name},
                {"summary", x.config.summary()},
                {"hidden_size", x.config.hidden_size()},
                {"intermediate_size", x.config.intermediate_size()},
                {"num_hidden_layers", x.config.num_hidden_layers()},
                {"num_attention_heads", x.config.num_attention_heads()},
                {"num_key_value_heads", x.config.num_key_value_heads()},
                {"vocab_size", x.config.vocab_size()},
                {"tie_word_embeddings", x.config.tie_word_embeddings()},
                {"total_params", x.config.total_params()}};
  j["workload"] = {{"batch", x.work.batch},
                   {"seq", x.work.seq},
                   {"micro_batches", x.work.micro_batches},
                   {"recompute", recompute_name(x.work.recompute)},
                   {"precision",
                    {{"name", p.name},
                     {"weight_bytes", p.weight_bytes},
                     {"activation_bytes", p.activation_bytes},
                     {"grad_bytes", p.grad_bytes},
                     {"master_bytes", p.master_bytes},
                     {"moment_bytes", p.moment_bytes},
                     {"reduce_bytes", p.reduce_bytes}}}};
  j["cluster"] = json::parse(cluster_to_json(x.cluster));
  j["devices"] = x.devices;
  j["plans"] = json::array();
  for (const LayoutPlan& plan : plans) j["plans"].push_back(plan_json(plan));
  if (!best.empty()) j["best"] = best;
  return j.dump(2) + "\n";
}

}  // namespace tsp::plan
