// `tsp bench`: the layouts side by side on the same model, data and global batch, under mpirun:
// peak memory per rank by category and bytes sent per step (measured, and the planner's
// prediction), step time, tokens/s and the loss after N steps; a sequence-length sweep; JSON and
// an SVG chart. docs/benchmarks.md.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace tsp::cli {

struct BenchArgs {
  std::vector<std::string> layouts;  // planner names: single, tsp2, tp2, sp2, tp2xsp2, dp2, fsdp-sp2;
                                     // empty: single and every layout of this world size
  std::string preset = "small";
  std::string config;                // config.json (replaces --preset)
  int64_t batch = 1;                 // global batch (sequences per step)
  int64_t seq = 1024;
  int64_t steps = 3;                 // timed steps (after one warm-up step)
  std::string dtype = "f32";
  bool recompute = false;
  std::vector<int64_t> sweep_seq;    // also run every layout at these sequence lengths (1 step)
  std::string json_path;
  std::string svg_path;
  bool infer = false;                // decode instead of training: single vs TSP vs TP
  int64_t new_tokens = 32;           // --infer: decode steps per round (--steps rounds, --seq prompt)
};

CLI::App* add_bench_command(CLI::App& app, BenchArgs& args);

// Runs the benchmark under MPI (initialises it; one rank is fine). Rank 0 prints the table.
int run_bench(const BenchArgs& args, std::ostream& out);

}  // namespace tsp::cli
