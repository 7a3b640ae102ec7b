// `tsp generate` run as a user would, on a tiny random checkpoint written with save_hf_checkpoint:
// the streamed text equals the library's generation, the summary line, and one-line errors.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <string>

#include "infer_test_util.h"
#include "scratch_dir.h"
#include "tsp_run.h"
#include "tsp/data/byte_tokenizer.h"
#include "tsp/data/tokenizer/model_dir_tokenizer.h"
#include "tsp/infer/generate.h"
#include "tsp/model/hf_checkpoint.h"
#include "tsp/model/safetensors.h"

namespace tsp::infer {
namespace {

using tsp::testing::ScratchDir;

using Result = tsp::testing::TspResult;
using tsp::testing::run_tsp;

void expect_one_error_line(const Result& r, const std::string& contains) {
  EXPECT_NE(r.rc, 0);
  EXPECT_EQ(r.err.rfind("tsp: error: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(contains), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("failed at"), std::string::npos) << r.err;  // no source locations
}

// A byte-vocabulary model (V = 320) small enough to write and run in milliseconds.
model::ModelConfig tiny_byte_config() {
  testing::Case k{"cli", 32, 4, 2, 64, false};
  return testing::make_config(k, 2, /*max_pos=*/64, /*vocab=*/320);
}

// `poison`: the HF name of a weight whose first element is set to NaN before saving (a corrupt
// checkpoint written by the engine's own writer); empty: none.
model::ModelWeights write_checkpoint(const std::filesystem::path& dir, const std::string& poison = "") {
  const model::ModelConfig c = tiny_byte_config();
  model::ModelWeights w = testing::random_weights(c, 31);
  std::vector<model::NamedTensor> named;
  for (auto& [name, t] : w.named()) {
    if (name == poison) t.data<float>()[0] = std::nanf("");
    named.push_back({name, t});
  }
  model::save_hf_checkpoint(dir, c, named);
  return w;
}

TEST(GenerateCli, StreamsTheLibrarysTokensAndPrintsTheSummary) {
  ScratchDir dir;
  const model::ModelWeights w = write_checkpoint(dir / "ck");
  const std::string ck = "--checkpoint '" + (dir / "ck").string() + "'";
  for (const std::string sampling : {"--greedy", "--temperature 0.9 --top-k 40 --top-p 0.9 --seed 7"}) {
    const Result r = run_tsp(dir, "generate " + ck + " --prompt 'Hello' --max-new-tokens 12 " + sampling);
    ASSERT_EQ(r.rc, 0) << r.out << r.err;
    EXPECT_TRUE(r.err.empty()) << r.err;
    GenerateOptions o{.max_new_tokens = 12, .eos_id = data::ByteTokenizer::kEosId};
    if (sampling == "--greedy") o.sampling.greedy = true;
    else o.sampling = {.temperature = 0.9f, .top_k = 40, .top_p = 0.9f, .seed = 7};
    const data::ByteTokenizer tok;
    const Generation g = generate(w, {tok.encode("Hello", {.add_bos = true})}, o);
    const std::string text = "Hello" + tok.decode(g.tokens[0]) + "\n";
    EXPECT_NE(r.out.find("\n" + text + "prefill: 6 tokens in "), std::string::npos)
        << "expected text: " << text << "\noutput:\n" << r.out;
    EXPECT_NE(r.out.find("tokens/s) | decode: " + std::to_string(g.stats.decode_tokens) + " tokens in "),
              std::string::npos) << r.out;
    EXPECT_NE(r.out.find("| kv cache: " + std::to_string(g.stats.kv_cache_bytes) + " bytes"),
              std::string::npos) << r.out;
    EXPECT_EQ(r.out.rfind("model: ", 0), 0u) << r.out;
  }
}

// A float16 checkpoint (torch_dtype float16, F16 tensors) is widened to f32 exactly: it generates
// the same tokens as an f32 checkpoint of the same values, and the summary says where the dtype
// came from.
TEST(GenerateCli, Float16CheckpointIsWidenedAndGeneratesAsF32) {
  ScratchDir dir;
  model::ModelConfigFields f = tiny_byte_config().fields();
  model::ModelWeights w = testing::random_weights(model::ModelConfig(f), 31);
  std::vector<model::NamedTensor> halves;
  for (auto& [name, t] : w.named()) {
    Tensor h = Tensor::copy_of(t, DType::f16, MemCategory::workspace);
    t.copy_from(h);  // w now holds exactly the f16 values
    halves.push_back({name, h});
  }
  // As transformers saves a float16 model (the engine itself never writes f16).
  f.torch_dtype = DType::f16;
  std::filesystem::create_directories(dir / "half");
  model::save_config(model::ModelConfig(f), dir / "half" / "config.json");
  model::write_safetensors(dir / "half" / "model.safetensors", halves, {.metadata = {{"format", "pt"}}});
  const Result r = run_tsp(dir, "generate --checkpoint '" + (dir / "half").string() +
                                    "' --prompt 'Hello' --max-new-tokens 10 --greedy");
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("dtype=f32 (stored float16, widened)"), std::string::npos) << r.out;
  const data::ByteTokenizer tok;
  GenerateOptions o{.max_new_tokens = 10, .eos_id = data::ByteTokenizer::kEosId};
  o.sampling.greedy = true;
  const Generation g = generate(w, {tok.encode("Hello", {.add_bos = true})}, o);
  EXPECT_NE(r.out.find("\nHello" + tok.decode(g.tokens[0]) + "\n"), std::string::npos) << r.out;
}

TEST(GenerateCli, HelpListsTheFlags) {
  ScratchDir dir;
  const Result r = run_tsp(dir, "generate --help");
  EXPECT_EQ(r.rc, 0);
  for (const char* flag : {"--checkpoint", "--prompt", "--max-new-tokens", "--temperature", "--top-k",
                           "--top-p", "--seed", "--greedy", "--layout", "--tsp", "--comm-timeout"}) {
    EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
  }
}

TEST(GenerateCli, ErrorsAreOneLine) {
  ScratchDir dir;
  write_checkpoint(dir / "ck");
  const std::string ck = "--checkpoint '" + (dir / "ck").string() + "'";
  expect_one_error_line(run_tsp(dir, "generate --checkpoint /nonexistent/ck --prompt hi"),
                        "checkpoint directory /nonexistent/ck does not exist");
  expect_one_error_line(run_tsp(dir, "generate " + ck + " --prompt ''"), "--prompt is empty");
  expect_one_error_line(run_tsp(dir, "generate " + ck), "--prompt");
  expect_one_error_line(run_tsp(dir, "generate " + ck + " --prompt '" + std::string(60, 'a') + "'"),
                        "prompt of 61 tokens + 128 new tokens = 189 positions exceeds the model's "
                        "max_position_embeddings 64");
  expect_one_error_line(run_tsp(dir, "generate " + ck + " --prompt hi --max-new-tokens 0"),
                        "--max-new-tokens: 0 is not an integer in [1, 1073741824]");
  expect_one_error_line(run_tsp(dir, "generate " + ck + " --prompt hi --top-p 1.5"), "top-p must be in (0, 1]");
  expect_one_error_line(run_tsp(dir, "generate " + ck + " --prompt hi --temperature -1"), "temperature");
  expect_one_error_line(run_tsp(dir, "generate " + ck + " --prompt hi --layout tsp --tsp 2"),
                        "--tsp 2 needs 2 ranks (mpirun -np 2), but the world has 1");
  expect_one_error_line(run_tsp(dir, "generate " + ck + " --prompt hi --layout x"),
                        "--layout must be 'single', 'tsp' or 'tp', got 'x'");
  expect_one_error_line(run_tsp(dir, "generate " + ck + " --prompt hi --tsp 2"), "--tsp 2 needs --layout tsp");
  expect_one_error_line(run_tsp(dir, "generate " + ck + " --prompt hi --layout tsp --comm-timeout -1"),
                        "--comm-timeout must be a number of seconds >= 0 (0: off), got -1");
  const auto weights = dir / "ck" / model::kSingleWeightsFileName;
  const std::string bytes = tsp::testing::read_bytes(weights);
  tsp::testing::write_bytes(weights, bytes.substr(0, bytes.size() / 2));
  expect_one_error_line(run_tsp(dir, "generate " + ck + " --prompt hi"), "model.safetensors");
}

// NaN weights stop the generation with one line and a non-zero status instead of printing
// garbage with status 0. A NaN final-norm gain makes every logit of the prefill NaN (position 6 =
// BOS + "Hello", the first new token); a NaN in k_proj reaches the logits through attention, which
// must propagate it (decode attention once took a NaN block maximum for a fully masked block).
TEST(GenerateCli, NanWeightsStopWithOneLineNamingThePosition) {
  ScratchDir dir;
  const std::string ck = "--checkpoint '" + (dir / "ck").string() + "'";
  write_checkpoint(dir / "ck", "model.norm.weight");
  for (const std::string sampling : {"--greedy", "--seed 3"}) {
    expect_one_error_line(run_tsp(dir, "generate " + ck + " --prompt Hello --max-new-tokens 12 " + sampling),
                          "generate: non-finite logits at position 6 (token 1 of 12): the model produced "
                          "NaN/Inf; check the checkpoint's weights");
  }
  write_checkpoint(dir / "ck", "model.layers.1.self_attn.k_proj.weight");
  const Result r = run_tsp(dir, "generate " + ck + " --prompt Hello --max-new-tokens 12 --greedy");
  expect_one_error_line(r, "the model produced NaN/Inf; check the checkpoint's weights");
  EXPECT_NE(r.err.find("generate: non-finite logits at position "), std::string::npos) << r.err;
}

TEST(GenerateCli, RefusesAVocabularyTooSmallForTheByteTokenizer) {
  ScratchDir dir;
  const model::ModelConfig c = testing::make_config(testing::kGqaUntied);  // V = 37
  model::ModelWeights w = testing::random_weights(c, 32);
  std::vector<model::NamedTensor> named;
  for (auto& [name, t] : w.named()) named.push_back({name, t});
  model::save_hf_checkpoint(dir / "ck", c, named);
  expect_one_error_line(run_tsp(dir, "generate --checkpoint '" + (dir / "ck").string() + "' --prompt hi"),
                        "vocab_size 37 is smaller than the byte tokenizer's 259 ids");
}

// A Llama-2-vocabulary model (V = 32000) beside the cut Llama-2 tokenizer of the tokenizer fixtures
// (tests/data/tokenizer_fixtures, docs/tokenizers.md): the prompt is encoded with it and the
// streamed text is its decode of the library's tokens.
TEST(GenerateCli, UsesTheCheckpointsTokenizerAndRefusesAMismatch) {
  ScratchDir dir;
  const std::filesystem::path fixtures = std::filesystem::path(TSP_SOURCE_DIR) / "tests/data/tokenizer_fixtures";
  testing::Case k{"cli", 32, 4, 2, 64, false};
  const model::ModelConfig c = testing::make_config(k, 2, /*max_pos=*/64, /*vocab=*/32000);
  model::ModelWeights w = testing::random_weights(c, 33);
  std::vector<model::NamedTensor> named;
  for (auto& [name, t] : w.named()) named.push_back({name, t});
  model::save_hf_checkpoint(dir / "ck", c, named);
  const std::string ck = "--checkpoint '" + (dir / "ck").string() + "'";
  // No tokenizer files and a 32000-id vocabulary: refused, not run on bytes.
  expect_one_error_line(run_tsp(dir, "generate " + ck + " --prompt hi"), "no tokenizer in");
  // Another model's tokenizer (Llama-3's 128256 ids): refused.
  expect_one_error_line(run_tsp(dir, "generate " + ck + " --prompt hi --tokenizer '" + (fixtures / "llama3").string() + "'"),
                        "tokenizer's 128256 ids");
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "generation_config.json"})
    std::filesystem::copy_file(fixtures / "llama2" / f, dir / "ck" / f);
  const Result r = run_tsp(dir, "generate " + ck + " --prompt 'Hello world' --max-new-tokens 10 --greedy");
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  const auto tok = data::load_tokenizer_dir(dir / "ck");
  const std::vector<int32_t> prompt = tok->encode("Hello world");
  ASSERT_EQ(prompt.front(), 1);  // BOS from the template
  GenerateOptions o{.max_new_tokens = 10, .eos_id = 2};
  o.sampling.greedy = true;
  const Generation g = generate(w, {prompt}, o);
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), g.tokens[0].begin(), g.tokens[0].end());
  const std::string text = tok->decode(all, true);  // "Hello world" + the continuation
  EXPECT_NE(r.out.find("\n" + text + "\nprefill: " + std::to_string(prompt.size()) + " tokens in "), std::string::npos)
      << "expected text: " << text << "\noutput:\n" << r.out;
  // The cut vocabulary ends at its largest used id; the model's rows beyond it print nothing.
  EXPECT_NE(r.out.find("| tokenizer tokenizer.json (BPE, SentencePiece-style, byte fallback) (" +
                       std::to_string(tok->vocab_size()) + " ids, bos 1, eos 2)"),
            std::string::npos) << r.out;
}

// `tsp train --init DIR` encodes the fortunes text with DIR's tokenizer, refuses a directory with
// none, and saves the tokenizer with the fine-tuned checkpoint, which `tsp eval` then uses.
TEST(GenerateCli, FineTuningKeepsTheInitTokenizer) {
  ScratchDir dir;
  const std::filesystem::path fixtures = std::filesystem::path(TSP_SOURCE_DIR) / "tests/data/tokenizer_fixtures";
  testing::Case k{"cli", 32, 4, 2, 64, false};
  const model::ModelConfig c = testing::make_config(k, 2, /*max_pos=*/64, /*vocab=*/32000);
  model::ModelWeights w = testing::random_weights(c, 34);
  std::vector<model::NamedTensor> named;
  for (auto& [name, t] : w.named()) named.push_back({name, t});
  model::save_hf_checkpoint(dir / "hf", c, named);
  const std::string train = "train --init '" + (dir / "hf").string() + "' --steps 1 --batch 2 --seq 16 "
                            "--checkpoint-dir '" + (dir / "out").string() + "'";
  expect_one_error_line(run_tsp(dir, train), "no tokenizer in");
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "generation_config.json"})
    std::filesystem::copy_file(fixtures / "llama2" / f, dir / "hf" / f);
  const Result r = run_tsp(dir, train);
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("tokenizer.json (BPE, SentencePiece-style, byte fallback) tokenizer)"), std::string::npos) << r.out;
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "generation_config.json"})
    EXPECT_EQ(tsp::testing::read_bytes(dir / "out" / f), tsp::testing::read_bytes(dir / "hf" / f)) << f;
  const Result e = run_tsp(dir, "eval --checkpoint '" + (dir / "out").string() + "' --batches 1 --batch 2 --seq 16");
  ASSERT_EQ(e.rc, 0) << e.out << e.err;
  EXPECT_NE(e.out.find("SentencePiece-style, byte fallback) tokenizer)"), std::string::npos) << e.out;
}

// `tsp tokenizer encode|decode`: stdin and flags, the output formats, one-line errors.
TEST(GenerateCli, TokenizerCommandEncodesAndDecodes) {
  ScratchDir dir;
  const std::string tok = "--tokenizer '" + (std::filesystem::path(TSP_SOURCE_DIR) / "tests/data/tokenizer_fixtures/llama3").string() + "'";
  const auto t = data::load_tokenizer_dir(std::filesystem::path(TSP_SOURCE_DIR) / "tests/data/tokenizer_fixtures/llama3");
  const std::string text = "Hello world<|eot_id|> \xe4\xb8\xad!";
  std::string want;
  for (int32_t id : t->encode(text)) want += (want.empty() ? "" : " ") + std::to_string(id);
  Result r = run_tsp(dir, "tokenizer encode " + tok, text);  // the text on stdin
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, want + "\n");
  r = run_tsp(dir, "tokenizer decode " + tok + " --ids '" + want + "'");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "<|begin_of_text|>" + text);  // exact bytes, no newline added
  r = run_tsp(dir, "tokenizer decode " + tok + " --skip-special --ids '" + want + "'");
  EXPECT_EQ(r.out, "Hello world \xe4\xb8\xad!");
  r = run_tsp(dir, "tokenizer encode --no-special --jsonl " + tok, "\"a b\"\n\"\"\n");
  std::string lines = "[";
  for (int32_t id : t->encode("a b", false)) lines += (lines.size() > 1 ? "," : "") + std::to_string(id);
  EXPECT_EQ(r.out, lines + "]\n[]\n") << r.err;
  expect_one_error_line(run_tsp(dir, "tokenizer encode --tokenizer /nonexistent --text hi"), "/nonexistent");
  expect_one_error_line(run_tsp(dir, "tokenizer decode " + tok + " --ids '1 x'"), "'x' is not a token id");
  expect_one_error_line(run_tsp(dir, "tokenizer decode " + tok + " --ids 999999"), "999999");
  expect_one_error_line(run_tsp(dir, "tokenizer encode --tokenizer '" + dir.path().string() + "' --text hi"),
                        "neither tokenizer.json nor tokenizer.model");
}

}  // namespace
}  // namespace tsp::infer
