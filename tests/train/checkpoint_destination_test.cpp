// Issue #13, "never lose a user's files": the trainer checks --checkpoint-dir before the first
// step (a foreign directory, a regular file, `/`, an unwritable place, a mount point, too little
// free space are refused with one message, and nothing is written or deleted), a directory the
// engine wrote is replaced and resumed from, and our own stale temporaries are removed while
// anything similar of someone else's is kept.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <string>

#include "scratch_dir.h"
#include "train_test_util.h"
#include "tsp/core/checkpoint_dir.h"
#include "tsp/core/error.h"
#include "tsp/model/hf_checkpoint.h"
#include "tsp/train/train_state.h"
#include "tsp/train/trainer.h"

namespace tsp::train {
namespace {

namespace fs = std::filesystem;
using testing::pattern_tokens;
using testing::ScratchDir;
using testing::tiny_run;
using testing::tiny_train_config;

// The message of the exception a Trainer construction throws ("" if none). A Trainer that gets
// constructed would be able to step: the refusal must come from the constructor.
template <class E = Error>
std::string refusal(const RunConfig& run) {
  try {
    Trainer t(tiny_train_config(), run, pattern_tokens(3000));
  } catch (const E& e) {
    return e.what();
  }
  return "";
}

RunConfig run_into(const fs::path& ck, const fs::path& metrics = {}) {
  RunConfig run = tiny_run(3);
  run.checkpoint_dir = ck.string();
  run.metrics = metrics.string();
  return run;
}

void write(const fs::path& p, const std::string& bytes) { testing::write_bytes(p, bytes); }

// A tmpfs mounted for the test's lifetime (root only); ok() false where mounting is not allowed.
class TmpfsMount {
 public:
  TmpfsMount(const fs::path& at, const char* size) : at_(at) {
    fs::create_directories(at);
    ok_ = ::mount("tmpfs", at.c_str(), "tmpfs", 0, size) == 0;
  }
  ~TmpfsMount() {
    if (ok_) ::umount(at_.c_str());
  }
  bool ok() const { return ok_; }

 private:
  fs::path at_;
  bool ok_ = false;
};

TEST(CheckpointDestination, ForeignDirectoryWithConfigIsRefusedBeforeTraining) {
  ScratchDir dir;
  const fs::path home = dir / "home";
  fs::create_directories(home / "sub");
  model::save_config(tiny_train_config(), home / "config.json");
  write(home / "notes.txt", "precious");
  write(home / "sub" / "more.txt", "also precious");
  const std::string m = refusal<InvalidArgument>(run_into(home, dir / "metrics.jsonl"));
  EXPECT_NE(m.find("--checkpoint-dir: refusing to replace " + home.string()), std::string::npos) << m;
  EXPECT_NE(m.find("\"notes.txt\""), std::string::npos) << m;
  // Nothing was touched and nothing started: not even the metrics file exists.
  EXPECT_EQ(testing::read_bytes(home / "notes.txt"), "precious");
  EXPECT_EQ(testing::read_bytes(home / "sub" / "more.txt"), "also precious");
  EXPECT_FALSE(fs::exists(dir / "metrics.jsonl"));
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"home"});

  // A downloaded HF model (config.json + weights, no marker) is refused too.
  const fs::path hf = dir / "hf";
  Trainer t(tiny_train_config(), tiny_run(1), pattern_tokens(3000));
  std::vector<model::NamedTensor> named;
  for (const auto& [name, tensor] : testing::whole_weights(t).named()) named.push_back({name, tensor});
  fs::create_directory(hf);
  model::save_config(tiny_train_config(), hf / "config.json");
  model::write_safetensors(hf / "model.safetensors", named, {.metadata = {{"format", "pt"}}});
  const std::string m2 = refusal<InvalidArgument>(run_into(hf));
  EXPECT_NE(m2.find("has no tsp_checkpoint.txt"), std::string::npos) << m2;
  EXPECT_TRUE(fs::exists(hf / "model.safetensors"));
}

TEST(CheckpointDestination, UnusablePlacesAreRefusedBeforeTraining) {
  ScratchDir dir;
  write(dir / "file", "user data");
  std::string m = refusal<InvalidArgument>(run_into(dir / "file"));
  EXPECT_NE(m.find("exists and is not a directory"), std::string::npos) << m;
  EXPECT_EQ(testing::read_bytes(dir / "file"), "user data");
  m = refusal<InvalidArgument>(run_into(dir / "file" / "ck"));  // below a regular file
  EXPECT_NE(m.find("is not a directory"), std::string::npos) << m;
  m = refusal<InvalidArgument>(run_into("/"));
  EXPECT_NE(m.find("cannot be a checkpoint directory"), std::string::npos) << m;
  // /proc: nobody, root included, can create files there.
  m = refusal<IoError>(run_into("/proc/tsp_checkpoint_test"));
  EXPECT_NE(m.find("checkpoint directory /proc/tsp_checkpoint_test is not writable"), std::string::npos) << m;
  EXPECT_FALSE(fs::exists("/proc/tsp_checkpoint_test"));
  // A read-only directory (only meaningful for non-root users: root writes through 0555).
  if (::geteuid() != 0) {
    fs::create_directory(dir / "ro");
    fs::permissions(dir / "ro", fs::perms(0555));
    m = refusal<IoError>(run_into(dir / "ro" / "ck"));
    EXPECT_NE(m.find("is not writable"), std::string::npos) << m;
    fs::permissions(dir / "ro", fs::perms(0755));
  } else {
    std::cout << "[ note ] running as root: the read-only case is covered by /proc only\n";
  }
  // A parent that does not exist yet is fine (created at the first save), and nothing is created now.
  Trainer ok(tiny_train_config(), run_into(dir / "new" / "deeper" / "ck"), pattern_tokens(3000));
  EXPECT_FALSE(fs::exists(dir / "new"));
}

TEST(CheckpointDestination, InsufficientFreeSpaceIsRefused) {
  ScratchDir dir;
  const uint64_t need = checkpoint_bytes(tiny_train_config(), DType::f32);
  EXPECT_GT(need, static_cast<uint64_t>(tiny_train_config().total_params()) * 12);
  EXPECT_GT(checkpoint_bytes(tiny_train_config(DType::bf16), DType::bf16),
            static_cast<uint64_t>(tiny_train_config().total_params()) * 14);
  tsp::detail::set_free_bytes_for_testing([](const fs::path&) { return uint64_t{1} << 20; });
  const std::string m = refusal<IoError>(run_into(dir / "ck"));
  tsp::detail::set_free_bytes_for_testing({});
  const std::string mib = std::to_string((need + (1 << 20) - 1) >> 20);
  EXPECT_NE(m.find("checkpoint directory " + (dir / "ck").string() + ": needs " + mib +
                   " MiB, the filesystem has 1 MiB free"),
            std::string::npos)
      << m;
  // The real statvfs of a 1 MiB tmpfs, where the system lets us mount one.
  TmpfsMount small(dir / "small", "size=1m");
  if (!small.ok()) GTEST_SKIP() << "cannot mount a tmpfs here (not root?): the real statvfs case is skipped";
  const std::string m2 = refusal<IoError>(run_into(dir / "small" / "ck"));
  EXPECT_NE(m2.find("checkpoint directory " + (dir / "small" / "ck").string() + ": needs " + mib +
                    " MiB, the filesystem has 1 MiB free"),
            std::string::npos)
      << m2;
  // A mount point as the target: the temporary beside it would be on another file system.
  TmpfsMount mounted(dir / "mnt", "size=64m");
  ASSERT_TRUE(mounted.ok());
  const std::string m3 = refusal<InvalidArgument>(run_into(dir / "mnt"));
  EXPECT_NE(m3.find("is on another file system than " + dir.path().string()), std::string::npos) << m3;
}

TEST(CheckpointDestination, OwnCheckpointIsReplacedAndResumedAndStaleTemporariesCleaned) {
  ScratchDir dir;
  const fs::path ck = dir / "ck";
  {
    RunConfig run = run_into(ck);
    run.save_every = 1;  // three saves into the same directory
    Trainer t(tiny_train_config(), run, pattern_tokens(3000));
    t.run();
  }
  EXPECT_EQ(model::HfCheckpoint(ck).config(), tiny_train_config());
  EXPECT_EQ(read_train_state_info(ck / kTrainStateFileName).step, 3);
  EXPECT_EQ(testing::read_bytes(ck / kCheckpointMarkerFileName),
            "tsp-checkpoint-v1\nconfig.json\nmodel.safetensors\ntrain_state.safetensors\n");

  // A crash during a save left a temporary of ours; someone else has a similar name.
  const fs::path stale = dir / ".ck.tmp.Crash1";
  fs::create_directory(stale);
  write(stale / kCheckpointMarkerFileName, "tsp-checkpoint-v1\nconfig.json\nmodel.safetensors\n");
  write(stale / ".model.safetensors.tmp.AbCdEf", std::string(4096, 'x'));
  const fs::path similar = dir / ".ck.tmp.Notes1";
  fs::create_directory(similar);
  write(similar / "notes.txt", "precious");

  // Resume into the same directory: accepted (ours; the pre-flight changes nothing), and the
  // first save removes the stale temporary of ours, not the other one.
  RunConfig resume = run_into(ck);
  resume.steps = 5;
  resume.resume = ck.string();
  Trainer t(tiny_train_config(), resume, pattern_tokens(3000));
  EXPECT_EQ(t.step(), 3);
  EXPECT_EQ(stale_checkpoint_temporaries(ck), std::vector<fs::path>{stale});
  // Its space counts as free: just enough with it, one byte short without the rest.
  const uint64_t need = checkpoint_bytes(tiny_train_config(), DType::f32);
  const uint64_t stale_bytes =
      fs::file_size(stale / kCheckpointMarkerFileName) + fs::file_size(stale / ".model.safetensors.tmp.AbCdEf");
  tsp::detail::set_free_bytes_for_testing([&](const fs::path&) { return need - stale_bytes; });
  EXPECT_NO_THROW(check_checkpoint_dir_for_run(tiny_train_config(), resume));
  tsp::detail::set_free_bytes_for_testing([&](const fs::path&) { return need - stale_bytes - 1; });
  EXPECT_THROW(check_checkpoint_dir_for_run(tiny_train_config(), resume), IoError);
  tsp::detail::set_free_bytes_for_testing({});
  t.run();
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_EQ(testing::read_bytes(similar / "notes.txt"), "precious");
  EXPECT_EQ(read_train_state_info(ck / kTrainStateFileName).step, 5);
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{".ck.tmp.Notes1", "ck"}));

  // A user's file dropped into our checkpoint makes it foreign: refused, the file survives.
  write(ck / "notes.txt", "mine");
  const std::string m = refusal<InvalidArgument>(resume);
  EXPECT_NE(m.find("\"notes.txt\", which the engine did not write"), std::string::npos) << m;
  EXPECT_EQ(testing::read_bytes(ck / "notes.txt"), "mine");
}

// Checkpoints written before the marker existed: recognised by their train_state.safetensors
// (this engine's format tag) and nothing but checkpoint files.
TEST(CheckpointDestination, CheckpointsFromBeforeTheMarkerAreRecognised) {
  ScratchDir dir;
  const fs::path ck = dir / "ck";
  {
    Trainer t(tiny_train_config(), run_into(ck), pattern_tokens(3000));
    t.train_step();
    t.save_checkpoint(ck);
  }
  fs::remove(ck / kCheckpointMarkerFileName);
  EXPECT_TRUE(is_engine_checkpoint(ck));
  { Trainer again(tiny_train_config(), run_into(ck), pattern_tokens(3000)); }
  // A train_state.safetensors that is not ours, or a foreign file: not recognised.
  write(dir / "notes.txt", "x");
  write(ck / "extra.txt", "x");
  std::string why;
  EXPECT_FALSE(is_engine_checkpoint(ck, &why));
  EXPECT_NE(why.find("\"extra.txt\""), std::string::npos) << why;
  fs::remove(ck / "extra.txt");
  write(ck / kTrainStateFileName, std::string("\x10\0\0\0\0\0\0\0{\"a\":\"b\"}       ", 24));
  EXPECT_FALSE(is_engine_checkpoint(ck, &why));
  EXPECT_NE(why.find("not this engine's training state"), std::string::npos) << why;
  EXPECT_NE(refusal<InvalidArgument>(run_into(ck)).find("refusing to replace"), std::string::npos);
}

}  // namespace
}  // namespace tsp::train
