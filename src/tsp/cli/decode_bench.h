// Inference benchmark shared by `tsp bench --infer` and bench/infer/infer_bench.cpp: prefill of
// one prompt, then interleaved rounds of decode steps, single-rank vs TSP vs TP (docs/inference.md).
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

#include "tsp/comm/communicator.h"
#include "tsp/model/model_config.h"

namespace tsp::cli {

struct DecodeBenchOptions {
  int64_t prompt = 8192;   // prompt tokens (batch 1)
  int64_t fresh = 64;      // decode steps per round
  int64_t rounds = 3;      // interleaved rounds; the best gives the decode speed
  std::string layouts = "single,tsp,tp";  // comma-separated subset
};

// Positions the benchmark needs: prompt + rounds * fresh.
inline int64_t decode_bench_capacity(const DecodeBenchOptions& o) { return o.prompt + o.fresh * o.rounds; }

// Collective over `world` (TSP and TP at degree world.size(); single-rank on rank 0). Weights are
// ModelWeights::initialize(config, config.torch_dtype(), 1) and their shards. Rank 0 writes one
// line per layout to `out`.
void run_decode_bench(comm::Communicator& world, const model::ModelConfig& config,
                      const DecodeBenchOptions& options, std::ostream& out);

}  // namespace tsp::cli
