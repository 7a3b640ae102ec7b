// GoogleTest main for *_mpi_test binaries: initialises MPI through run_mpi_main, runs the tests on
// every rank, and makes the exit code the verdict of the whole job: the number of failing ranks is
// summed to every rank, rank 0 reports it, and every rank exits non-zero if any rank failed.
// Rank 0 prints the usual GoogleTest output; other ranks print only their failures, tagged.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>

#include "tsp/comm/mpi_environment.h"

namespace {

class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_,
                 r.file_name() ? r.file_name() : "?", r.line_number(), r.summary());
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    if (info.result()->Failed())
      std::fprintf(stderr, "[rank %d] FAILED %s.%s\n", rank_, info.test_suite_name(), info.name());
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  return tsp::comm::run_mpi_main(argc, argv, [&](tsp::comm::MpiEnvironment& env) {
    ::testing::InitGoogleTest(&argc, argv);
    if (env.world_rank() != 0) {
      ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
      delete listeners.Release(listeners.default_result_printer());
      listeners.Append(new RankFailurePrinter(env.world_rank()));
    }
    const int local_failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
    int failed_ranks = 0;
    tsp::comm::check_mpi(
        MPI_Allreduce(&local_failed, &failed_ranks, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD),
        "MPI_Allreduce(test verdict)");
    if (env.world_rank() == 0) {
      std::fprintf(stderr, "MPI test verdict: %d of %d ranks failed\n", failed_ranks,
                   env.world_size());
    }
    return failed_ranks == 0 ? 0 : 1;
  });
}
