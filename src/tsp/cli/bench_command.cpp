// `tsp bench`: every layout runs the same training steps through the one Trainer (single-rank on
// rank 0 alone, over a one-process mesh); per-rank peaks and bytes are gathered to rank 0 and printed next to
// the planner's predictions for the same model, workload and layout.
#include "tsp/cli/bench_command.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "tsp/cli/int_range.h"
#include "tsp/cli/commands.h"
#include "tsp/cli/svg_chart.h"
#include "tsp/comm/collectives.h"
#include "tsp/comm/mesh.h"
#include "tsp/comm/mpi_environment.h"
#include "tsp/core/atomic_file.h"
#include "tsp/core/check.h"
#include "tsp/core/output_file.h"
#include "tsp/core/memory.h"
#include "tsp/cli/decode_bench.h"
#include "tsp/plan/layout.h"
#include "tsp/plan/memory_model.h"
#include "tsp/plan/traffic.h"
#include "tsp/train/data_source.h"
#include "tsp/train/trainer.h"

namespace tsp::cli {

namespace {

constexpr int kCats = kNumMemCategories;

struct Row {
  std::string layout;
  int ranks = 1;
  int64_t seq = 0;
  std::array<int64_t, kCats> peak{};  // max over ranks, per category
  std::array<int64_t, kCats> plan{};  // the planner's per-device estimate
  int64_t rss = 0;                    // max over ranks
  int64_t sent = 0;                   // bytes sent per step, max over ranks
  int64_t plan_sent = 0;              // the planner's bytes sent per step by rank 0
  double step_s = 0;
  double tokens_per_s = 0;
  double loss = 0;             // the last step's: the weights after 1 + steps - 1 AdamW updates
  double first_step_loss = 0;  // step 1's: the same initial weights and batch in every layout
  std::string skipped;
  int64_t peak_total() const { int64_t t = 0; for (int64_t v : peak) t += v; return t; }
  int64_t plan_total() const { int64_t t = 0; for (int64_t v : plan) t += v; return t; }
};

// The default set for a world of W ranks: single, tsp W, tp W, sp W, tp 2 x sp W/2, dp W, fsdp-sp W.
std::vector<std::string> default_layouts(int W) {
  std::vector<std::string> v{"single"};
  if (W == 1) return v;
  const std::string w = std::to_string(W);
  for (const char* k : {"tsp", "tp", "sp"}) v.push_back(k + w);
  if (W >= 4 && W % 2 == 0) v.push_back("tp2xsp" + std::to_string(W / 2));
  v.push_back("dp" + w);
  v.push_back("fsdp-sp" + w);
  return v;
}

train::RunConfig run_for(const BenchArgs& a, const LayoutSpec* l, int64_t seq) {
  train::RunConfig r;
  r.preset = a.preset;
  r.config = a.config;
  r.steps = 1 + a.steps;
  r.batch = a.batch;
  r.seq = seq;
  r.warmup = 1;
  r.dtype = a.dtype;
  r.recompute = a.recompute;
  r.eval_batches = 1;
  if (l != nullptr) r.set_layout(*l);
  return r;
}

plan::Workload workload_for(const train::RunConfig& r) {
  plan::Workload w;
  w.batch = r.batch / r.dp;
  w.seq = r.seq;
  w.precision = plan::precision_preset(r.dtype == "bf16" ? "bf16" : "fp32");
  w.recompute = r.recompute ? plan::Recompute::full : plan::Recompute::none;
  return w;
}

void fill_prediction(Row& row, const model::ModelConfig& c, const train::RunConfig& r,
                     const LayoutSpec& l) {
  const plan::Workload w = workload_for(r);
  const plan::MemoryEstimate m = plan::memory(c, w, l);
  for (int i = 0; i < kCats; ++i) row.plan[static_cast<size_t>(i)] = m.bytes[static_cast<size_t>(i)];
  const plan::StepTraffic step = plan::step_traffic(c, w, l);
  row.plan_sent = plan::micro_batch_totals(plan::layer_traffic(c, w, l), step, c.num_hidden_layers()).bytes_sent +
                  plan::totals(step.gradient_sync).bytes_sent;
}

// Per-rank numbers gathered to every rank: peaks per category, rss, bytes sent per step.
void gather_max(comm::Communicator& world, Row& row, const std::array<int64_t, kCats>& base,
                int64_t sent, bool participates) {
  const int64_t n = kCats + 2;
  Tensor mine = Tensor::zeros({n}, DType::i64, MemCategory::workspace);
  if (participates) {
    for (int c = 0; c < kCats; ++c)
      mine.data<int64_t>()[c] =
          MemoryLedger::process().stats(static_cast<MemCategory>(c)).peak_bytes - base[static_cast<size_t>(c)];
    mine.data<int64_t>()[kCats] = process_peak_rss_bytes();
    mine.data<int64_t>()[kCats + 1] = sent;
  }
  Tensor all = Tensor::empty({n * world.size()}, DType::i64, MemCategory::workspace);
  comm::all_gather(world, mine, all);
  for (int r = 0; r < world.size(); ++r)
    for (int64_t i = 0; i < n; ++i) {
      const int64_t v = all.data<int64_t>()[r * n + i];
      if (i < kCats) row.peak[static_cast<size_t>(i)] = std::max(row.peak[static_cast<size_t>(i)], v);
      else if (i == kCats) row.rss = std::max(row.rss, v);
      else row.sent = std::max(row.sent, v);
    }
}

std::array<int64_t, kCats> live_now() {
  // Each case's RSS column starts from live bytes, not from the buffers the last case left cached.
  MemoryLedger::process().release_cached();
  MemoryLedger::process().reset_peaks();
  reset_process_peak_rss();
  std::array<int64_t, kCats> b{};
  for (int c = 0; c < kCats; ++c)
    b[static_cast<size_t>(c)] = MemoryLedger::process().stats(static_cast<MemCategory>(c)).live_bytes;
  return b;
}

// Runs the steps of one trainer and records time, tokens/s, bytes and loss (best step).
int64_t run_steps(train::Trainer& t, int64_t timed, Row& row) {
  int64_t sent = 0;
  row.step_s = 1e30;
  for (int64_t s = 0; s <= timed; ++s) {
    const train::StepMetrics m = t.train_step();
    row.loss = m.loss;
    if (s == 0) row.first_step_loss = m.loss;
    if (s == 0 && timed > 0) continue;  // warm-up: primitive creation, first-touch page faults
    if (m.seconds < row.step_s) {
      row.step_s = m.seconds;
      row.tokens_per_s = m.tokens_per_second();
      sent = m.comm_bytes_sent;
    }
  }
  return sent;
}

Row run_single(comm::Communicator& world, const BenchArgs& a, const model::ModelConfig& c,
               const std::vector<int32_t>& tokens, int64_t seq, int64_t timed) {
  Row row;
  row.layout = "single";
  row.seq = seq;
  const train::RunConfig r = run_for(a, nullptr, seq);
  fill_prediction(row, c, r, dp_layout(1));
  const std::array<int64_t, kCats> base = live_now();
  if (world.rank() == 0) {
    train::Trainer t(c, r, tokens);
    run_steps(t, timed, row);
  }
  world.barrier();
  gather_max(world, row, base, 0, world.rank() == 0);
  // Time, rate and losses come from rank 0, bit for bit (doubles carried in int64 slots).
  double* fields[] = {&row.step_s, &row.tokens_per_s, &row.loss, &row.first_step_loss};
  Tensor v = Tensor::empty({4}, DType::i64, MemCategory::workspace);
  for (int i = 0; i < 4; ++i) std::memcpy(v.data<int64_t>() + i, fields[i], sizeof(double));
  comm::broadcast(world, v, 0);
  for (int i = 0; i < 4; ++i) std::memcpy(fields[i], v.data<int64_t>() + i, sizeof(double));
  return row;
}

Row run_layout(comm::Communicator& world, const BenchArgs& a, const model::ModelConfig& c,
               const std::vector<int32_t>& tokens, const std::string& name, int64_t seq,
               int64_t timed) {
  Row row;
  row.layout = name;
  row.seq = seq;
  const LayoutSpec l = parse_layout(name);
  row.ranks = static_cast<int>(l.devices());
  if (l.devices() != world.size()) {
    row.skipped = "needs " + std::to_string(l.devices()) + " ranks, the job has " +
                  std::to_string(world.size());
    return row;
  }
  const train::RunConfig r = run_for(a, &l, seq);
  try {
    train::validate_distributed_run(c, r, train::mesh_degrees_for(r));
    fill_prediction(row, c, r, l);
  } catch (const InvalidArgument& e) {  // the same on every rank: nothing collective ran yet
    row.skipped = one_line_message(e.what());
    return row;
  }
  const std::array<int64_t, kCats> base = live_now();
  int64_t sent = 0;
  {
    comm::Mesh mesh(world, train::mesh_degrees_for(r));
    train::Trainer t(mesh, c, r, tokens);
    sent = run_steps(t, timed, row);
  }
  gather_max(world, row, base, sent, true);
  return row;
}

double mib(int64_t b) { return static_cast<double>(b) / (1 << 20); }

std::string table(const std::vector<Row>& rows, bool with_categories) {
  std::ostringstream os;
  char buf[512];
  std::snprintf(buf, sizeof buf, "%-12s %5s %6s", "layout", "ranks", "seq");
  os << buf;
  if (with_categories)
    for (int c = 0; c < kCats; ++c) {
      std::snprintf(buf, sizeof buf, " %11s", std::string(mem_category_name(static_cast<MemCategory>(c))).c_str());
      os << buf;
    }
  std::snprintf(buf, sizeof buf, " %10s %10s %10s %10s %8s %9s %10s\n", "total MiB", "(plan)",
                "sent MiB", "(plan)", "step s", "tokens/s", "loss");
  os << buf;
  for (const Row& r : rows) {
    std::snprintf(buf, sizeof buf, "%-12s %5d %6lld", r.layout.c_str(), r.ranks,
                  static_cast<long long>(r.seq));
    os << buf;
    if (!r.skipped.empty()) {
      os << "  skipped: " << r.skipped << "\n";
      continue;
    }
    if (with_categories)
      for (int c = 0; c < kCats; ++c) {
        std::snprintf(buf, sizeof buf, " %11.2f", mib(r.peak[static_cast<size_t>(c)]));
        os << buf;
      }
    std::snprintf(buf, sizeof buf, " %10.2f %10.2f %10.2f %10.2f %8.3f %9.0f %10.6f\n",
                  mib(r.peak_total()), mib(r.plan_total()), mib(r.sent), mib(r.plan_sent), r.step_s,
                  r.tokens_per_s, r.loss);
    os << buf;
  }
  return os.str();
}

nlohmann::json to_json(const Row& r) {
  nlohmann::json j = {{"layout", r.layout}, {"ranks", r.ranks}, {"seq", r.seq}};
  if (!r.skipped.empty()) {
    j["skipped"] = r.skipped;
    return j;
  }
  nlohmann::json peak = nlohmann::json::object(), plan = nlohmann::json::object();
  for (int c = 0; c < kCats; ++c) {
    const std::string k(mem_category_name(static_cast<MemCategory>(c)));
    peak[k] = r.peak[static_cast<size_t>(c)];
    plan[k] = r.plan[static_cast<size_t>(c)];
  }
  j["peak_bytes_per_rank"] = peak;
  j["predicted_bytes_per_rank"] = plan;
  j["peak_rss_bytes"] = r.rss;
  j["bytes_sent_per_step"] = r.sent;
  j["predicted_bytes_sent_per_step"] = r.plan_sent;
  j["step_seconds"] = r.step_s;
  j["tokens_per_s"] = r.tokens_per_s;
  j["loss"] = r.loss;
  j["first_step_loss"] = r.first_step_loss;
  return j;
}

std::vector<BarGroup> memory_bars(const std::vector<Row>& rows) {
  std::vector<BarGroup> g;
  for (const Row& r : rows) {
    if (!r.skipped.empty()) continue;
    BarGroup b{r.layout, {}, mib(r.plan_total())};
    for (int c = 0; c < kCats; ++c)
      b.segments.push_back({std::string(mem_category_name(static_cast<MemCategory>(c))),
                            mib(r.peak[static_cast<size_t>(c)])});
    g.push_back(b);
  }
  return g;
}

std::vector<BarGroup> traffic_bars(const std::vector<Row>& rows) {
  std::vector<BarGroup> g;
  for (const Row& r : rows)
    if (r.skipped.empty()) g.push_back({r.layout, {{"sent", mib(r.sent)}}, mib(r.plan_sent)});
  return g;
}

std::vector<BarGroup> throughput_bars(const std::vector<Row>& rows) {
  std::vector<BarGroup> g;
  for (const Row& r : rows)
    if (r.skipped.empty()) g.push_back({r.layout, {{"tokens/s", r.tokens_per_s}}, -1});
  return g;
}

// "skipped: tp2 at seq 64, 128 (heads ...)": one note per layout and reason, the sizes listed.
std::vector<std::string> skipped_notes(const std::vector<Row>& rows, bool with_seq) {
  std::vector<std::pair<std::string, std::string>> keys;  // (layout, reason), first-seen order
  std::map<std::pair<std::string, std::string>, std::string> seqs;
  for (const Row& r : rows) {
    if (r.skipped.empty()) continue;
    const std::pair<std::string, std::string> k{r.layout, r.skipped};
    std::string& list = seqs[k];
    if (list.empty()) keys.push_back(k);
    list += (list.empty() ? "" : ", ") + std::to_string(r.seq);
  }
  std::vector<std::string> notes;
  for (const auto& k : keys)
    notes.push_back("skipped: " + k.first + (with_seq ? " at seq " + seqs[k] : "") + " (" + k.second + ")");
  return notes;
}

// The sweep's lines: one measured (solid) and one predicted (dashed) series per layout, over the
// sequence lengths where the layout ran.
LineChart sweep_chart(const std::vector<Row>& sweep, const std::string& title, const std::string& y_label,
                      double (*measured)(const Row&), double (*predicted)(const Row&)) {
  LineChart c;
  c.title = title;
  c.x = {.label = "sequence length (tokens, log scale)", .log2 = true};
  c.y = {.label = y_label, .include_zero = true};
  std::vector<std::string> layouts;
  for (const Row& r : sweep)
    if (std::find(layouts.begin(), layouts.end(), r.layout) == layouts.end()) layouts.push_back(r.layout);
  for (const std::string& l : layouts) {
    Series m, p;
    m.name = p.name = l;
    p.dashed = true;
    p.markers = false;  // the measured dots stay visible where the two agree
    for (const Row& r : sweep) {
      if (r.layout != l || !r.skipped.empty()) continue;
      m.points.push_back({static_cast<double>(r.seq), measured(r)});
      p.points.push_back({static_cast<double>(r.seq), predicted(r)});
    }
    if (m.points.empty()) continue;
    c.series.push_back(std::move(m));
    c.series.push_back(std::move(p));
  }
  c.style_keys = {{"measured", false}, {"planner", true}};
  c.notes = skipped_notes(sweep, true);
  return c;
}

std::string bench_svg(const BenchArgs& a, const model::ModelConfig& config, int ranks,
                      const std::vector<Row>& rows, const std::vector<Row>& sweep) {
  Figure f;
  f.title = "tsp bench: " + config.summary();
  f.subtitle = {"seq " + std::to_string(a.seq) + ", global batch " + std::to_string(a.batch) + ", " +
                    std::to_string(ranks) + " ranks, dtype " + a.dtype + (a.recompute ? ", recompute" : "") +
                    "; best of " + std::to_string(a.steps) + " steps after 1 warm-up",
                "memory: each category's peak per rank (max over ranks), stacked; bytes: sent per rank "
                "per step (max over ranks); black ticks: the planner's prediction (src/tsp/plan)"};
  BarChart memory{"peak memory per rank", "MiB per rank", memory_bars(rows), "planner (total)",
                  skipped_notes(rows, false)};
  BarChart bytes{"bytes sent per step", "MiB per rank per step", traffic_bars(rows), "planner", {}};
  BarChart speed{"training throughput", "tokens/s (global batch)", throughput_bars(rows), "", {}};
  f.rows.push_back({panel(memory), panel(bytes), panel(speed)});
  if (!sweep.empty()) {
    f.rows.push_back(
        {panel(sweep_chart(sweep, "peak memory per rank vs sequence length", "MiB per rank (all categories)",
                           [](const Row& r) { return mib(r.peak_total()); },
                           [](const Row& r) { return mib(r.plan_total()); })),
         panel(sweep_chart(sweep, "bytes sent per step vs sequence length", "MiB per rank per step",
                           [](const Row& r) { return mib(r.sent); },
                           [](const Row& r) { return mib(r.plan_sent); }))});
  }
  return render_svg(f);
}

int bench_body(const BenchArgs& a, std::ostream& out) {
  comm::Communicator world = comm::Communicator::world();
  const bool leader = world.rank() == 0;
  train::RunConfig base;
  base.preset = a.preset;
  base.config = a.config;
  base.dtype = a.dtype;
  base.batch = a.batch;
  base.seq = a.seq;
  base.validate();
  TSP_CHECK(a.steps >= 1, "--steps must be >= 1, got ", a.steps);
  // The output files are checked before the benchmark runs (the leader writes them).
  if (leader && !a.json_path.empty()) check_output_file(a.json_path, "--json", has_generator_marker);
  if (leader && !a.svg_path.empty()) check_output_file(a.svg_path, "--svg", has_generator_marker);
  // A benchmark may run a preset beyond its max_position_embeddings: RoPE has no learned
  // positions, so the limit is raised to the longest benchmarked sequence (random weights).
  int64_t longest = a.seq;
  for (int64_t s : a.sweep_seq) longest = std::max(longest, s);
  model::ModelConfigFields fields = train::model_config_for_run(base).fields();
  fields.max_position_embeddings = std::max(fields.max_position_embeddings, longest);
  const model::ModelConfig config(fields);
  if (a.infer) {
    // Decode: the prompt is --seq tokens, then --steps rounds of --new-tokens decode steps.
    const DecodeBenchOptions o{.prompt = a.seq, .fresh = a.new_tokens, .rounds = a.steps};
    model::ModelConfigFields f = config.fields();
    f.max_position_embeddings = std::max(f.max_position_embeddings, decode_bench_capacity(o));
    run_decode_bench(world, model::ModelConfig(f), o, out);
    return 0;
  }
  const std::vector<int32_t> tokens = train::load_token_data("fortunes", config.vocab_size()).tokens;
  const std::vector<std::string> names = a.layouts.empty() ? default_layouts(world.size()) : a.layouts;

  auto run_all = [&](int64_t seq, int64_t timed) {
    std::vector<Row> rows;
    for (const std::string& n : names)
      rows.push_back(n == "single" ? run_single(world, a, config, tokens, seq, timed)
                                   : run_layout(world, a, config, tokens, n, seq, timed));
    return rows;
  };
  if (leader)
    out << "tsp bench: " << config.summary() << ", global batch " << a.batch << " x seq " << a.seq
        << ", " << a.dtype << (a.recompute ? " recompute" : "") << ", " << world.size()
        << " ranks; best of " << a.steps << " steps after 1 warm-up; memory = peak per rank "
        << "(max over ranks), sent = bytes sent per step (max over ranks)\n";
  const std::vector<Row> rows = run_all(a.seq, a.steps);
  if (leader) out << table(rows, true) << std::flush;
  std::vector<Row> sweep;
  for (int64_t s : a.sweep_seq) {
    std::vector<Row> r = run_all(s, 0);
    sweep.insert(sweep.end(), r.begin(), r.end());
  }
  if (leader && !sweep.empty()) out << "\nsequence-length sweep (one step each):\n" << table(sweep, false);
  if (!leader) return 0;
  if (!a.json_path.empty()) {
    nlohmann::json j = {{"generator", "tsp bench"}, {"model", config.summary()}, {"ranks", world.size()}, {"batch", a.batch},
                        {"dtype", a.dtype}, {"rows", nlohmann::json::array()}, {"sweep", nlohmann::json::array()}};
    for (const Row& r : rows) j["rows"].push_back(to_json(r));
    for (const Row& r : sweep) j["sweep"].push_back(to_json(r));
    write_file_atomically(a.json_path, j.dump(2) + "\n");
  }
  if (!a.svg_path.empty()) {
    const std::string svg = bench_svg(a, config, world.size(), rows, sweep);
    write_file_atomically(a.svg_path, svg);
  }
  return 0;
}

}  // namespace

CLI::App* add_bench_command(CLI::App& app, BenchArgs& a) {
  CLI::App* cmd = app.add_subcommand(
      "bench", "run layouts side by side on the same model and batch (under mpirun): memory, bytes, speed");
  cmd->add_option("--layouts", a.layouts,
                  "planner names, e.g. single,tsp2,tp2,sp2,dp2,fsdp-sp2,tp2xsp2 (default: all for -np)")
      ->delimiter(',');
  cmd->add_option("--preset", a.preset, "model preset")->capture_default_str();
  cmd->add_option("--config", a.config, "model config.json (replaces --preset)");
  cmd->add_option("--batch", a.batch, "global batch (sequences per step)")
      ->capture_default_str()
      ->check(int_range(1, int64_t{1} << 24));
  cmd->add_option("--seq", a.seq, "tokens per sequence")->capture_default_str()->check(int_range(1, int64_t{1} << 30));
  cmd->add_option("--steps", a.steps, "timed steps per layout (after one warm-up step)")
      ->capture_default_str()
      ->check(int_range(0, 1'000'000'000));
  cmd->add_option("--dtype", a.dtype, "f32 or bf16")->capture_default_str();
  cmd->add_flag("--recompute", a.recompute, "full activation recomputation");
  cmd->add_option("--sweep-seq", a.sweep_seq, "also one step of every layout at these lengths")
      ->delimiter(',')
      ->check(int_range(1, int64_t{1} << 30));
  cmd->add_option("--json", a.json_path, "write the results as JSON");
  cmd->add_option("--svg", a.svg_path, "write SVG charts (memory by category, bytes per step, tokens/s; with --sweep-seq: memory and bytes against seq, measured and predicted)");
  cmd->add_flag("--infer", a.infer,
                "decode instead of training: prefill --seq tokens, then --steps rounds of "
                "--new-tokens decode steps, single rank vs TSP vs TP (tokens/s, KV bytes per rank)");
  cmd->add_option("--new-tokens", a.new_tokens, "--infer: decode steps per round")
      ->capture_default_str()
      ->check(int_range(1, int64_t{1} << 30));
  return cmd;
}

int run_bench(const BenchArgs& a, std::ostream& out) {
  comm::MpiEnvironment env(nullptr, nullptr);
  try {
    return bench_body(a, out);
  } catch (const std::exception& e) {
    out.flush();
    comm::abort_job(one_line_message(e.what()));
  }
}

}  // namespace tsp::cli
