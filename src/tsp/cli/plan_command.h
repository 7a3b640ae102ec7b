// `tsp plan`: the analytic planner on the command line (memory, traffic and predicted time of
// layouts on a cluster, the layout search) and `--calibrate`, which measures this machine.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace tsp::cli {

struct PlanArgs {
  std::string model = "7b";          // preset name or config.json path
  int64_t seq = 0;                   // required unless --calibrate
  int64_t batch = 1;                 // sequences per micro-batch per model replica
  int64_t micro_batches = 1;
  std::string dtype;                 // bf16 | fp32; empty: the model's torch_dtype
  std::string reduce_dtype = "f32";  // wire dtype of activation reductions (engine: f32)
  bool recompute = false;
  std::string cluster = "mi300x";    // preset, "local" or a JSON file
  int64_t devices = 0;               // 0: one node (or the --layouts' device count)
  std::vector<std::string> layouts;  // empty: the comparison set
  bool search = false;
  int64_t max_pp = 1;
  int64_t top = 10;
  std::string format = "table";      // table | json
  std::string json_path;             // also write the JSON here
  bool detail = false;
  bool calibrate = false;
  std::string out_path;              // --calibrate output; empty: default_local_cluster_path()
  double calibrate_bandwidth_gbs = 0;  // > 0: use instead of the memcpy measurement
  double calibrate_latency_us = 1.0;
};

// Adds the `plan` subcommand and its flags to `app`, bound to `args` (which must outlive the
// parse). The returned subcommand's parsed() says whether the user chose it.
CLI::App* add_plan_command(CLI::App& app, PlanArgs& args);

// Runs `tsp plan`: prints the plans (table or JSON) to `out`, or calibrates this machine and
// writes the `local` cluster file. Errors throw tsp::Error (the caller prints them as one line).
int run_plan(const PlanArgs& args, std::ostream& out);

}  // namespace tsp::cli
