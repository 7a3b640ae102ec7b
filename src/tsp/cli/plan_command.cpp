// `tsp plan`: flags, model/cluster/layout resolution, output, and the `--calibrate` measurements
// (one-thread GEMM rate through kernels::gemm and memcpy bandwidth) that describe this machine.
#include "tsp/cli/plan_command.h"

#include <CLI/CLI.hpp>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <thread>

#include "tsp/cli/int_range.h"
#include "tsp/core/atomic_file.h"
#include "tsp/core/check.h"
#include "tsp/core/output_file.h"
#include "tsp/core/checked_math.h"
#include "tsp/core/tensor.h"
#include "tsp/kernels/gemm.h"
#include "tsp/model/model_config.h"
#include "tsp/plan/cluster.h"
#include "tsp/plan/report.h"
#include "tsp/plan/search.h"

namespace tsp::cli {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

model::ModelConfig resolve_model(const std::string& name) {
  const fs::path p(name);
  if (p.extension() == ".json" || fs::is_regular_file(p)) return model::load_config(p);
  return model::preset(name);
}

plan::Workload workload_of(const PlanArgs& a, const model::ModelConfig& config) {
  TSP_CHECK(a.seq > 0, "--seq is required (tokens per sequence, e.g. --seq 131072)");
  const std::string dtype = a.dtype.empty()
                                ? (config.torch_dtype() == DType::bf16 ? "bf16" : "fp32")
                                : a.dtype;
  plan::Workload w{.batch = a.batch, .seq = a.seq, .micro_batches = a.micro_batches,
                   .precision = plan::precision_preset(dtype),
                   .recompute = a.recompute ? plan::Recompute::full : plan::Recompute::none};
  TSP_CHECK(a.reduce_dtype == "f32" || a.reduce_dtype == "bf16",
            "--reduce-dtype must be f32 or bf16, got '", a.reduce_dtype, "'");
  w.precision.reduce_bytes = a.reduce_dtype == "bf16" ? 2 : 4;
  plan::validate(w);
  // Before any formula runs: a byte count beyond int64 would print as a negative GiB or "fits".
  try {
    plan::validate_sizes(config, w);
  } catch (const SizeOverflow&) {
    const int64_t n = plan::largest_plannable_seq(config, w);
    if (n == 0)
      TSP_THROW(SizeOverflow, "--batch ", a.batch, " --micro-batches ", a.micro_batches,
                ": the predicted byte counts of this model overflow 64-bit at every --seq; lower --batch or "
                "--micro-batches");
    TSP_THROW(SizeOverflow, "--seq ", a.seq, ": the activation bytes overflow 64-bit at --batch ", a.batch,
              " and --micro-batches ", a.micro_batches, "; the largest --seq this model can be planned with is ", n);
  }
  return w;
}

std::vector<LayoutSpec> requested_layouts(const PlanArgs& a, int64_t devices,
                                            const plan::Cluster& cluster) {
  if (a.layouts.empty()) return plan::comparison_layouts(devices, cluster);
  std::vector<LayoutSpec> out;
  for (const std::string& name : a.layouts) {
    const LayoutSpec l = parse_layout(name);
    TSP_CHECK(l.devices() == devices, "--layouts: ", name, " uses ", l.devices(),
              " devices but --devices is ", devices);
    out.push_back(l);
  }
  return out;
}

int64_t device_count(const PlanArgs& a, const plan::Cluster& cluster) {
  if (a.devices > 0) return a.devices;
  TSP_CHECK(a.devices == 0, "--devices must be positive, got ", a.devices);
  if (!a.layouts.empty()) return parse_layout(a.layouts.front()).devices();
  return cluster.devices_per_node;
}

// Prints the table or the JSON; --json FILE also gets the JSON.
void emit(const PlanArgs& a, const plan::ReportContext& ctx,
          const std::vector<plan::LayoutPlan>& plans, const std::string& best,
          const std::string& table, std::ostream& out) {
  TSP_CHECK(a.format == "table" || a.format == "json", "--format must be table or json, got '",
            a.format, "'");
  const std::string json = plan::plans_to_json(ctx, plans, best);
  if (!a.json_path.empty()) write_file_atomically(a.json_path, json);
  out << (a.format == "json" ? json : table);
  out.flush();
}

// ---- --calibrate ----

// Best of `reps` timings of fn, in seconds.
template <class Fn>
double best_seconds(int reps, Fn&& fn) {
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = Clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

// One-thread rate of a 2048 x 1536 x 512 (M x N x K) GEMM, as one rank of the engine runs it.
double gemm_tflops(DType dtype) {
  constexpr int64_t M = 2048, N = 1536, K = 512;
  Tensor a = Tensor::empty({M, K}, dtype, MemCategory::workspace);
  Tensor b = Tensor::empty({K, N}, dtype, MemCategory::workspace);
  Tensor c = Tensor::empty({M, N}, DType::f32, MemCategory::workspace);
  a.fill(0.01f);
  b.fill(0.02f);
  kernels::gemm(a, b, c);  // warm-up: creates the oneDNN primitive
  const double s = best_seconds(5, [&] { kernels::gemm(a, b, c); });
  return 2.0 * M * N * K / s / 1e12;
}

// memcpy bandwidth of 64 MiB buffers: the stand-in for shared-memory MPI transfers.
double memcpy_gbs() {
  const size_t bytes = size_t{64} << 20;
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  const double s = best_seconds(5, [&] { std::memcpy(dst.data(), src.data(), bytes); });
  return static_cast<double>(bytes) / s / 1e9;
}

double memory_per_core_gib(int64_t cores) {
  const double total = static_cast<double>(sysconf(_SC_PHYS_PAGES)) *
                       static_cast<double>(sysconf(_SC_PAGESIZE));
  return total / static_cast<double>(cores) / static_cast<double>(int64_t{1} << 30);
}

// Where the numbers of the `local` cluster come from (stored in its description).
std::string calibration_source(const PlanArgs& a) {
  std::ostringstream os;
  os << "this machine, one rank per core: one-thread 2048x1536x512 GEMM rates ("
     << (kernels::gemm_native_bf16() ? "native bf16" : "bf16 widened to fp32") << "); bandwidth "
     << (a.calibrate_bandwidth_gbs > 0 ? "given by --calibrate-bandwidth-gbs"
                                       : "= memcpy of 64 MiB (stand-in for shared-memory MPI)")
     << "; latency " << a.calibrate_latency_us << " us (given or assumed)";
  return os.str();
}

int run_calibrate(const PlanArgs& a, std::ostream& out) {
  TSP_CHECK(a.calibrate_bandwidth_gbs >= 0 && a.calibrate_latency_us >= 0,
            "--calibrate-bandwidth-gbs and --calibrate-latency-us must be >= 0");
  const int64_t cores = std::max<int64_t>(1, std::thread::hardware_concurrency());
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);  // one rank per core, one thread per rank
  const double f32 = gemm_tflops(DType::f32), bf16 = gemm_tflops(DType::bf16);
  omp_set_num_threads(threads);
  const double measured_bw = memcpy_gbs();
  const double bw = a.calibrate_bandwidth_gbs > 0 ? a.calibrate_bandwidth_gbs : measured_bw;
  const plan::Cluster c{
      .name = "local",
      .description = calibration_source(a),
      .devices_per_node = cores,
      .memory_per_device_gib = memory_per_core_gib(cores),
      .matmul_tflops_bf16 = bf16,
      .matmul_tflops_fp32 = f32,
      .intra_node_topology = plan::IntraNodeTopology::switched,
      .intra_node_bandwidth_gbs = bw,
      .intra_node_latency_us = a.calibrate_latency_us,
      .inter_node_bandwidth_gbs = bw,  // one machine: no other node
      .inter_node_latency_us = a.calibrate_latency_us,
  };
  const fs::path path =
      a.out_path.empty() ? plan::default_local_cluster_path() : fs::path(a.out_path);
  plan::save_cluster(c, path);
  out << "calibrated: GEMM " << f32 * 1e3 << " GFLOP/s fp32, " << bf16 * 1e3
      << " GFLOP/s bf16 (one thread); memcpy " << measured_bw << " GB/s; " << cores
      << " cores\nwrote " << path.string() << "\n" << plan::cluster_to_json(c);
  return 0;
}

}  // namespace

CLI::App* add_plan_command(CLI::App& app, PlanArgs& a) {
  CLI::App* cmd = app.add_subcommand(
      "plan", "predict memory, traffic and step time of parallel layouts on a cluster (analytic)");
  cmd->add_option("--model", a.model, "preset (tiny, tiny-gqa, small, medium, 7b) or config.json")
      ->capture_default_str();
  // Sizes up to 2^40: beyond, no model plans without overflowing 64-bit byte counts anyway
  // (plan::validate_sizes names the largest --seq that does).
  cmd->add_option("--seq", a.seq, "tokens per sequence (required)")->check(int_range(1, int64_t{1} << 40));
  cmd->add_option("--batch", a.batch, "sequences per micro-batch per model replica")
      ->capture_default_str()
      ->check(int_range(1, int64_t{1} << 40));
  cmd->add_option("--micro-batches", a.micro_batches, "micro-batches per optimizer step")
      ->capture_default_str()
      ->check(int_range(1, int64_t{1} << 30));
  cmd->add_option("--dtype", a.dtype,
                  "bf16 (fp32 grads, AdamW masters) or fp32 (default: the model's dtype)");
  cmd->add_option("--reduce-dtype", a.reduce_dtype,
                  "wire dtype of activation all-reduces: f32 (the engine) or bf16")
      ->capture_default_str();
  cmd->add_flag("--recompute", a.recompute, "full activation recomputation");
  cmd->add_option("--cluster", a.cluster, "mi300x, h100, local (see --calibrate) or a JSON file")
      ->capture_default_str();
  cmd->add_option("--devices", a.devices, "number of devices (default: one node; at most 2^20)")
      ->check(int_range(1, plan::kMaxSearchDevices));
  cmd->add_option("--layouts", a.layouts,
                  "comma-separated layouts, e.g. tsp8,tp8,tp4xsp2,dp16xtsp8 (default: TSP, TP, "
                  "TP x SP, SP, DP, FSDP-SP of one node, with dp across nodes)")
      ->delimiter(',');
  cmd->add_flag("--search", a.search, "rank every valid layout of --devices by predicted tokens/s");
  cmd->add_option("--max-pp", a.max_pp, "largest pipeline degree tried by --search")
      ->capture_default_str()
      ->check(int_range(1, plan::kMaxSearchDevices));
  cmd->add_option("--top", a.top, "rows of the --search ranking (0: all)")
      ->capture_default_str()
      ->check(int_range(0, plan::kMaxSearchDevices));
  cmd->add_option("--format", a.format, "table or json")->capture_default_str();
  cmd->add_option("--json", a.json_path, "also write the JSON report to this file");
  cmd->add_flag("--detail", a.detail, "list every collective of every layout");
  cmd->add_flag("--calibrate", a.calibrate,
                "measure this machine and write the `local` cluster file");
  cmd->add_option("--out", a.out_path,
                  "--calibrate output (default: $TSP_LOCAL_CLUSTER, else "
                  "$XDG_CACHE_HOME/tsp/local_cluster.json, else ~/.cache/tsp/local_cluster.json)");
  cmd->add_option("--calibrate-bandwidth-gbs", a.calibrate_bandwidth_gbs,
                  "--calibrate: use this measured MPI bandwidth (GB/s) instead of memcpy's");
  cmd->add_option("--calibrate-latency-us", a.calibrate_latency_us,
                  "--calibrate: MPI latency (us)")
      ->capture_default_str();
  return cmd;
}

int run_plan(const PlanArgs& a, std::ostream& out) {
  if (!a.json_path.empty()) check_output_file(a.json_path, "--json", has_generator_marker);
  if (a.calibrate) return run_calibrate(a, out);
  const model::ModelConfig config = resolve_model(a.model);
  const plan::Cluster cluster = plan::resolve_cluster(a.cluster);
  const plan::Workload work = workload_of(a, config);
  const int64_t devices = device_count(a, cluster);
  const plan::ReportContext ctx{.model_name = a.model, .config = config, .work = work,
                                .cluster = cluster, .devices = devices};
  if (a.search) {
    TSP_CHECK(a.layouts.empty(), "--search enumerates every layout; drop --layouts");
    TSP_CHECK(a.top >= 0, "--top must be >= 0, got ", a.top);
    const plan::SearchResult r = plan::search(config, work, devices, cluster, {.max_pp = a.max_pp});
    std::vector<plan::LayoutPlan> all = r.ranked;
    all.insert(all.end(), r.rejected.begin(), r.rejected.end());
    const std::string best = r.ranked.empty() ? "" : r.ranked.front().layout.name();
    emit(a, ctx, all, best, plan::format_search(ctx, r, a.top, a.detail), out);
    return 0;
  }
  std::vector<plan::LayoutPlan> plans;
  for (const LayoutSpec& l : requested_layouts(a, devices, cluster)) {
    plans.push_back(plan::plan_layout(config, work, l, cluster));
  }
  emit(a, ctx, plans, "", plan::format_plans(ctx, plans, a.detail), out);
  return 0;
}

}  // namespace tsp::cli
