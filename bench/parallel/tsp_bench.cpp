// One training step (forward + backward) of the same model and global batch, single-rank on rank
// 0 (the other ranks wait) and then TSP over all ranks: tokens/s side by side from one run, the
// ratio, time blocked on communication, bytes sent and per-rank peak memory by category.
// Usage: mpirun -np 2 tsp_bench_tsp [--hidden 512 --heads 8 --kv-heads 8 --ffn 2048 --layers 2
//        --vocab 320 --batch 1 --seq 4096 --steps 3 --rounds 3 --dtype f32 --recompute
//        --baseline sleep|poll|only|skip]
// Each round runs the baseline and then TSP (each: one warm-up step, then `steps` timed); the
// headline takes the best step of each over all rounds, and the per-round ratios are printed.
//
// The single-rank baseline must have the machine to itself. A rank blocked in MPI_Barrier does not
// sleep: Open MPI busy-polls its shared-memory transport, so each waiting rank spins a core (and
// where two vCPUs are SMT siblings, takes half of rank 0's core), which slowed the baseline 2-3x
// and inflated the ratio. So by default (--baseline sleep) the waiting ranks sit in an
// MPI_Ibarrier that they test once per millisecond and otherwise nanosleep (no polling).
//   --baseline poll   the old way (blocking MPI_Barrier on the waiting ranks), to show the effect
//   --baseline only   only the single-rank baseline, e.g. `mpirun -np 1 tsp_bench_tsp --baseline
//                     only`: a process with no other rank at all, to cross-check the default
//   --baseline skip   only TSP
#include <mpi.h>

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tsp/comm/collectives.h"
#include "tsp/comm/mpi/mpi_backend.h"
#include "tsp/comm/mpi_environment.h"
#include "tsp/core/memory.h"
#include "tsp/core/random.h"
#include "tsp/model/transformer.h"
#include "tsp/parallel/tsp_model.h"
#include "tsp/parallel/zigzag.h"

namespace {

using namespace tsp;
using Clock = std::chrono::steady_clock;

struct Args {
  int64_t hidden = 512, heads = 8, kv_heads = 8, ffn = 2048, layers = 2, vocab = 320;
  int64_t batch = 1, seq = 4096, steps = 3, rounds = 3;
  std::string dtype = "f32";
  bool recompute = false;
  std::string baseline = "sleep";  // sleep | poll | only | skip
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
    else if (k == "--batch") a.batch = std::atoll(next());
    else if (k == "--seq") a.seq = std::atoll(next());
    else if (k == "--steps") a.steps = std::atoll(next());
    else if (k == "--rounds") a.rounds = std::atoll(next());
    else if (k == "--dtype") a.dtype = next();
    else if (k == "--recompute") a.recompute = true;
    else if (k == "--baseline") a.baseline = next();
    else comm::abort_job("unknown argument " + k);
  }
  if (a.baseline != "sleep" && a.baseline != "poll" && a.baseline != "only" && a.baseline != "skip")
    comm::abort_job("--baseline must be sleep, poll, only or skip, got " + a.baseline);
  if (a.kv_heads > a.heads) a.kv_heads = a.heads;
  if (a.steps < 1 || a.rounds < 1) comm::abort_job("--steps and --rounds must be at least 1");
  return a;
}

model::ModelConfig config_of(const Args& a) {
  model::ModelConfigFields f;
  f.hidden_size = a.hidden;
  f.intermediate_size = a.ffn;
  f.num_hidden_layers = a.layers;
  f.num_attention_heads = a.heads;
  f.num_key_value_heads = a.kv_heads;
  f.vocab_size = a.vocab;
  f.max_position_embeddings = a.seq;
  f.torch_dtype = parse_dtype(a.dtype);
  return model::ModelConfig(f);
}

Tensor random_ids(int64_t b, int64_t s, int64_t vocab, uint64_t stream) {
  Tensor t = Tensor::empty({b, s}, DType::i32, MemCategory::workspace);
  Rng rng(7, stream);
  for (int64_t i = 0; i < b * s; ++i) t.data<int32_t>()[i] = static_cast<int32_t>(rng.below(static_cast<uint64_t>(vocab)));
  return t;
}

double seconds(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// A barrier that does not spin: MPI_Ibarrier, then MPI_Test once per millisecond with a nanosleep
// in between, so a rank waiting here leaves its core (and any SMT sibling) idle.
void sleeping_barrier(comm::Communicator& world) {
  MPI_Request req;
  if (MPI_Ibarrier(comm::mpi::handle_of(world), &req) != MPI_SUCCESS) comm::abort_job("MPI_Ibarrier failed");
  for (int done = 0;;) {
    if (MPI_Test(&req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) comm::abort_job("MPI_Test failed");
    if (done) return;
    const timespec ms{0, 1'000'000};
    nanosleep(&ms, nullptr);
  }
}

// How the ranks other than 0 waited while rank 0 ran the baseline, for the printout.
std::string baseline_method(const std::string& mode, int world_size) {
  if (world_size == 1) return "rank 0 alone (no other MPI rank in this job)";
  const bool one = world_size == 2;
  const std::string others = one ? "rank 1" : "ranks 1.." + std::to_string(world_size - 1);
  if (mode == "poll")
    return "rank 0 while " + others + (one ? " waits" : " wait") +
           " in a blocking MPI_Barrier (Open MPI busy-polls: the baseline shares the machine with "
           "spinning ranks, NOT a clean baseline)";
  return "rank 0 while " + others + (one ? " sleeps" : " sleep") +
         " (MPI_Ibarrier tested every 1 ms, nanosleep between: no polling)";
}

struct Timing {
  double step_s = 0;  // best step
  double wait_s = 0;  // comm wait of that step
  parallel::CommClock wait_by_site;  // the same, per site
};

std::vector<int64_t> peaks() {
  std::vector<int64_t> p;
  for (int c = 0; c < kNumMemCategories; ++c)
    p.push_back(MemoryLedger::process().stats(static_cast<MemCategory>(c)).peak_bytes);
  p.push_back(process_peak_rss_bytes());
  return p;
}

void print_peaks(const char* label, const std::vector<int64_t>& p) {
  std::printf("  %-22s", label);
  for (int64_t v : p) std::printf(" %9.2f", static_cast<double>(v) / (1 << 20));
  std::printf("\n");
}

// Single-rank steps on rank 0 (the others wait without spinning, see the top of this file):
// step 0 warms up (primitive creation, page faults), the best of the next `steps` counts.
Timing single_round(const Args& a, comm::Communicator& world, const model::ModelConfig& config,
                    const model::TransformerOptions& options, const Tensor& tokens,
                    const Tensor& targets, std::vector<int64_t>& peaks_out) {
  Timing single{1e30, 0, {}};
  if (world.rank() == 0) {
    MemoryLedger::process().release_cached();  // the RSS column starts from live bytes
    MemoryLedger::process().reset_peaks();
    reset_process_peak_rss();
    const int64_t n_valid = a.batch * a.seq;
    const model::ModelWeights w = model::ModelWeights::initialize(config, config.torch_dtype(), 1);
    model::ModelWeights grads(config, DType::f32, MemCategory::grads);
    model::Transformer model(config, options);
    for (int64_t s = 0; s <= a.steps; ++s) {
      const auto t0 = Clock::now();
      model.forward_backward(w, tokens, targets, grads, 1.f / static_cast<float>(n_valid));
      if (s > 0) single.step_s = std::min(single.step_s, seconds(t0));
    }
    peaks_out = peaks();
  }
  if (a.baseline == "poll") world.barrier();
  else sleeping_barrier(world);
  return single;
}

// TSP steps over all ranks, each started together (barrier); step 0 warms up. The best of the
// next `steps` on this rank, its comm wait per site and bytes sent.
Timing tsp_round(const Args& a, comm::Communicator& world, const model::ModelConfig& config,
                 const model::TransformerOptions& options, const Tensor& tokens,
                 const Tensor& targets, int64_t& bytes_sent, std::vector<int64_t>& peaks_out) {
  const int D = world.size(), rank = world.rank();
  const int64_t n_valid = a.batch * a.seq;
  MemoryLedger::process().release_cached();  // the single-rank run's buffers are not this run's
  MemoryLedger::process().reset_peaks();
  reset_process_peak_rss();
  Timing tsp{1e30, 0, {}};
  {
    const parallel::TpWeights w =
        parallel::TpWeights::initialize(config, config.torch_dtype(), 1, D, rank);
    parallel::TpWeights grads(config, DType::f32, D, rank, MemCategory::grads);
    parallel::TspTransformer model(world, config, options);
    const parallel::Zigzag z(a.seq, D, rank);
    const Tensor tok = z.take_local(tokens, MemCategory::workspace);
    const Tensor tgt = z.take_local(targets, MemCategory::workspace);
    for (int64_t s = 0; s <= a.steps; ++s) {
      world.barrier();
      const parallel::CommClock wait0 = model.comm_wait();
      const int64_t sent0 = world.ledger().total().bytes_sent;
      const auto t0 = Clock::now();
      model.forward_backward(w, tok, tgt, a.seq, grads, 1.f / static_cast<float>(n_valid));
      const double t = seconds(t0);
      if (s > 0 && t < tsp.step_s) {
        const parallel::CommClock waited = model.comm_wait().since(wait0);
        tsp = {t, waited.seconds, waited};
        bytes_sent = world.ledger().total().bytes_sent - sent0;
      }
    }
  }
  peaks_out = peaks();
  return tsp;
}

// The slowest rank's step time (the step of a synchronous job).
double slowest(comm::Communicator& world, double seconds_here) {
  Tensor t = Tensor::empty({1}, DType::f32, MemCategory::workspace);
  t.data<float>()[0] = static_cast<float>(seconds_here);
  comm::all_reduce(world, t, comm::ReduceOp::max);
  return t.data<float>()[0];
}

int run(int argc, char** argv) {
  const Args a = parse(argc, argv);
  comm::Communicator world = comm::Communicator::world();
  const int D = world.size(), rank = world.rank();
  const model::ModelConfig config = config_of(a);
  const bool run_single = a.baseline != "skip", run_tsp = a.baseline != "only";
  if (run_tsp) parallel::validate_tsp(config, D, a.seq);
  const model::TransformerOptions options{.dtype = config.torch_dtype(), .recompute = a.recompute};
  const Tensor tokens = random_ids(a.batch, a.seq, a.vocab, 1);
  const Tensor targets = random_ids(a.batch, a.seq, a.vocab, 2);
  const int64_t n_valid = a.batch * a.seq;
  const double tokens_per_step = static_cast<double>(n_valid);

  // Rounds alternate the baseline and TSP, so a machine whose speed drifts over seconds (a shared
  // VM host) slows both sides of each round's ratio alike; the headline is the best step of each
  // over all rounds, the per-round ratios and their median are printed beside it.
  Timing single{1e30, 0, {}}, tsp{1e30, 0, {}};
  std::vector<int64_t> single_peaks, mine;
  std::vector<double> round_single, round_tsp;
  int64_t bytes_sent = 0;
  for (int64_t round = 0; round < a.rounds; ++round) {
    if (run_single) {
      std::vector<int64_t> p;  // the first round's: later ones would also see TSP's leftovers
      const Timing t = single_round(a, world, config, options, tokens, targets, p);
      if (round == 0) single_peaks = p;
      round_single.push_back(t.step_s);
      if (t.step_s < single.step_s) single = t;
    }
    if (!run_tsp) continue;
    int64_t sent = 0;
    const Timing t = tsp_round(a, world, config, options, tokens, targets, sent, mine);
    round_tsp.push_back(slowest(world, t.step_s));
    if (t.step_s < tsp.step_s) {
      tsp = t;
      bytes_sent = sent;
    }
  }
  if (!run_tsp) {
    if (rank == 0) {
      std::printf("model %s dtype %s%s, batch %lld x seq %lld, %lld timed steps (best of)\n",
                  config.summary().c_str(), a.dtype.c_str(), a.recompute ? " recompute" : "",
                  static_cast<long long>(a.batch), static_cast<long long>(a.seq),
                  static_cast<long long>(a.steps));
      std::printf("  single-rank (1 core): %8.3f s/step  %8.0f tokens/s\n", single.step_s,
                  tokens_per_step / single.step_s);
      std::printf("  baseline measured on %s\n", baseline_method(a.baseline, D).c_str());
      std::printf("peak MiB per category:   ");
      for (int c = 0; c < kNumMemCategories; ++c)
        std::printf(" %9s", std::string(mem_category_name(static_cast<MemCategory>(c))).c_str());
      std::printf(" %9s\n", "rss");
      print_peaks("single-rank", single_peaks);
    }
    return 0;
  }

  // The most any rank waited in its best step (the step time itself: round_tsp).
  Tensor times = Tensor::empty({2}, DType::f32, MemCategory::workspace);
  times.data<float>()[0] = static_cast<float>(tsp.step_s);
  times.data<float>()[1] = static_cast<float>(tsp.wait_s);
  comm::all_reduce(world, times, comm::ReduceOp::max);
  Tensor all = Tensor::empty({static_cast<int64_t>(mine.size()) * D}, DType::i64, MemCategory::workspace);
  Tensor in = Tensor::empty({static_cast<int64_t>(mine.size())}, DType::i64, MemCategory::workspace);
  std::memcpy(in.raw(), mine.data(), mine.size() * sizeof(int64_t));
  comm::all_gather(world, in, all);
  // Where each rank waited in its best step, per site (rows) and rank (columns).
  Tensor site_in = Tensor::empty({parallel::kNumCommSites}, DType::f32, MemCategory::workspace);
  for (int i = 0; i < parallel::kNumCommSites; ++i)
    site_in.data<float>()[i] = static_cast<float>(tsp.wait_by_site.by_site[static_cast<size_t>(i)]);
  Tensor site_all = Tensor::empty({parallel::kNumCommSites * D}, DType::f32, MemCategory::workspace);
  comm::all_gather(world, site_in, site_all);
  if (rank == 0) {
    // The best round's slowest rank (each round: every rank's best step, the slowest of them).
    const double t_tsp = *std::min_element(round_tsp.begin(), round_tsp.end());
    const double wait = times.data<float>()[1];
    std::printf("model %s dtype %s%s, batch %lld x seq %lld, %lld timed steps (best of)\n",
                config.summary().c_str(), a.dtype.c_str(), a.recompute ? " recompute" : "",
                static_cast<long long>(a.batch), static_cast<long long>(a.seq),
                static_cast<long long>(a.steps));
    if (run_single)
      std::printf("  single-rank (1 core): %8.3f s/step  %8.0f tokens/s\n", single.step_s,
                  tokens_per_step / single.step_s);
    std::printf("  tsp D=%d (1 core/rank): %8.3f s/step  %8.0f tokens/s", D, t_tsp,
                tokens_per_step / t_tsp);
    if (run_single) std::printf("  ratio %.2fx", single.step_s / t_tsp);
    std::printf("  comm wait %.3f s (%.0f%%)  sent %.2f MiB/rank (rank 0)\n", wait,
                100.0 * wait / t_tsp, static_cast<double>(bytes_sent) / (1 << 20));
    if (run_single && a.rounds > 1) {
      std::vector<double> ratios;
      std::printf("  rounds (single / tsp s/step, ratio):");
      for (size_t r = 0; r < round_tsp.size(); ++r) {
        ratios.push_back(round_single[r] / round_tsp[r]);
        std::printf("  %.3f / %.3f %.2fx", round_single[r], round_tsp[r], ratios.back());
      }
      std::sort(ratios.begin(), ratios.end());
      const size_t m = ratios.size();
      std::printf("\n  median ratio of %zu rounds: %.2fx\n", m,
                  m % 2 ? ratios[m / 2] : 0.5 * (ratios[m / 2 - 1] + ratios[m / 2]));
    }
    if (run_single)
      std::printf("  baseline measured on %s\n", baseline_method(a.baseline, D).c_str());
    std::printf("comm wait by site, ms:   ");
    for (int r = 0; r < D; ++r) std::printf("  rank %-3d", r);
    std::printf("\n");
    for (int i = 0; i < parallel::kNumCommSites; ++i) {
      double any = 0;
      for (int r = 0; r < D; ++r) any += site_all.data<float>()[r * parallel::kNumCommSites + i];
      if (any == 0) continue;
      std::printf("  %-22s", std::string(parallel::comm_site_name(static_cast<parallel::CommSite>(i))).c_str());
      for (int r = 0; r < D; ++r)
        std::printf(" %9.1f", 1e3 * site_all.data<float>()[r * parallel::kNumCommSites + i]);
      std::printf("\n");
    }
    std::printf("peak MiB per category:   ");
    for (int c = 0; c < kNumMemCategories; ++c)
      std::printf(" %9s", std::string(mem_category_name(static_cast<MemCategory>(c))).c_str());
    std::printf(" %9s\n", "rss");
    if (run_single) print_peaks("single-rank", single_peaks);
    for (int r = 0; r < D; ++r) {
      const std::vector<int64_t> p(all.data<int64_t>() + r * mine.size(),
                                   all.data<int64_t>() + (r + 1) * mine.size());
      print_peaks(("tsp rank " + std::to_string(r)).c_str(), p);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return tsp::comm::run_mpi_main(argc, argv, [&](tsp::comm::MpiEnvironment&) { return run(argc, argv); });
}
