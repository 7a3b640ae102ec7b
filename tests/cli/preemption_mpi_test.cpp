// Preemption under mpirun (docs/training.md, "Preemption"): SIGTERM to ONE rank (rank 1, as a
// scheduler may signal a single task) stops every rank after the same step: the ranks agree
// through an all-reduce at each step end, save the sharded checkpoint together and all exit with
// kPreemptedExitCode, which is mpirun's exit code too; --resume under mpirun continues exactly
// like an uninterrupted distributed run. Registered by tests/cli/CMakeLists.txt as
// tsp_train_preemption.np2 (label "mpi").
#include <gtest/gtest.h>

#include "preemption_util.h"
#include "tsp/train/preemption.h"
#include "tsp/train/train_state.h"

namespace tsp::cli {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kSteps = 40;  // ~7 s uninterrupted on 2 ranks: still running when the signal comes

fs::path fresh_work_dir(const std::string& name) {
  const fs::path dir = fs::path(TSP_CLI_WORK_ROOT) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::vector<std::string> mpi_train_args(const fs::path& work, const std::string& metrics) {
  return {TSP_MPIEXEC, TSP_MPIEXEC_NP_FLAG, "2", "--oversubscribe", TSP_BINARY, "train", "--preset", "tiny",
          "--steps", std::to_string(kSteps), "--batch", "8", "--seq", "64", "--warmup", "2", "--eval-batches", "1",
          "--layout", "tsp", "--tsp", "2", "--checkpoint-dir", (work / "ck").string(), "--metrics",
          (work / metrics).string()};
}

// The pid of the `tsp` process of world rank `rank` whose command line contains `marker`.
pid_t rank_pid(const std::string& marker, int rank) {
  const std::string want = "OMPI_COMM_WORLD_RANK=" + std::to_string(rank);
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = testing::slurp(e.path() / "cmdline");
    const std::string argv0 = cmdline.substr(0, cmdline.find('\0'));
    if (argv0 != TSP_BINARY || cmdline.find(marker) == std::string::npos) continue;
    const std::string environ = testing::slurp(e.path() / "environ");
    size_t at = 0;
    while (at < environ.size()) {
      const size_t end = environ.find('\0', at);
      if (environ.compare(at, (end == std::string::npos ? environ.size() : end) - at, want) == 0)
        return static_cast<pid_t>(std::stol(name));
      if (end == std::string::npos) break;
      at = end + 1;
    }
  }
  return -1;
}

TEST(TspMpiPreemption, SigtermToOneRankStopsAllRanksAtTheSameStep) {
  const fs::path work = fresh_work_dir("mpi_preemption_work");
  testing::Child c = testing::spawn(mpi_train_args(work, "m.jsonl"), work / "out.txt");
  ASSERT_GT(c.pid, 0);
  ASSERT_TRUE(testing::wait_for_steps(c, work / "m.jsonl", 2, 120))
      << testing::describe(c) << "\n" << testing::slurp(work / "out.txt");
  const pid_t rank1 = rank_pid((work / "m.jsonl").string(), 1);
  ASSERT_GT(rank1, 0) << "rank 1's process not found";
  ASSERT_EQ(kill(rank1, SIGTERM), 0);
  ASSERT_TRUE(testing::wait_exit(c, 120)) << "no exit within 120 s of SIGTERM to rank 1";
  const std::string out = testing::slurp(work / "out.txt");
  ASSERT_TRUE(WIFEXITED(c.status) && WEXITSTATUS(c.status) == train::kPreemptedExitCode)
      << "mpirun: " << testing::describe(c) << "\n" << out;
  // No rank ended by the signal or aborted: each one saved and exited with 75.
  EXPECT_EQ(out.find("exited on signal"), std::string::npos) << out;
  EXPECT_EQ(out.find("MPI_ABORT"), std::string::npos) << out;
  EXPECT_EQ(out.find("done:"), std::string::npos) << out;

  const auto losses = testing::train_losses(work / "m.jsonl");
  ASSERT_FALSE(losses.empty());
  const int64_t stopped = losses.rbegin()->first;
  EXPECT_GE(stopped, 2);
  EXPECT_LT(stopped, kSteps);
  EXPECT_EQ(train::read_train_state_info(work / "ck" / train::kTrainStateFileName).step, stopped);
  EXPECT_NE(out.find("preempted: SIGTERM after step " + std::to_string(stopped) + " of " + std::to_string(kSteps) +
                     "; checkpoint saved to " + (work / "ck").string()),
            std::string::npos)
      << out;
  for (const auto& e : fs::directory_iterator(work)) {  // nothing half-written next to it
    const std::string name = e.path().filename().string();
    EXPECT_TRUE(name == "ck" || name == "m.jsonl" || name == "out.txt") << name;
  }

  // Resume under mpirun: the remaining losses equal those of an uninterrupted distributed run.
  std::vector<std::string> resume = mpi_train_args(work, "resumed.jsonl");
  resume.push_back("--resume");
  resume.push_back((work / "ck").string());
  testing::Child r = testing::spawn(resume, work / "resumed.txt");
  ASSERT_TRUE(testing::wait_exit(r, 180));
  ASSERT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << testing::slurp(work / "resumed.txt");
  const fs::path full_dir = work / "full";
  fs::create_directories(full_dir);
  testing::Child u = testing::spawn(mpi_train_args(full_dir, "full.jsonl"), full_dir / "out.txt");
  ASSERT_TRUE(testing::wait_exit(u, 180));
  ASSERT_TRUE(WIFEXITED(u.status) && WEXITSTATUS(u.status) == 0) << testing::slurp(full_dir / "out.txt");
  const auto resumed = testing::train_losses(work / "resumed.jsonl");
  const auto full = testing::train_losses(full_dir / "full.jsonl");
  std::string report;
  EXPECT_EQ(testing::count_equal_losses(resumed, full, stopped, kSteps, report), kSteps - stopped) << report;
  EXPECT_EQ(testing::count_equal_losses(losses, full, 0, stopped, report), stopped) << report;
  if (!::testing::Test::HasFailure()) fs::remove_all(work);
}

}  // namespace
}  // namespace tsp::cli
