// Checkpoint history of a run directory: step directory names, "latest" and its resolution,
// pruning that keeps the latest and the newest and never touches anything foreign, pre-flight.
#include "tsp/core/checkpoint_history.h"

#include <gtest/gtest.h>

#include <set>

#include "scratch_dir.h"
#include "tsp/core/checkpoint_dir.h"
#include "tsp/core/error.h"

namespace tsp {
namespace {

namespace fs = std::filesystem;
using testing::read_bytes;
using testing::ScratchDir;
using testing::write_bytes;

// A directory the engine's marker claims, holding the one file it lists.
void make_engine_dir(const fs::path& dir) {
  fs::create_directories(dir);
  write_bytes(dir / "config.json", "{}");
  write_bytes(dir / kCheckpointMarkerFileName, checkpoint_marker_bytes({"config.json"}));
}

std::set<std::string> entries(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

TEST(CheckpointHistory, StepDirectoryNames) {
  EXPECT_EQ(checkpoint_step_dir_name(200), "step-000200");
  EXPECT_EQ(checkpoint_step_dir_name(1234567), "step-1234567");
  EXPECT_EQ(parse_checkpoint_step_dir_name("step-000200"), 200);
  EXPECT_EQ(parse_checkpoint_step_dir_name("step-1234567"), 1234567);
  for (const char* bad : {"step-00200", "step-0000200", "step-00020x", "steps-000200", "step-", "latest", ""})
    EXPECT_FALSE(parse_checkpoint_step_dir_name(bad).has_value()) << bad;
  EXPECT_THROW(checkpoint_step_dir_name(-1), InvalidArgument);
}

TEST(CheckpointHistory, RunDirectoryResolvesToItsLatestOthersToThemselves) {
  ScratchDir dir;
  const fs::path run = dir / "run";
  make_engine_dir(run / "step-000003");
  make_engine_dir(run / "step-000007");
  EXPECT_EQ(resolve_checkpoint_dir(run), run);  // no latest yet: a plain directory
  EXPECT_FALSE(checkpoint_run_dir_of(run).has_value());
  commit_latest_checkpoint(run, "step-000007");
  EXPECT_EQ(read_bytes(run / kLatestFileName), "step-000007\n");
  EXPECT_EQ(resolve_checkpoint_dir(run), run / "step-000007");
  EXPECT_EQ(resolve_checkpoint_dir(run / "step-000003"), run / "step-000003");
  EXPECT_EQ(checkpoint_run_dir_of(run), run);
  EXPECT_EQ(checkpoint_run_dir_of(run / "step-000003"), run);
  EXPECT_FALSE(checkpoint_run_dir_of(dir / "elsewhere").has_value());
  // A hand-edited latest that names nothing, or garbage: a clear IoError, not a guess.
  write_bytes(run / kLatestFileName, "step-000009\n");
  EXPECT_THROW(resolve_checkpoint_dir(run), IoError);
  write_bytes(run / kLatestFileName, "../../etc\n");
  EXPECT_THROW(resolve_checkpoint_dir(run), IoError);
}

TEST(CheckpointHistory, LatestIsNeverPointedAtAnIncompleteDirectory) {
  ScratchDir dir;
  const fs::path run = dir / "run";
  make_engine_dir(run / "step-000001");
  commit_latest_checkpoint(run, "step-000001");
  fs::create_directories(run / "step-000002");  // e.g. a copy in progress: no marker
  write_bytes(run / "step-000002" / "model.safetensors", "partial");
  EXPECT_THROW(commit_latest_checkpoint(run, "step-000002"), InvalidArgument);
  EXPECT_EQ(read_bytes(run / kLatestFileName), "step-000001\n");
}

TEST(CheckpointHistory, PruningKeepsLatestAndTheNewestAndTouchesNothingForeign) {
  ScratchDir dir;
  const fs::path run = dir / "run";
  for (int s = 1; s <= 5; ++s) make_engine_dir(run / checkpoint_step_dir_name(s));
  fs::create_directories(run / "step-000000");  // the user's, named like ours
  write_bytes(run / "step-000000" / "data.bin", "precious");
  fs::create_directories(run / "step-000002" / "extra");  // ours, but the user added to it
  write_bytes(run / "notes.txt", "also precious");
  commit_latest_checkpoint(run, "step-000005");
  const auto removed = prune_checkpoint_history(run, 2);
  EXPECT_EQ(removed.size(), 2u);  // step-000001 and step-000003
  EXPECT_EQ(entries(run), (std::set<std::string>{"latest", "notes.txt", "step-000000", "step-000002",
                                                 "step-000004", "step-000005"}));
  EXPECT_EQ(read_bytes(run / "step-000000" / "data.bin"), "precious");
  // A crashed save's temporary of ours goes with the next prune; one holding a foreign file stays.
  make_engine_dir(run / ".step-000006.tmp.Abc123");
  make_engine_dir(run / ".step-000007.tmp.Xyz789");
  write_bytes(run / ".step-000007.tmp.Xyz789" / "mine.txt", "precious");
  fs::create_directories(run / ".step-000008.tmp.Qwe456");  // killed while writing its marker
  write_bytes(run / ".step-000008.tmp.Qwe456" / ".tsp_checkpoint.txt.tmp.AbCdEf", "tsp-checkpoint-v1\n");
  fs::create_directories(run / ".step-000009.tmp.Rty789");  // killed right after mkdtemp
  write_bytes(run / ".latest.tmp.Uio012", "step-00");       // killed while writing latest
  prune_checkpoint_history(run, 2);
  EXPECT_FALSE(fs::exists(run / ".step-000006.tmp.Abc123"));
  EXPECT_FALSE(fs::exists(run / ".step-000008.tmp.Qwe456"));
  EXPECT_FALSE(fs::exists(run / ".step-000009.tmp.Rty789"));
  EXPECT_FALSE(fs::exists(run / ".latest.tmp.Uio012"));
  EXPECT_EQ(read_bytes(run / ".step-000007.tmp.Xyz789" / "mine.txt"), "precious");
  fs::remove_all(run / ".step-000007.tmp.Xyz789");
  // latest is kept even when older than the others (a resume from an older step directory).
  commit_latest_checkpoint(run, "step-000004");
  prune_checkpoint_history(run, 1);
  EXPECT_EQ(entries(run), (std::set<std::string>{"latest", "notes.txt", "step-000000", "step-000002",
                                                 "step-000004"}));
}

TEST(CheckpointHistory, PreflightRefusesASingleCheckpointDirectoryAndAForeignLatest) {
  ScratchDir dir;
  make_engine_dir(dir / "single");
  try {
    check_checkpoint_run_dir(dir / "single", "step-000010", 1, "--checkpoint-dir");
    ADD_FAILURE() << "no refusal";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("is a single checkpoint directory"), std::string::npos) << e.what();
  }
  fs::create_directories(dir / "run" / kLatestFileName);  // a directory where latest goes
  EXPECT_THROW(check_checkpoint_run_dir(dir / "run", "step-000010", 1, "--checkpoint-dir"), InvalidArgument);
  write_bytes(dir / "file", "x");
  EXPECT_THROW(check_checkpoint_run_dir(dir / "file", "step-000010", 1, "--checkpoint-dir"), InvalidArgument);
  // Absent or empty: fine (created by the first save).
  check_checkpoint_run_dir(dir / "new" / "run", "step-000010", 1, "--checkpoint-dir");
  EXPECT_FALSE(fs::exists(dir / "new" / "run"));
}

}  // namespace
}  // namespace tsp
