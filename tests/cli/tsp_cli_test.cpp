// Runs the `tsp` binary as a user would: help output, error lines, exit codes, train + eval.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <regex>
#include <sstream>

#include "fp_bounds.h"
#include "scratch_dir.h"
#include "tsp_run.h"
#include "tsp/cli/commands.h"
#include "tsp/data/byte_tokenizer.h"
#include "tsp/data/token_file.h"
#include "tsp/model/hf_checkpoint.h"
#include "tsp/train/train_state.h"

namespace tsp::cli {
namespace {

using testing::ScratchDir;

using Result = tsp::testing::TspResult;
using tsp::testing::run_tsp;

// Exactly one line "tsp: error: ..." on stderr, nothing else there.
void expect_one_error_line(const Result& r, const std::string& contains) {
  EXPECT_NE(r.rc, 0);
  EXPECT_EQ(r.err.rfind("tsp: error: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(contains), std::string::npos) << r.err;
}

TEST(TspCli, TrainHelpMatchesTheGoldenOptionList) {
  ScratchDir dir;
  const Result r = run_tsp(dir, "train --help");
  ASSERT_EQ(r.rc, 0) << r.err;
  const std::filesystem::path golden = std::filesystem::path(TSP_CLI_GOLDEN_DIR) / "train_help.txt";
  if (std::getenv("TSP_UPDATE_GOLDEN") != nullptr) testing::write_bytes(golden, r.out);
  EXPECT_EQ(r.out, testing::read_bytes(golden))
      << "`tsp train --help` changed. If the new flag list is intended, review it and run\n"
         "TSP_UPDATE_GOLDEN=1 tests/cli/tsp_cli_tests to update " << golden;
}

TEST(TspCli, HelpOnEveryCommand) {
  ScratchDir dir;
  Result r = run_tsp(dir, "--help");
  EXPECT_EQ(r.rc, 0);
  EXPECT_NE(r.out.find("train"), std::string::npos);
  EXPECT_NE(r.out.find("eval"), std::string::npos);
  r = run_tsp(dir, "eval --help");
  EXPECT_EQ(r.rc, 0);
  for (const char* flag : {"--checkpoint", "--data", "--batches"}) EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
}

TEST(TspCli, UsageErrorsAreOneLine) {
  ScratchDir dir;
  expect_one_error_line(run_tsp(dir, "train --bogus 3"), "--bogus");
  expect_one_error_line(run_tsp(dir, ""), "subcommand");
  expect_one_error_line(run_tsp(dir, "frobnicate"), "subcommand");
  expect_one_error_line(run_tsp(dir, "train --steps abc"), "--steps");
  expect_one_error_line(run_tsp(dir, "eval"), "--checkpoint");
  const Result r = run_tsp(dir, "train --bogus");
  EXPECT_TRUE(r.out.empty()) << r.out;
}

TEST(TspCli, InvalidValuesAreOneLine) {
  ScratchDir dir;
  Result r = run_tsp(dir, "train --dtype f16");
  expect_one_error_line(r, "--dtype must be f32 or bf16, got 'f16'");
  EXPECT_EQ(r.err.find("failed at"), std::string::npos) << r.err;  // no source locations for users
  expect_one_error_line(run_tsp(dir, "train --batch 6 --grad-accum 4"), "--grad-accum 4 does not divide --batch 6");
  expect_one_error_line(run_tsp(dir, "train --preset nope"), "nope");
  expect_one_error_line(run_tsp(dir, "train --data /nonexistent/x.tok --steps 1"), "/nonexistent/x.tok");
}

TEST(TspCli, MissingCheckpointDirectory) {
  ScratchDir dir;
  expect_one_error_line(run_tsp(dir, "eval --checkpoint /nonexistent/ckpt"),
                        "checkpoint directory /nonexistent/ckpt does not exist");
  expect_one_error_line(run_tsp(dir, "train --resume /nonexistent/ckpt"),
                        "checkpoint directory /nonexistent/ckpt does not exist");
}

// Lines of a metrics JSONL file whose "type" is `type`.
int count_records(const std::string& jsonl, const std::string& type) {
  int n = 0;
  for (size_t at = jsonl.find("\"type\":\"" + type + "\""); at != std::string::npos;
       at = jsonl.find("\"type\":\"" + type + "\"", at + 1))
    ++n;
  return n;
}

std::string val_loss_of(const std::string& text) {
  std::smatch m;
  std::string last;
  std::string s = text;
  const std::regex re(R"(val_loss (\d+\.\d+))");
  while (std::regex_search(s, m, re)) {
    last = m[1];
    s = m.suffix();
  }
  return last;
}

TEST(TspCli, TrainWritesALoadableCheckpointAndEvalReproducesItsLoss) {
  ScratchDir dir;
  std::string text;
  for (int i = 0; i < 120; ++i) text += "The quick brown fox " + std::to_string(i) + " jumps over the lazy dog.\n";
  data::write_token_file(dir / "data.tok", data::ByteTokenizer().encode(text), {.vocab_size = 320});
  const std::string common = "--data '" + (dir / "data.tok").string() + "' --batch 4 --seq 32 --eval-batches 2";
  const std::string ck = (dir / "ck").string();
  const Result t = run_tsp(dir, "train " + common + " --steps 3 --warmup 1 --checkpoint-dir '" + ck +
                                    "' --metrics '" + (dir / "m.jsonl").string() + "'");
  ASSERT_EQ(t.rc, 0) << t.out << t.err;
  EXPECT_NE(t.out.find("step 3/3 | loss"), std::string::npos) << t.out;
  // The start names the peak MFU divides by; each progress line has MFU, UTC time, elapsed, ETA.
  EXPECT_TRUE(std::regex_search(t.out, std::regex(R"(\npeak \d+\.\d GFLOP/s/core fp32 \w+ \(x 1 thread x 1 rank)")))
      << t.out;
  EXPECT_TRUE(std::regex_search(t.out, std::regex(R"(step 3/3 \| .* tok/s \| MFU \d+\.\d% \| peak .* \| )"
                                                  R"(\d\d:\d\d:\d\d UTC, elapsed \d+:\d\d, ETA 0:00\n)")))
      << t.out;
  EXPECT_NE(t.out.find("unigram"), std::string::npos) << t.out;
  const model::HfCheckpoint loaded(ck);
  EXPECT_EQ(loaded.config(), model::preset("tiny"));
  EXPECT_EQ(train::read_train_state_info(dir / "ck" / train::kTrainStateFileName).step, 3);
  const std::string metrics = testing::read_bytes(dir / "m.jsonl");
  // 3 steps + 1 val + 1 memory record (one per rank at the end of the run, docs/training.md)
  EXPECT_EQ(std::count(metrics.begin(), metrics.end(), '\n'), 5) << metrics;
  EXPECT_EQ(count_records(metrics, "train"), 3) << metrics;
  EXPECT_EQ(count_records(metrics, "val"), 1) << metrics;
  EXPECT_EQ(count_records(metrics, "memory"), 1) << metrics;
  EXPECT_NE(metrics.find("\"wall_time\":"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("\"mfu\":"), std::string::npos) << metrics;

  const Result e = run_tsp(dir, "eval --checkpoint '" + ck + "'");
  ASSERT_EQ(e.rc, 0) << e.out << e.err;
  const std::string train_val = val_loss_of(t.out), eval_val = val_loss_of(e.out);
  ASSERT_FALSE(train_val.empty()) << t.out;
  ASSERT_FALSE(eval_val.empty()) << e.out;
  // The same weights (the checkpoint is the run's weights bit for bit) on the same validation
  // batches, compared as numbers: the mean of non-negative per-token losses is within
  // gamma_f of exact relative to itself, gamma_f = 5885 * 2^-24 = 3.5e-4 the sum of the lengths
  // of the chained fp32 reductions of the tiny preset's forward (L 4, h 128, F 512, V 320, S 32,
  // T 256; tests/fp_bounds.h), for each of the two runs, plus half the last printed digit (5e-7)
  // for each. Another checkpoint (an earlier step, other weights) misses by >= 1e-1.
  const double gamma_f = testing::model_chain(model::preset("tiny"), 32, 2 * 4 * 32, /*backward=*/false).gamma;
  EXPECT_NEAR(std::stod(eval_val), std::stod(train_val),
              2 * gamma_f * std::stod(train_val) + 2 * testing::kPrinted6)
      << t.out << "\n---\n" << e.out;

  // Resume to step 5 continues from the saved step.
  const Result r = run_tsp(dir, "train " + common + " --steps 5 --warmup 1 --resume '" + ck + "'");
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("resumed at step 3"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("step 3/5"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("step 5/5"), std::string::npos) << r.out;

  // A damaged state file is refused with one clear line.
  const auto state = dir / "ck" / train::kTrainStateFileName;
  std::string bytes = testing::read_bytes(state);
  testing::write_bytes(state, bytes.substr(0, bytes.size() / 2));
  expect_one_error_line(run_tsp(dir, "train " + common + " --steps 6 --resume '" + ck + "'"),
                        "corrupt or incompatible training state");
}

// A Hugging Face config.json with an explicit head_dim (H d = 128 != h = 64) and float16 storage
// trains from --config; the model line names d, RoPE and where the run's dtype came from.
TEST(TspCli, TrainFromAConfigWithExplicitHeadDimAndFloat16) {
  ScratchDir dir;
  std::string text;
  for (int i = 0; i < 60; ++i) text += "Pack my box with five dozen liquor jugs " + std::to_string(i) + ".\n";
  data::write_token_file(dir / "data.tok", data::ByteTokenizer().encode(text), {.vocab_size = 320});
  testing::write_bytes(dir / "config.json",
                       R"({"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                           "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
                           "vocab_size": 320, "torch_dtype": "float16", "rope_theta": 500000,
                           "max_position_embeddings": 256})");
  const std::string cfg = (dir / "config.json").string();
  const Result t = run_tsp(dir, "train --config '" + cfg + "' --data '" + (dir / "data.tok").string() +
                                    "' --batch 2 --seq 32 --steps 2 --warmup 1 --eval-batches 1 --dtype bf16 "
                                    "--checkpoint-dir '" + (dir / "ck").string() + "'");
  ASSERT_EQ(t.rc, 0) << t.out << t.err;
  EXPECT_NE(t.out.find("model: h=64 L=2 H=4 H_kv=2 d=32 "), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("rope theta=500000"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("dtype=bf16 (--dtype; --config " + cfg + " stores float16)"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("step 2/2 | loss"), std::string::npos) << t.out;
  const model::HfCheckpoint saved(dir / "ck");
  EXPECT_EQ(saved.config().head_dim(), 32);
  EXPECT_EQ(saved.config().q_dim(), 128);
}

// Qwen2 end to end through the CLI: train --config with model_type qwen2, the summary names the
// biases, the checkpoint holds them under HF's names (and says Qwen2ForCausalLM), and
// generate reads it back (the decoder adds them).
TEST(TspCli, TrainsAndGeneratesAQwen2Config) {
  ScratchDir dir;
  std::string text;
  for (int i = 0; i < 60; ++i) text += "Sphinx of black quartz, judge my vow " + std::to_string(i) + ".\n";
  data::write_token_file(dir / "data.tok", data::ByteTokenizer().encode(text), {.vocab_size = 320});
  testing::write_bytes(dir / "config.json",
                       R"({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 64,
                           "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                           "num_key_value_heads": 2, "vocab_size": 320, "tie_word_embeddings": true,
                           "use_sliding_window": false, "sliding_window": 32768, "max_window_layers": 2,
                           "rope_theta": 1000000.0, "rms_norm_eps": 1e-06, "torch_dtype": "bfloat16",
                           "max_position_embeddings": 256})");
  const std::string cfg = (dir / "config.json").string();
  const Result t = run_tsp(dir, "train --config '" + cfg + "' --data '" + (dir / "data.tok").string() +
                                    "' --batch 2 --seq 32 --steps 2 --warmup 1 --eval-batches 1 "
                                    "--checkpoint-dir '" + (dir / "ck").string() + "'");
  ASSERT_EQ(t.rc, 0) << t.out << t.err;
  EXPECT_NE(t.out.find("model: h=64 L=2 H=4 H_kv=2 d=16 F=128 V=320 tied qkv_bias "), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("step 2/2 | loss"), std::string::npos) << t.out;
  const model::HfCheckpoint saved(dir / "ck");
  EXPECT_TRUE(saved.config().qkv_bias());
  const Tensor kb = saved.read("model.layers.1.self_attn.k_proj.bias", MemCategory::weights);
  EXPECT_EQ(kb.shape(), Shape{32});
  EXPECT_NE(testing::read_bytes(dir / "ck" / "config.json").find("Qwen2ForCausalLM"), std::string::npos);
  const Result g = run_tsp(dir, "generate --checkpoint '" + (dir / "ck").string() +
                                    "' --prompt 'Sphinx' --max-new-tokens 4 --greedy");
  ASSERT_EQ(g.rc, 0) << g.out << g.err;
  EXPECT_NE(g.out.find("prefill: 7 tokens in "), std::string::npos) << g.out;
}

TEST(TspCli, OneLineMessageDropsCheckLocations) {
  EXPECT_EQ(one_line_message("bad value 3 [x > 0 failed at /a/b.cpp:12]"), "bad value 3");
  EXPECT_EQ(one_line_message("two\nlines"), "two lines");
  EXPECT_EQ(one_line_message("keep [brackets]"), "keep [brackets]");
}

}  // namespace
}  // namespace tsp::cli
