// --comm-timeout under mpirun (docs/running.md, "A stuck or dead peer"): SIGSTOP to one rank of
// `tsp train --layout tsp --tsp 2` mid-training ends the whole job within seconds of the timeout,
// with exit code 124 and rank 0's message naming the operation, the axis and the stopped rank, and
// leaves no process behind; a healthy run under a short timeout is unaffected (its losses equal
// those of a run without the watchdog). Registered by tests/cli/CMakeLists.txt as
// tsp_train_comm_timeout.np2 (label "mpi").
#include <gtest/gtest.h>

#include <regex>

#include "preemption_util.h"

namespace tsp::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int kTimeoutExitCode = 124;  // comm::kCommTimeoutExitCode (documented; checked here as the user sees it)

fs::path fresh_work_dir(const std::string& name) {
  const fs::path dir = fs::path(TSP_CLI_WORK_ROOT) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::vector<std::string> mpi_train_args(const fs::path& work, int64_t steps, const std::string& timeout) {
  return {TSP_MPIEXEC, TSP_MPIEXEC_NP_FLAG, "2", "--oversubscribe", TSP_BINARY, "train", "--preset", "tiny",
          "--steps", std::to_string(steps), "--batch", "8", "--seq", "64", "--warmup", "2", "--eval-batches", "1",
          "--layout", "tsp", "--tsp", "2", "--comm-timeout", timeout, "--checkpoint-dir", (work / "ck").string(),
          "--metrics", (work / "m.jsonl").string()};
}

bool process_exists(pid_t pid) { return fs::exists("/proc/" + std::to_string(pid)); }

TEST(TspMpiCommTimeout, SigstopOfOneRankEndsTheJobWithTheMessage) {
  const fs::path work = fresh_work_dir("mpi_comm_timeout_work");
  testing::Child c = testing::spawn(mpi_train_args(work, 2000, "3"), work / "out.txt");
  ASSERT_GT(c.pid, 0);
  ASSERT_TRUE(testing::wait_for_steps(c, work / "m.jsonl", 2, 120))
      << testing::describe(c) << "\n" << testing::slurp(work / "out.txt");
  const pid_t rank0 = testing::mpi_rank_pid(TSP_BINARY, (work / "m.jsonl").string(), 0);
  const pid_t rank1 = testing::mpi_rank_pid(TSP_BINARY, (work / "m.jsonl").string(), 1);
  ASSERT_GT(rank1, 0) << "rank 1's process not found";
  const auto t0 = Clock::now();
  ASSERT_EQ(kill(rank1, SIGSTOP), 0);
  const bool ended = testing::wait_exit(c, 60);
  const double elapsed_s = std::chrono::duration<double>(Clock::now() - t0).count();
  // Whatever happened, no process of the job may stay: wait for the killed ranks to be reaped,
  // then SIGCONT + SIGKILL what is left (and fail).
  const auto reap_until = Clock::now() + std::chrono::seconds(10);
  while ((process_exists(rank1) || (rank0 > 0 && process_exists(rank0))) && Clock::now() < reap_until)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  for (pid_t p : {rank0, rank1}) {
    if (p > 0 && process_exists(p)) {
      kill(p, SIGCONT);
      kill(p, SIGKILL);
      ADD_FAILURE() << "process " << p << " of the job was left behind (killed now)";
    }
  }
  const std::string out = testing::slurp(work / "out.txt");
  ASSERT_TRUE(ended) << "the job did not end within 60 s of SIGSTOP to rank 1\n" << out;
  // 3 s timeout + a tick + the 2 s ping grace + the abort: well under 60 s.
  EXPECT_LT(elapsed_s, 60) << out;
  std::printf("SIGSTOP to rank 1 -> job ended after %.1f s\n", elapsed_s);
  // Open MPI 4.1's mpirun sometimes crashes in its own teardown after an MPI_Abort (inside
  // PMIx_server_finalize): the ranks are gone and the abort's code is printed, only mpirun's own
  // status is lost. Accept exactly that case.
  const bool mpirun_crashed_after_abort =
      WIFSIGNALED(c.status) && WTERMSIG(c.status) == SIGSEGV &&
      out.find("PMIx_server_finalize") != std::string::npos &&
      std::regex_search(out, std::regex(R"(MPI_ABORT was invoked on rank 0 in communicator MPI_COMM_WORLD\s+with errorcode 124)"));
  EXPECT_TRUE((WIFEXITED(c.status) && WEXITSTATUS(c.status) == kTimeoutExitCode) || mpirun_crashed_after_abort)
      << "mpirun: " << testing::describe(c) << "\n" << out;
  const std::regex message(
      R"(rank 0: comm timeout: [a-z_]+ on '[a-z]+' \([0-9]+ bytes, world ranks 0-1\) has waited [0-9.]+ s, )"
      R"(more than --comm-timeout 3 s; not heard from: rank 1 \(no answer to a liveness ping within [0-9.]+ s: )"
      R"(stopped, hung or dead\); aborting every rank \(exit code 124\)\. If the peers are only slow .*raise )"
      R"(--comm-timeout \(0: off\))");
  EXPECT_TRUE(std::regex_search(out, message)) << out;
  EXPECT_EQ(out.find("done:"), std::string::npos) << out;
  if (!::testing::Test::HasFailure()) fs::remove_all(work);
}

// A 2 s timeout that no wait reaches (steps take milliseconds; the checkpoint save and the barrier
// at exit are watched too): exit 0 and the very same losses as with the watchdog off.
TEST(TspMpiCommTimeout, HealthyRunWithAShortTimeoutIsUnaffected) {
  const fs::path watched = fresh_work_dir("mpi_comm_timeout_healthy");
  const fs::path off = fresh_work_dir("mpi_comm_timeout_off");
  testing::Child a = testing::spawn(mpi_train_args(watched, 6, "2"), watched / "out.txt");
  ASSERT_TRUE(testing::wait_exit(a, 180));
  ASSERT_TRUE(WIFEXITED(a.status) && WEXITSTATUS(a.status) == 0) << testing::slurp(watched / "out.txt");
  testing::Child b = testing::spawn(mpi_train_args(off, 6, "0"), off / "out.txt");
  ASSERT_TRUE(testing::wait_exit(b, 180));
  ASSERT_TRUE(WIFEXITED(b.status) && WEXITSTATUS(b.status) == 0) << testing::slurp(off / "out.txt");
  const auto la = testing::train_losses(watched / "m.jsonl");
  const auto lb = testing::train_losses(off / "m.jsonl");
  ASSERT_EQ(la.size(), 6u);
  std::string report;
  EXPECT_EQ(testing::count_equal_losses(la, lb, 0, 6, report), 6) << report;
  EXPECT_EQ(testing::slurp(watched / "out.txt").find("comm timeout"), std::string::npos);
  if (!::testing::Test::HasFailure()) {
    fs::remove_all(watched);
    fs::remove_all(off);
  }
}

}  // namespace
}  // namespace tsp::cli
