// Training on token files read in place: the same run as from memory for a .tok file (losses,
// fingerprint, entropy), exact resume over a blend of shards and a manifest with validation
// shards, and the start-up scan's checks (ids against the model's vocabulary, short splits).
#include "tsp/train/data_source.h"

#include <gtest/gtest.h>

#include <string>

#include "scratch_dir.h"
#include "tsp/core/error.h"
#include "tsp/data/corpus.h"
#include "tsp/data/token_file.h"
#include "tsp/train/resume_check.h"
#include "tsp/train/trainer.h"
#include "train_test_util.h"

namespace tsp::train {
namespace {

using testing::pattern_tokens;
using testing::ScratchDir;
using testing::tiny_run;
using testing::tiny_train_config;

TEST(DataSource, MappedTokFileTrainsExactlyAsFromMemory) {
  ScratchDir dir;
  const model::ModelConfig cfg = tiny_train_config();
  const std::vector<int32_t> tokens = pattern_tokens(3000);
  data::write_token_file(dir / "a.tok", tokens, {.vocab_size = 40});
  const TrainData file = open_train_data((dir / "a.tok").string(), cfg.vocab_size());
  EXPECT_EQ(file.total_tokens(), 3000);
  const RunData r = prepare_run_data(file, 0.1, 16, cfg.vocab_size());
  EXPECT_EQ(r.fingerprint, data_fingerprint(tokens));
  EXPECT_EQ(r.unigram_nats, data::unigram_entropy(tokens).nats);
  const RunConfig run = tiny_run(4);
  Trainer memory(cfg, run, tokens), mapped(cfg, run, file);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(memory.train_step().loss, mapped.train_step().loss) << i;
  EXPECT_EQ(memory.loader_state(), mapped.loader_state());
  EXPECT_EQ(memory.validate().loss, mapped.validate().loss);
  EXPECT_EQ(memory.val_tokens().size(), mapped.val_tokens().size());
}

void write_manifest(const std::filesystem::path& dir, const std::string& train, int64_t n_train,
                    const std::string& val, int64_t n_val) {
  testing::write_bytes(dir / "manifest.json",
                       "{\"format\":\"tsp-token-shards-v1\",\"vocab_size\":40,\"train\":[{\"file\":\"" + train +
                           "\",\"tokens\":" + std::to_string(n_train) + "}],\"val\":[{\"file\":\"" + val +
                           "\",\"tokens\":" + std::to_string(n_val) + "}]}");
}

TEST(DataSource, ResumeIsExactOverABlendOfShardsAndAManifest) {
  ScratchDir dir;
  const model::ModelConfig cfg = tiny_train_config();
  std::filesystem::create_directories(dir / "m");
  data::write_token_file(dir / "s0.tok", pattern_tokens(700, 40, 1), {.vocab_size = 40});
  data::write_token_file(dir / "s1.tok", pattern_tokens(900, 40, 2), {.vocab_size = 40});
  data::write_token_file(dir / "m" / "train-00000.tok", pattern_tokens(1500, 40, 3), {.vocab_size = 40});
  data::write_token_file(dir / "m" / "val-00000.tok", pattern_tokens(300, 40, 4), {.vocab_size = 40});
  write_manifest(dir / "m", "train-00000.tok", 1500, "val-00000.tok", 300);
  RunConfig run = tiny_run(8);
  run.data = (dir / "s0.tok").string() + "+" + (dir / "s1.tok").string() + ":0.6," + (dir / "m").string() + ":0.4";
  const TrainData data = open_train_data(run.data, cfg.vocab_size());
  ASSERT_EQ(data.parts.size(), 2u);
  ASSERT_NE(data.parts[1].val, nullptr);
  EXPECT_EQ(data.total_tokens(), 700 + 900 + 1500 + 300);

  Trainer straight(cfg, run, data);
  std::vector<double> losses;
  for (int i = 0; i < 8; ++i) losses.push_back(straight.train_step().loss);
  // Part 0 (1600 tokens, 10 % validation: ~90 windows of 16) and part 1 (1500: 93 windows) both
  // ran; with 32 rows over 8 steps neither finished an epoch, and both moved.
  const data::LoaderState st = straight.loader_state();
  ASSERT_EQ(st.parts.size(), 2u);
  EXPECT_GT(st.parts[0].position, 0);
  EXPECT_GT(st.parts[1].position, 0);
  // The validation stream: part 0's split tail pieces, then part 1's val shard.
  EXPECT_EQ(straight.val_tokens().size(), 160 + 300);

  for (int k : {3, 5}) {
    ScratchDir ck;
    {
      Trainer first(cfg, run, data);
      for (int i = 0; i < k; ++i) EXPECT_EQ(first.train_step().loss, losses[static_cast<size_t>(i)]);
      first.save_checkpoint(ck / "c");
    }
    RunConfig resumed_run = run;
    resumed_run.resume = (ck / "c").string();
    Trainer resumed(cfg, resumed_run, open_train_data(run.data, cfg.vocab_size()));
    EXPECT_EQ(resumed.step(), k);
    for (int i = k; i < 8; ++i) EXPECT_EQ(resumed.train_step().loss, losses[static_cast<size_t>(i)]) << k << " " << i;
    EXPECT_EQ(resumed.loader_state(), straight.loader_state());
  }
  // Other weights, the same files: the fingerprint differs and the resume is refused.
  {
    Trainer first(cfg, run, data);
    first.train_step();
    first.save_checkpoint(dir / "c");
  }
  RunConfig other = run;
  other.resume = (dir / "c").string();
  other.data = (dir / "s0.tok").string() + "+" + (dir / "s1.tok").string() + ":0.5," + (dir / "m").string() + ":0.5";
  EXPECT_THROW(Trainer(cfg, other, open_train_data(other.data, cfg.vocab_size())), InvalidArgument);
}

TEST(DataSource, ScanChecksIdsAndSplitSizes) {
  ScratchDir dir;
  // A nanoGPT file (no vocabulary in it) with an id the model cannot embed.
  std::string bytes;
  for (int i = 0; i < 400; ++i) {
    const uint16_t t = i == 123 ? 41 : static_cast<uint16_t>(i % 40);
    bytes.append(reinterpret_cast<const char*>(&t), 2);
  }
  testing::write_bytes(dir / "x.bin", bytes);
  const TrainData d = open_train_data((dir / "x.bin").string(), 40);
  try {
    prepare_run_data(d, 0.1, 16, 40);
    ADD_FAILURE() << "no exception";
  } catch (const InvalidArgument& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("token 41 at position 123"), std::string::npos) << m;
    EXPECT_NE(m.find("x.bin"), std::string::npos) << m;
  }
  // A .tok file for a larger vocabulary is refused from its header, before any reading.
  data::write_token_file(dir / "big.tok", pattern_tokens(400), {.vocab_size = 500});
  EXPECT_THROW(open_train_data((dir / "big.tok").string(), 40), InvalidArgument);
  // Too short for one validation window.
  data::write_token_file(dir / "a.tok", pattern_tokens(100), {.vocab_size = 40});
  EXPECT_THROW(prepare_run_data(open_train_data((dir / "a.tok").string(), 40), 0.1, 16, 40), InvalidArgument);
}

}  // namespace
}  // namespace tsp::train
