// `tsp train --keep-checkpoints K` under kill -9 (docs/training.md, "Checkpoint history"): a run
// that saves every step is killed at varied moments (mostly inside a save); after each kill
// "latest" names a complete checkpoint whose every checksum verifies, at most K + 1 step
// directories exist, and --resume of the run directory continues; the last run ends with K, and
// tsp eval / tsp generate read the run directory's latest.
#include <gtest/gtest.h>

#include <set>

#include "preemption_util.h"
#include "scratch_dir.h"
#include "tsp/core/checkpoint_dir.h"
#include "tsp/core/checkpoint_history.h"
#include "tsp/model/hf_checkpoint.h"
#include "tsp/model/model_weights.h"
#include "tsp/parallel/sharded_adamw.h"
#include "tsp/parallel/single_layout.h"
#include "tsp/train/sharded_train_state.h"

namespace tsp::cli {
namespace {

using testing::ScratchDir;
namespace fs = std::filesystem;

std::vector<std::string> train_args(const fs::path& run_dir, const fs::path& metrics, int64_t steps) {
  return {TSP_BINARY, "train", "--preset", "tiny", "--steps", std::to_string(steps), "--batch", "2", "--seq", "32",
          "--warmup", "2", "--eval-batches", "1", "--save-every", "1", "--keep-checkpoints", "2",
          "--checkpoint-dir", run_dir.string(), "--metrics", metrics.string()};
}

// The step directories of the run directory that are our checkpoints.
std::set<std::string> step_dirs(const fs::path& run_dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(run_dir)) {
    const std::string name = e.path().filename().string();
    if (parse_checkpoint_step_dir_name(name) && is_engine_checkpoint(e.path())) names.insert(name);
  }
  return names;
}

// "latest" names a complete checkpoint: weights readable, the whole training state verified.
int64_t verify_latest(const fs::path& run_dir) {
  const fs::path dir = resolve_checkpoint_dir(run_dir);
  EXPECT_TRUE(is_engine_checkpoint(dir)) << dir;
  const model::HfCheckpoint ckpt(dir);
  model::ModelWeights w(ckpt.config(), ckpt.config().torch_dtype(), MemCategory::weights);
  for (const auto& [name, t] : w.named()) ckpt.read_into(name, t);
  parallel::ShardedAdamW opt(parallel::whole_shards(w), {});
  return train::load_sharded_train_state(dir / train::kTrainStateFileName, opt).step;
}

TEST(TspCheckpointHistory, KillNineNeverLeavesLatestAtAnIncompleteCheckpoint) {
  ScratchDir dir;
  const fs::path run_dir = dir / "run";
  constexpr int64_t kSteps = 100000;  // never reached: every round is killed
  int64_t last_step = 0;
  for (int round = 0; round < 4; ++round) {
    SCOPED_TRACE(::testing::Message() << "round " << round);
    std::string metrics_name = "m";
    metrics_name += std::to_string(round);
    metrics_name += ".jsonl";
    const fs::path metrics = dir / metrics_name;
    std::vector<std::string> args = train_args(run_dir, metrics, kSteps);
    if (round > 0) args.insert(args.end(), {"--resume", run_dir.string()});
    testing::Child c = testing::spawn(args, dir / "out.txt");
    ASSERT_GT(c.pid, 0);
    ASSERT_TRUE(testing::wait_for_steps(c, metrics, 2 + round, 60)) << testing::slurp(dir / "out.txt");
    std::this_thread::sleep_for(std::chrono::milliseconds(3 * round));  // a different moment each round
    ASSERT_EQ(kill(-c.pid, SIGKILL), 0);
    ASSERT_TRUE(testing::wait_exit(c, 30));
    ASSERT_TRUE(WIFSIGNALED(c.status)) << testing::describe(c);
    const int64_t step = verify_latest(run_dir);
    EXPECT_GE(step, last_step);  // a resume never goes back
    last_step = step;
    EXPECT_LE(step_dirs(run_dir).size(), 3u);  // K, or K + 1 when killed between latest and pruning
  }
  // A last resume runs to its end: exactly K step directories, latest the final step.
  const int64_t end = last_step + 3;
  std::vector<std::string> args = train_args(run_dir, dir / "final.jsonl", end);
  args.insert(args.end(), {"--resume", run_dir.string()});
  testing::Child c = testing::spawn(args, dir / "final.txt");
  ASSERT_TRUE(testing::wait_exit(c, 120));
  ASSERT_TRUE(WIFEXITED(c.status) && WEXITSTATUS(c.status) == 0) << testing::slurp(dir / "final.txt");
  EXPECT_EQ(verify_latest(run_dir), end);
  EXPECT_EQ(step_dirs(run_dir), (std::set<std::string>{checkpoint_step_dir_name(end - 1), checkpoint_step_dir_name(end)}));
  for (const auto& e : fs::directory_iterator(run_dir)) {  // no crashed save's temporary is left
    const std::string name = e.path().filename().string();
    EXPECT_TRUE(name == "latest" || parse_checkpoint_step_dir_name(name)) << name;
  }
  // tsp eval and tsp generate take the run directory and open its latest checkpoint.
  const std::string latest = (run_dir / checkpoint_step_dir_name(end)).string();
  testing::Child e = testing::spawn({TSP_BINARY, "eval", "--checkpoint", run_dir.string(), "--batches", "1"},
                                    dir / "eval.txt");
  ASSERT_TRUE(testing::wait_exit(e, 60));
  EXPECT_TRUE(WIFEXITED(e.status) && WEXITSTATUS(e.status) == 0) << testing::slurp(dir / "eval.txt");
  EXPECT_NE(testing::slurp(dir / "eval.txt").find("from " + latest), std::string::npos) << testing::slurp(dir / "eval.txt");
  testing::Child g = testing::spawn({TSP_BINARY, "generate", "--checkpoint", run_dir.string(), "--prompt", "The",
                                     "--max-new-tokens", "4"},
                                    dir / "gen.txt");
  ASSERT_TRUE(testing::wait_exit(g, 60));
  EXPECT_TRUE(WIFEXITED(g.status) && WEXITSTATUS(g.status) == 0) << testing::slurp(dir / "gen.txt");
}

}  // namespace
}  // namespace tsp::cli
