// Inference benchmark shared by `tsp bench --infer` and bench/infer: one model and prompt,
// single-rank on rank 0 (the other ranks wait) and then TSP and TP decode over all ranks: prefill
// and decode tokens/s side by side, decode ratio, KV bytes per rank, bytes sent per token.
#include "tsp/cli/decode_bench.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <optional>

#include "tsp/comm/collectives.h"
#include "tsp/core/check.h"
#include "tsp/core/random.h"
#include "tsp/infer/single/decode_step.h"
#include "tsp/infer/kv_cache.h"
#include "tsp/infer/single/prefill.h"
#include "tsp/infer/tp/tp_decode.h"
#include "tsp/infer/tsp/tsp_decode.h"
#include "tsp/model/model_weights.h"

namespace tsp::cli {

namespace {

using Clock = std::chrono::steady_clock;
using Prompts = std::vector<std::vector<int32_t>>;

std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint64_t stream) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  Rng rng(7, stream);
  for (auto& id : t) id = static_cast<int32_t>(rng.below(static_cast<uint64_t>(vocab)));
  return t;
}

// Whether `name` is one of the comma-separated `list`.
bool listed(const std::string& list, const std::string& name) {
  return ("," + list + ",").find("," + name + ",") != std::string::npos;
}

double seconds(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// One layout's measurement (a decode "token" is one step of batch 1).
struct Result {
  double prefill_s = 0, decode_s = 1e30;  // the prefill; the best decode round
  int64_t kv_bytes = 0, sent_per_token = 0;
  double wait_s = 0;                      // comm wait of the best decode round
};

// A layout under test. The single-rank one works on rank 0 only (its callbacks do nothing
// elsewhere: the other ranks wait at the barrier, idle cores do not help it).
struct Layout {
  std::string name;
  std::function<void()> prefill;
  std::function<void(int64_t)> step;           // decode step t, fed forced[t] (teacher forcing:
                                               // the work does not depend on which token it is)
  std::function<int64_t()> kv_bytes;
  std::function<double()> comm_wait = [] { return 0.0; };
  Result r = {};
};

// The slowest rank defines a time (ranks that did nothing contribute 0).
double slowest(comm::Communicator& world, double t) {
  Tensor x = Tensor::empty({1}, DType::f32, MemCategory::workspace);
  x.data<float>()[0] = static_cast<float>(t);
  comm::all_reduce(world, x, comm::ReduceOp::max);
  return x.data<float>()[0];
}

void time_prefill(comm::Communicator& world, Layout& l) {
  world.barrier();
  const auto t0 = Clock::now();
  l.prefill();
  l.r.prefill_s = slowest(world, seconds(t0));
}

// One round of `fresh` decode steps; keeps the best round (with its traffic and comm wait).
void time_round(comm::Communicator& world, Layout& l, int64_t fresh) {
  world.barrier();
  const int64_t sent0 = world.ledger().total().bytes_sent;
  const double wait0 = l.comm_wait();
  const auto t0 = Clock::now();
  for (int64_t t = 0; t < fresh; ++t) l.step(t);
  const double local = seconds(t0);
  const int64_t sent = (world.ledger().total().bytes_sent - sent0) / fresh;
  const double wait = l.comm_wait() - wait0;
  const double t = slowest(world, local);
  if (t < l.r.decode_s) {
    l.r.decode_s = t;
    l.r.sent_per_token = sent;
    l.r.wait_s = wait;
  }
}

// Every rank's value, for the table.
std::vector<int64_t> gather_i64(comm::Communicator& world, int64_t v) {
  Tensor in = Tensor::empty({1}, DType::i64, MemCategory::workspace);
  in.data<int64_t>()[0] = v;
  Tensor all = Tensor::empty({world.size()}, DType::i64, MemCategory::workspace);
  comm::all_gather(world, in, all);
  return {all.data<int64_t>(), all.data<int64_t>() + world.size()};
}

void print_row(std::ostream& out, const Layout& l, const DecodeBenchOptions& a, double single_decode_s,
               const std::vector<int64_t>& kv) {
  const Result& r = l.r;
  char buf[256];
  std::snprintf(buf, sizeof buf, "  %-15s prefill %8.1f tokens/s (%7.2f s) | decode %7.1f tokens/s (%6.3f s)",
                l.name.c_str(), static_cast<double>(a.prompt) / r.prefill_s, r.prefill_s,
                static_cast<double>(a.fresh) / r.decode_s, r.decode_s);
  out << buf;
  if (single_decode_s > 0) {
    std::snprintf(buf, sizeof buf, " x%.2f", single_decode_s / r.decode_s);
    out << buf;
  }
  out << " | kv bytes/rank";
  for (const int64_t b : kv)
    if (b > 0) out << " " << b;
  if (r.sent_per_token > 0) {
    std::snprintf(buf, sizeof buf, " | sent %lld B/token | decode comm wait %.2f s",
                  static_cast<long long>(r.sent_per_token), r.wait_s);
    out << buf;
  }
  out << "\n";
}

}  // namespace

void run_decode_bench(comm::Communicator& world, const model::ModelConfig& config,
                      const DecodeBenchOptions& a, std::ostream& out) {
  TSP_CHECK(a.fresh >= 1 && a.rounds >= 1 && a.prompt >= 1, "--prompt, --new and --rounds must be >= 1");
  TSP_CHECK(decode_bench_capacity(a) <= config.max_position_embeddings(), "the prompt (", a.prompt,
            ") and ", a.rounds, " rounds of ", a.fresh, " new tokens need ", decode_bench_capacity(a),
            " positions, the model has ", config.max_position_embeddings());
  const model::ModelConfig& c = config;
  const int64_t vocab = c.vocab_size();
  const int D = world.size();
  const bool leader = world.rank() == 0;
  const Prompts prompts{random_ids(a.prompt, vocab, 1)};
  Prompts forced;
  for (int64_t t = 0; t < a.fresh; ++t) forced.push_back(random_ids(1, vocab, 100 + static_cast<uint64_t>(t)));
  if (leader)
    out << "model " << c.summary() << ", prompt " << a.prompt << " tokens, then the best of "
        << a.rounds << " interleaved rounds of " << a.fresh << " decode steps (batch 1), " << D
        << " ranks\n";

  // Single rank: the whole model on rank 0. TSP and TP: the same weights
  // (TpWeights::initialize = the shards of ModelWeights::initialize) on every rank.
  const bool want_single = listed(a.layouts, "single"), want_tsp = listed(a.layouts, "tsp"),
             want_tp = listed(a.layouts, "tp");
  std::optional<model::ModelWeights> full;
  std::optional<infer::KvCache> single_cache;
  if (want_single && leader) {
    full.emplace(model::ModelWeights::initialize(c, c.torch_dtype(), 1));
    single_cache.emplace(c, full->dtype(), 1, decode_bench_capacity(a));
  }
  std::optional<parallel::TpWeights> shards;
  if (want_tsp || want_tp) shards.emplace(parallel::TpWeights::initialize(c, c.torch_dtype(), 1, D, world.rank()));
  std::optional<infer::TspDecoder> tsp;
  std::optional<infer::TpDecoder> tp;
  std::vector<Layout> layouts;
  if (want_single)
    layouts.push_back({"single (1 core)",
                       [&] { if (leader) infer::prefill(*full, prompts, *single_cache); },
                       [&](int64_t t) { if (leader) infer::decode_step(*full, forced[static_cast<size_t>(t)], *single_cache); },
                       [&] { return leader ? single_cache->bytes() : int64_t{0}; }, [] { return 0.0; }, {}});
  if (want_tsp) {
    tsp.emplace(world, *shards, 1, decode_bench_capacity(a));
    layouts.push_back({"tsp D=" + std::to_string(D), [&] { tsp->prefill(prompts); },
                       [&](int64_t t) { tsp->decode_step(forced[static_cast<size_t>(t)]); },
                       [&] { return tsp->cache().bytes(); }, [&] { return tsp->comm_wait_seconds(); }, {}});
  }
  if (want_tp) {
    tp.emplace(world, *shards, 1, decode_bench_capacity(a));
    layouts.push_back({"tp T=" + std::to_string(D), [&] { tp->prefill(prompts); },
                       [&](int64_t t) { tp->decode_step(forced[static_cast<size_t>(t)]); },
                       [&] { return tp->cache().bytes(); }, [&] { return tp->comm_wait_seconds(); }, {}});
  }
  for (Layout& l : layouts) time_prefill(world, l);
  // Rounds interleaved over the layouts, so that a slow phase of the shared machine hits them alike.
  for (int64_t round = 0; round < a.rounds; ++round)
    for (Layout& l : layouts) time_round(world, l, a.fresh);
  const double single_decode = want_single ? layouts.front().r.decode_s : 0;
  for (const Layout& l : layouts) {
    const std::vector<int64_t> kv = gather_i64(world, l.kv_bytes());
    if (leader) print_row(out, l, a, &l == &layouts.front() ? 0 : single_decode, kv);
  }
  out.flush();
}


}  // namespace tsp::cli
