// Inference of one model and prompt, single-rank on rank 0 (the other ranks wait) and then TSP and
// TP over all ranks: prefill and decode tokens/s side by side, decode ratio, KV bytes per rank.
// Usage: mpirun -np 2 tsp_bench_infer [--hidden 512 --heads 8 --kv-heads 8 --ffn 2048 --layers 8
//        --vocab 320 --prompt 8192 --new 64 --rounds 3 --dtype f32 --layouts single,tsp,tp]
// One prefill of --prompt tokens per layout, then --rounds rounds of --new decode steps on the
// growing caches (batch 1), interleaved over the layouts: the best round gives the decode speed
// (the machine is shared and noisy).

#include <iostream>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "tsp/comm/collectives.h"
#include "tsp/comm/mpi_environment.h"
#include "tsp/core/check.h"
#include "tsp/core/random.h"
#include "tsp/cli/decode_bench.h"
#include "tsp/infer/kv_cache.h"
#include "tsp/infer/single/prefill.h"
#include "tsp/infer/tp/tp_decode.h"
#include "tsp/infer/tsp/tsp_decode.h"
#include "tsp/model/model_weights.h"

namespace {

using namespace tsp;
using Clock = std::chrono::steady_clock;
using Prompts = std::vector<std::vector<int32_t>>;

struct Args {
  int64_t hidden = 512, heads = 8, kv_heads = 8, ffn = 2048, layers = 8, vocab = 320;
  int64_t prompt = 8192, fresh = 64, rounds = 3;
  std::string dtype = "f32", layouts = "single,tsp,tp";
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) comm::abort_job("missing value after " + k);
      return argv[++i];
    };
    if (k == "--hidden") a.hidden = std::atoll(next());
    else if (k == "--heads") a.heads = std::atoll(next());
    else if (k == "--kv-heads") a.kv_heads = std::atoll(next());
    else if (k == "--ffn") a.ffn = std::atoll(next());
    else if (k == "--layers") a.layers = std::atoll(next());
    else if (k == "--vocab") a.vocab = std::atoll(next());
    else if (k == "--prompt") a.prompt = std::atoll(next());
    else if (k == "--new") a.fresh = std::atoll(next());
    else if (k == "--rounds") a.rounds = std::atoll(next());
    else if (k == "--dtype") a.dtype = next();
    else if (k == "--layouts") a.layouts = next();
    else comm::abort_job("unknown argument " + k);
  }
  if (a.kv_heads > a.heads) a.kv_heads = a.heads;
  return a;
}

int64_t capacity_of(const Args& a) { return a.prompt + a.fresh * a.rounds; }

model::ModelConfig config_of(const Args& a) {
  model::ModelConfigFields f;
  f.hidden_size = a.hidden;
  f.intermediate_size = a.ffn;
  f.num_hidden_layers = a.layers;
  f.num_attention_heads = a.heads;
  f.num_key_value_heads = a.kv_heads;
  f.vocab_size = a.vocab;
  f.max_position_embeddings = capacity_of(a) + 64;
  f.torch_dtype = parse_dtype(a.dtype);
  return model::ModelConfig(f);
}

int run(int argc, char** argv) {
  const Args a = parse(argc, argv);
  comm::Communicator world = comm::Communicator::world();
  cli::run_decode_bench(world, config_of(a),
                          {.prompt = a.prompt, .fresh = a.fresh, .rounds = a.rounds, .layouts = a.layouts},
                          std::cout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return tsp::comm::run_mpi_main(argc, argv, [&](tsp::comm::MpiEnvironment&) { return run(argc, argv); });
}
