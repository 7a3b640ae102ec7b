// `tsp generate`: text continuation from a checkpoint with its tokenizer (tsp/data/tokenizer), printed token by
// token, then prefill and decode speeds and the KV-cache size. Single rank, or TSP / TP under mpirun.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace tsp::comm {
class Communicator;
}

namespace tsp::cli {

struct GenerateArgs {
  std::string checkpoint;
  std::string prompt;
  int64_t max_new_tokens = 128;
  float temperature = 0.8f;
  int64_t top_k = 0;
  float top_p = 0.95f;
  uint64_t seed = 1234;
  bool greedy = false;
  std::string layout = "single";  // "tsp" (with --tsp D) or "tp" (with --tp D): under mpirun -np D
  int64_t tsp = 1;
  int64_t tp = 1;
  double comm_timeout = 600;  // --layout tsp|tp: seconds in one MPI wait before the job aborts (0: off)
  std::string tokenizer = {};  // "": the checkpoint directory's; "byte"; or a directory
  std::vector<std::string> sampling_flags_given = {};  // --temperature, ... as typed (else generation_config.json)
};

// Adds the `generate` subcommand and its flags to `app`, bound to `args` (which must outlive the
// parse). The returned subcommand's parsed() says whether the user chose it.
CLI::App* add_generate_command(CLI::App& app, GenerateArgs& args);

// Runs `tsp generate`: loads the checkpoint, encodes BOS + the prompt's bytes, writes the prompt
// and then every generated token to `out` as it is sampled (flushed per token), then one summary
// line. Errors throw tsp::Error (the caller prints them as one line). With --layout tsp or tp,
// MPI is initialised here and run_generate_sharded runs on every rank of the world; under mpirun
// (world size > 1) any error on any rank prints "rank R: <message>" and aborts the whole job.
int run_generate(const GenerateArgs& args, std::ostream& out);

// The sharded generation on the ranks of `world` (MPI initialised by the caller; the world's size
// must be the layout's degree): each rank loads only its shards (infer::load_weight_shards), the
// tokens come from infer::sharded_generate, rank 0 writes them to `out` as they are
// sampled, then the summary line with every rank's KV-cache bytes (other ranks write nothing).
// Errors throw tsp::Error on the ranks that see them.
int run_generate_sharded(comm::Communicator& world, const GenerateArgs& args, std::ostream& out);

}  // namespace tsp::cli
