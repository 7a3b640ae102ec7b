// run_training_loop's preemption path on a fake host (no model): a stop signal during a step
// ends the loop after that step with one checkpoint and one "preempted:" line; the agreed signal
// (another rank's) stops it too; the last step completes normally.
#include <gtest/gtest.h>

#include <csignal>

#include "tsp/train/preemption.h"
#include "tsp/train/trainer.h"

namespace tsp::train {
namespace {

class FakeHost final : public TrainLoopHost {
 public:
  int64_t signal_at = -1;   // raise(SIGUSR1) during this step
  int64_t other_rank_at = -1;  // agree_stop_signal reports SIGTERM from another rank after this step
  std::vector<int64_t> saves;
  StepMetrics train_step() override {
    ++step_;
    if (step_ == signal_at) std::raise(SIGUSR1);
    StepMetrics m;
    m.step = step_;
    m.total_steps = 10;
    m.loss = 1.0;
    return m;
  }
  EvalMetrics validate() override { return EvalMetrics{.loss = 2.0}; }
  void save_checkpoint(const std::filesystem::path&) const override {
    const_cast<FakeHost*>(this)->saves.push_back(step_);
  }
  int64_t step() const override { return step_; }
  int agree_stop_signal(int mine) override { return step_ == other_rank_at ? SIGTERM : mine; }

 private:
  int64_t step_ = 0;
};

RunConfig run_of(int64_t steps, bool with_dir) {
  RunConfig run;
  run.steps = steps;
  if (with_dir) run.checkpoint_dir = "ck";
  return run;
}

TEST(PreemptionLoop, SignalStopsAfterTheStepWithOneSave) {
  const PreemptionGuard guard;
  FakeHost host;
  host.signal_at = 3;
  std::vector<std::string> lines;
  int sig = -1;
  run_training_loop(host, run_of(10, true), 0, nullptr, [&](const std::string& l) { lines.push_back(l); }, false,
                    &sig);
  EXPECT_EQ(sig, SIGUSR1);
  EXPECT_EQ(host.step(), 3);
  EXPECT_EQ(host.saves, std::vector<int64_t>{3});
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back(),
            "preempted: SIGUSR1 after step 3 of 10; checkpoint saved to ck (continue with --resume ck); exit code 75");
  EXPECT_EQ(preemption_signal(), SIGUSR1);
}

TEST(PreemptionLoop, AnotherRanksSignalStopsThisRankToo) {
  const PreemptionGuard guard;
  FakeHost host;
  host.other_rank_at = 2;
  std::vector<std::string> lines;
  int sig = -1;
  run_training_loop(host, run_of(10, false), 0, nullptr, [&](const std::string& l) { lines.push_back(l); }, false,
                    &sig);
  EXPECT_EQ(sig, SIGTERM);
  EXPECT_EQ(host.step(), 2);
  EXPECT_TRUE(host.saves.empty());
  EXPECT_NE(lines.back().find("nothing saved (no --checkpoint-dir)"), std::string::npos) << lines.back();
}

TEST(PreemptionLoop, SignalInTheLastStepCompletesTheRun) {
  const PreemptionGuard guard;
  FakeHost host;
  host.signal_at = 4;
  std::vector<std::string> lines;
  int sig = -1;
  run_training_loop(host, run_of(4, true), 0, nullptr, [&](const std::string& l) { lines.push_back(l); }, false,
                    &sig);
  EXPECT_EQ(sig, 0);
  EXPECT_EQ(host.saves, std::vector<int64_t>{4});
  EXPECT_EQ(lines.back().rfind("done:", 0), 0u) << lines.back();
}

TEST(PreemptionLoop, GuardRestoresTheFlag) {
  { const PreemptionGuard guard; std::raise(SIGINT); EXPECT_EQ(preemption_signal(), SIGINT); }
  EXPECT_EQ(preemption_signal(), 0);
  EXPECT_EQ(signal_name(SIGTERM), "SIGTERM");
}

}  // namespace
}  // namespace tsp::train
