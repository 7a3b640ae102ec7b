// Bus bandwidth of each collective through the tsp::comm wrapper and through the raw MPI call, in
// the same run, on f32 buffers from 64 KiB to 64 MiB (powers of 4); plus MPI_Reduce_scatter vs the
// ring for reduce-scatter. Run at 2 ranks, one core each (docs/running.md):
//   mpirun -np 2 build/release/bench/comm/tsp_bench_comm [--min-bytes N] [--max-bytes N] [--rounds R]
//                                                        [--ops ring_shift,broadcast,...]
// (--ops: only these collectives; the reduce-scatter algorithm table needs reduce_scatter.)
// The last column is the wrapper's time per call in microseconds, from which a link's latency and
// bandwidth are fitted (bench/cluster/run.sh).
// Bus bandwidth follows nccl-tests: algbw = S / t with S the full buffer (the all-gather output,
// the reduce-scatter input); busbw = algbw * 2(n-1)/n for all-reduce, (n-1)/n for all-gather,
// reduce-scatter and all-to-all, 1 for broadcast and the ring shift. Each measurement is the best
// of `rounds` batches (~40 ms each, the slowest rank's time), wrapper and raw interleaved so both
// see the same machine state.
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "tsp/comm/collectives.h"
#include "tsp/comm/mpi/mpi_backend.h"
#include "tsp/comm/mpi_environment.h"

namespace {

using namespace tsp;
using namespace tsp::comm;

struct Options {
  int64_t min_bytes = int64_t{64} << 10;
  int64_t max_bytes = int64_t{64} << 20;
  int rounds = 5;
  double batch_s = 0.04;
  std::string ops;  // comma-separated collectives to run; empty: all
};

bool wanted(const Options& opt, const char* name) {
  if (opt.ops.empty()) return true;
  const std::string list = "," + opt.ops + ",";
  return list.find("," + std::string(name) + ",") != std::string::npos;
}

// Seconds per call of `fn`: best over rounds of the slowest rank's batch time.
std::vector<double> time_interleaved(Communicator& comm, const std::vector<std::function<void()>>& fns,
                                     const Options& opt) {
  const size_t k = fns.size();
  std::vector<int> iters(k);
  for (size_t j = 0; j < k; ++j) {  // warm up and size the batch from one call
    fns[j]();
    MPI_Barrier(mpi::handle_of(comm));
    double t0 = MPI_Wtime();
    fns[j]();
    double dt = MPI_Wtime() - t0, dt_max = 0;
    MPI_Allreduce(&dt, &dt_max, 1, MPI_DOUBLE, MPI_MAX, mpi::handle_of(comm));
    iters[j] = std::clamp(static_cast<int>(opt.batch_s / std::max(dt_max, 1e-7)), 2, 20000);
  }
  std::vector<double> best(k, 1e30);
  for (int r = 0; r < opt.rounds; ++r)
    for (size_t j0 = 0; j0 < k; ++j0) {
      const size_t j = (j0 + r) % k;  // rotate the order every round
      MPI_Barrier(mpi::handle_of(comm));
      const double t0 = MPI_Wtime();
      for (int i = 0; i < iters[j]; ++i) fns[j]();
      double dt = (MPI_Wtime() - t0) / iters[j], dt_max = 0;
      MPI_Allreduce(&dt, &dt_max, 1, MPI_DOUBLE, MPI_MAX, mpi::handle_of(comm));
      best[j] = std::min(best[j], dt_max);
    }
  return best;
}

std::string human(int64_t bytes) {
  char buf[32];
  if (bytes >= (int64_t{1} << 20))
    std::snprintf(buf, sizeof buf, "%lld MiB", static_cast<long long>(bytes >> 20));
  else
    std::snprintf(buf, sizeof buf, "%lld KiB", static_cast<long long>(bytes >> 10));
  return buf;
}

int run(MpiEnvironment& env, const Options& opt) {
  Communicator comm = Communicator::world();
  const int D = comm.size(), me = comm.rank();
  const bool root = me == 0;
  if (root)
    std::printf("tsp_bench_comm: %d ranks, f32, bus bandwidth in GB/s (1e9 B/s), best of %d\n"
                "%-15s %8s %10s %10s %7s %12s\n",
                D, opt.rounds, "op", "size", "wrapper", "raw MPI", "ratio", "wrapper us");
  std::vector<std::string> rs_lines;
  for (int64_t bytes = opt.min_bytes; bytes <= opt.max_bytes; bytes *= 4) {
    const int64_t n = bytes / 4 / D * D;  // elements of the full buffer, divisible by D
    const int64_t S = n * 4;
    const int cn = static_cast<int>(n), cb = static_cast<int>(n / D);
    Tensor full = Tensor::zeros({n}, DType::f32, MemCategory::comm);
    Tensor full2 = Tensor::zeros({n}, DType::f32, MemCategory::comm);
    Tensor part = Tensor::zeros({n / D}, DType::f32, MemCategory::comm);
    MPI_Comm c = mpi::handle_of(comm);
    const std::vector<int> counts(D, cb);
    const int next = comm.next_rank(), prev = comm.prev_rank();

    struct Case {
      const char* name;
      double bus_factor;
      std::function<void()> wrapper, raw;
    };
    const double f_ar = 2.0 * (D - 1) / D, f_ag = static_cast<double>(D - 1) / D;
    std::vector<Case> cases = {
        {"broadcast", 1.0, [&] { broadcast(comm, full, 0); },
         [&] { MPI_Bcast(full.raw(), cn, MPI_FLOAT, 0, c); }},
        {"all_reduce", f_ar, [&] { all_reduce(comm, full); },
         [&] { MPI_Allreduce(MPI_IN_PLACE, full.raw(), cn, MPI_FLOAT, MPI_SUM, c); }},
        {"all_gather", f_ag, [&] { all_gather(comm, part, full); },
         [&] { MPI_Allgather(part.raw(), cb, MPI_FLOAT, full.raw(), cb, MPI_FLOAT, c); }},
        {"reduce_scatter", f_ag, [&] { reduce_scatter(comm, full, part, ReduceOp::sum, ReduceScatterAlgo::automatic); },
         [&] { MPI_Reduce_scatter(full.raw(), part.raw(), counts.data(), MPI_FLOAT, MPI_SUM, c); }},
        {"all_to_all", f_ag, [&] { all_to_all(comm, full, full2); },
         [&] { MPI_Alltoall(full.raw(), cb, MPI_FLOAT, full2.raw(), cb, MPI_FLOAT, c); }},
        {"ring_shift", 1.0, [&] { ring_shift(comm, full, full2, 1); },
         [&] {
           MPI_Sendrecv(full.raw(), cn, MPI_FLOAT, next, 0, full2.raw(), cn, MPI_FLOAT, prev, 0, c,
                        MPI_STATUS_IGNORE);
         }},
    };
    for (const Case& cs : cases) {
      if (!wanted(opt, cs.name)) continue;
      const std::vector<double> t = time_interleaved(comm, {cs.wrapper, cs.raw}, opt);
      const double w = S / t[0] * cs.bus_factor / 1e9, r = S / t[1] * cs.bus_factor / 1e9;
      if (root)
        std::printf("%-15s %8s %10.2f %10.2f %7.3f %12.1f\n", cs.name, human(S).c_str(), w, r, w / r, t[0] * 1e6);
    }
    // Reduce-scatter algorithm choice: MPI_Reduce_scatter vs the hand ring vs the block variant.
    if (!wanted(opt, "reduce_scatter")) continue;
    const std::vector<double> t = time_interleaved(
        comm,
        {[&] { reduce_scatter(comm, full, part, ReduceOp::sum, ReduceScatterAlgo::mpi); },
         [&] { reduce_scatter(comm, full, part, ReduceOp::sum, ReduceScatterAlgo::ring); },
         [&] { MPI_Reduce_scatter_block(full.raw(), part.raw(), cb, MPI_FLOAT, MPI_SUM, c); }},
        opt);
    char line[160];
    std::snprintf(line, sizeof line, "%-15s %8s %10.2f %10.2f %10.2f   -> %s", "reduce_scatter",
                  human(S).c_str(), S / t[0] * f_ag / 1e9, S / t[1] * f_ag / 1e9,
                  S / t[2] * f_ag / 1e9, t[1] < t[0] ? "ring" : "MPI_Reduce_scatter");
    rs_lines.push_back(line);
  }
  if (root && !rs_lines.empty()) {
    std::printf("\nreduce-scatter algorithms, bus bandwidth GB/s (automatic uses the ring from %lld KiB of input)\n"
                "%-15s %8s %10s %10s %10s\n",
                static_cast<long long>(kRingReduceScatterMinBytes >> 10), "op", "size",
                "MPI_RS", "ring", "RS_block");
    for (const std::string& l : rs_lines) std::printf("%s\n", l.c_str());
  }
  (void)env;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--min-bytes")) opt.min_bytes = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--max-bytes")) opt.max_bytes = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--rounds")) opt.rounds = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--batch-s")) opt.batch_s = std::atof(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--ops")) opt.ops = argv[i + 1];
  }
  return run_mpi_main(argc, argv, [&](MpiEnvironment& env) { return run(env, opt); });
}
