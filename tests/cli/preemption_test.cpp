// Preemption of a single-rank `tsp train` (docs/training.md, "Preemption"): SIGTERM while it runs
// finishes the step, saves the checkpoint, prints one "preempted:" line and exits with
// kPreemptedExitCode (75); --resume from it continues exactly like an uninterrupted run; a second
// signal ends the process at once.
#include <gtest/gtest.h>

#include "preemption_util.h"
#include "scratch_dir.h"
#include "tsp/train/preemption.h"
#include "tsp/train/train_state.h"

namespace tsp::cli {
namespace {

using testing::ScratchDir;
namespace fs = std::filesystem;

constexpr int64_t kSteps = 40;  // ~3 s uninterrupted: still running when the signal comes

std::vector<std::string> train_args(const ScratchDir& dir, const std::string& metrics) {
  return {TSP_BINARY, "train", "--preset", "tiny", "--steps", std::to_string(kSteps), "--batch", "8", "--seq", "64",
          "--warmup", "2", "--eval-batches", "1", "--checkpoint-dir", (dir / "ck").string(), "--metrics",
          (dir / metrics).string()};
}

TEST(TspPreemption, SigtermSavesExitsWith75AndResumesExactly) {
  ASSERT_EQ(train::kPreemptedExitCode, 75);
  ScratchDir dir;
  testing::Child c = testing::spawn(train_args(dir, "m.jsonl"), dir / "out.txt");
  ASSERT_GT(c.pid, 0);
  ASSERT_TRUE(testing::wait_for_steps(c, dir / "m.jsonl", 2, 60))
      << testing::describe(c) << "\n" << testing::slurp(dir / "out.txt");
  ASSERT_EQ(kill(c.pid, SIGTERM), 0);
  ASSERT_TRUE(testing::wait_exit(c, 60)) << "no exit within 60 s of SIGTERM";
  const std::string out = testing::slurp(dir / "out.txt");
  ASSERT_TRUE(WIFEXITED(c.status) && WEXITSTATUS(c.status) == train::kPreemptedExitCode)
      << testing::describe(c) << "\n" << out;

  // The checkpoint holds the step the metrics file shows last, and the line says so.
  const auto losses = testing::train_losses(dir / "m.jsonl");
  ASSERT_FALSE(losses.empty());
  const int64_t stopped = losses.rbegin()->first;
  EXPECT_GE(stopped, 2);
  EXPECT_LT(stopped, kSteps);
  EXPECT_EQ(static_cast<int64_t>(losses.size()), stopped);
  EXPECT_EQ(train::read_train_state_info(dir / "ck" / train::kTrainStateFileName).step, stopped);
  EXPECT_TRUE(fs::exists(dir / "ck" / "model.safetensors"));
  const std::string line = "preempted: SIGTERM after step " + std::to_string(stopped) + " of " +
                           std::to_string(kSteps) + "; checkpoint saved to " + (dir / "ck").string();
  EXPECT_NE(out.find(line), std::string::npos) << out;
  EXPECT_EQ(out.find("done:"), std::string::npos) << out;
  for (const auto& name : dir.entries())  // nothing half-written next to it
    EXPECT_TRUE(name == "ck" || name == "m.jsonl" || name == "out.txt") << name;

  // Resume: the remaining steps' losses equal those of an uninterrupted run.
  std::vector<std::string> resume = train_args(dir, "resumed.jsonl");
  resume.push_back("--resume");
  resume.push_back((dir / "ck").string());
  testing::Child r = testing::spawn(resume, dir / "resumed.txt");
  ASSERT_TRUE(testing::wait_exit(r, 120));
  ASSERT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << testing::slurp(dir / "resumed.txt");
  EXPECT_NE(testing::slurp(dir / "resumed.txt").find("resumed at step " + std::to_string(stopped)), std::string::npos);

  ScratchDir full_dir;
  testing::Child u = testing::spawn(train_args(full_dir, "full.jsonl"), full_dir / "out.txt");
  ASSERT_TRUE(testing::wait_exit(u, 120));
  ASSERT_TRUE(WIFEXITED(u.status) && WEXITSTATUS(u.status) == 0) << testing::slurp(full_dir / "out.txt");
  const auto resumed = testing::train_losses(dir / "resumed.jsonl");
  const auto full = testing::train_losses(full_dir / "full.jsonl");
  std::string report;
  EXPECT_EQ(testing::count_equal_losses(resumed, full, stopped, kSteps, report), kSteps - stopped) << report;
  EXPECT_EQ(resumed.begin()->first, stopped + 1);
  // The steps before the signal were the uninterrupted run's steps too.
  EXPECT_EQ(testing::count_equal_losses(losses, full, 0, stopped, report), stopped) << report;
}

// A second signal does not wait for the save: the process ends by the signal (status 128 + 15 in
// a shell). Standard signals sent back to back may merge into one; then the run stops as for one
// signal (exit 75, with its checkpoint). Any other outcome fails.
TEST(TspPreemption, SecondSignalEndsAtOnce) {
  ScratchDir dir;
  testing::Child c = testing::spawn(train_args(dir, "m.jsonl"), dir / "out.txt");
  ASSERT_GT(c.pid, 0);
  ASSERT_TRUE(testing::wait_for_steps(c, dir / "m.jsonl", 2, 60))
      << testing::describe(c) << "\n" << testing::slurp(dir / "out.txt");
  ASSERT_EQ(kill(c.pid, SIGTERM), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(kill(c.pid, SIGTERM), 0);
  ASSERT_TRUE(testing::wait_exit(c, 60));
  const std::string out = testing::slurp(dir / "out.txt");
  if (WIFSIGNALED(c.status)) {
    EXPECT_EQ(WTERMSIG(c.status), SIGTERM) << out;
    EXPECT_EQ(out.find("preempted:"), std::string::npos) << out;
  } else {
    ASSERT_TRUE(WIFEXITED(c.status) && WEXITSTATUS(c.status) == train::kPreemptedExitCode)
        << testing::describe(c) << "\n" << out;
    const auto losses = testing::train_losses(dir / "m.jsonl");
    EXPECT_EQ(train::read_train_state_info(dir / "ck" / train::kTrainStateFileName).step, losses.rbegin()->first);
  }
  // A shell reports the signal as 128 + 15.
  ScratchDir sh_dir;
  std::vector<std::string> args = train_args(sh_dir, "m.jsonl");
  std::string cmd = "exec";
  for (const auto& a : args) cmd += " '" + a + "'";
  testing::Child s = testing::spawn({"/bin/sh", "-c", cmd + "& p=$!; while [ ! -s '" + (sh_dir / "m.jsonl").string() +
                                                          "' ]; do sleep 0.01; done; kill -TERM $p; sleep 0.01;"
                                                          " kill -TERM $p; wait $p; echo rc=$?"},
                                    sh_dir / "out.txt");
  ASSERT_TRUE(testing::wait_exit(s, 60));
  const std::string sh_out = testing::slurp(sh_dir / "out.txt");
  EXPECT_TRUE(sh_out.find("rc=143") != std::string::npos || sh_out.find("rc=75") != std::string::npos) << sh_out;
}

}  // namespace
}  // namespace tsp::cli
