// `tsp data prepare` and `tsp tokenizer train` as a user runs them: a trained SentencePiece
// vocabulary used to prepare shards whose bytes do not depend on --threads, stdin input, progress
// output, one-line errors, and the tokenizer a checkpoint trained on such data carries (and generate
// uses), refused up front when it changed since.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>

#include "scratch_dir.h"
#include "tsp_run.h"
#include "tsp/data/byte_tokenizer.h"
#include "tsp/data/prepare/manifest.h"
#include "tsp/data/token_file.h"
#include "tsp/train/data_source.h"

namespace tsp::cli {
namespace {

namespace fs = std::filesystem;
using testing::read_bytes;
using testing::ScratchDir;
using testing::write_bytes;

using Result = tsp::testing::TspResult;
using tsp::testing::run_tsp;

void expect_one_error_line(const Result& r, const std::string& contains) {
  EXPECT_NE(r.rc, 0);
  EXPECT_EQ(r.err.rfind("tsp: error: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(contains), std::string::npos) << r.err;
}

std::string corpus_text(int n) {
  std::string s;
  for (int i = 0; i < n; ++i)
    s += "Line " + std::to_string(i) + ": the quick brown fox jumps over the lazy dog " + std::to_string(i * 7) +
         (i % 5 == 4 ? "\n\n" : "\n");
  return s;
}

std::vector<std::string> files_of(const fs::path& dir) {
  std::vector<std::string> v;
  for (const fs::directory_entry& e : fs::directory_iterator(dir))
    v.push_back(e.path().filename().string() + "=" + read_bytes(e.path()));
  std::sort(v.begin(), v.end());
  return v;
}

// tokenizer train -> data prepare --tokenizer DIR at 1, 2 and 3 threads: identical bytes.
TEST(DataCli, TrainedTokenizerPreparesTheSameBytesAtAnyThreadCount) {
  ScratchDir dir;
  fs::create_directories(dir / "corpus/sub");
  write_bytes(dir / "corpus/a.txt", corpus_text(3000));
  write_bytes(dir / "corpus/sub/b.txt", corpus_text(500));
  std::string jsonl;
  for (int i = 0; i < 300; ++i) jsonl += "{\"text\": \"record " + std::to_string(i) + " says hello\\nworld\"}\n";
  write_bytes(dir / "corpus/c.jsonl", jsonl);
  Result r = run_tsp(dir, "tokenizer train '" + (dir / "corpus").string() + "' --out '" + (dir / "tok").string() +
                              "' --vocab-size 400 --type bpe");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("vocabulary of 400 pieces"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(dir / "tok/tokenizer.model"));
  EXPECT_TRUE(fs::exists(dir / "tok/tokenizer_config.json"));
  std::vector<std::string> first;
  for (const int threads : {1, 2, 3}) {
    const fs::path out = dir / ("out" + std::to_string(threads));
    r = run_tsp(dir, "data prepare '" + (dir / "corpus").string() + "' --out '" + out.string() + "' --tokenizer '" +
                         (dir / "tok").string() + "' --doc-sep blankline --val-fraction 0.1 --shard-tokens 5000 "
                         "--threads " + std::to_string(threads));
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_NE(r.out.find("with the sentencepiece tokenizer (400 ids, EOS 2)"), std::string::npos) << r.out;
    const std::vector<std::string> files = files_of(out);
    EXPECT_GT(files.size(), 3u);
    if (first.empty()) first = files;
    else EXPECT_TRUE(files == first) << "threads " << threads;
  }
  // A checkpoint of a run on this data carries the tokenizer it was prepared with.
  const std::map<std::string, std::string> carried = train::tokenizer_files_of("", (dir / "out1").string());
  ASSERT_EQ(carried.size(), 2u);
  EXPECT_EQ(carried.at("tokenizer.model"), read_bytes(dir / "tok/tokenizer.model"));
  EXPECT_EQ(carried.at("tokenizer_config.json"), read_bytes(dir / "tok/tokenizer_config.json"));
  EXPECT_EQ(train::tokenizer_files_of("", (dir / "out1/manifest.json").string() + ":0.5,x:0.5").size(), 2u);
  EXPECT_EQ(train::tokenizer_files_of("", (dir / "out1/train-00000.tok").string()).size(), 2u);  // a listed shard
  write_bytes(dir / "out1/other.tok", "");
  EXPECT_TRUE(train::tokenizer_files_of("", (dir / "out1/other.tok").string()).empty());  // not in the manifest
  // Through the binary: a model trained on a shard of it has the tokenizer in its checkpoint, and
  // generate uses it without --tokenizer.
  write_bytes(dir / "config.json",
              R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 400,
                  "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                  "num_key_value_heads": 2, "max_position_embeddings": 64, "rms_norm_eps": 1e-5,
                  "rope_theta": 10000.0, "tie_word_embeddings": false, "torch_dtype": "float32"})");
  const std::string train_args = "train --config '" + (dir / "config.json").string() + "' --data '" +
                                 (dir / "out1/train-00000.tok").string() + "' --steps 2 --batch 2 --seq 16 --warmup 1";
  r = run_tsp(dir, train_args + " --checkpoint-dir '" + (dir / "ckpt").string() + "'");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(read_bytes(dir / "ckpt/tokenizer.model"), read_bytes(dir / "tok/tokenizer.model"));
  EXPECT_EQ(read_bytes(dir / "ckpt/tokenizer_config.json"), read_bytes(dir / "tok/tokenizer_config.json"));
  r = run_tsp(dir, "generate --checkpoint '" + (dir / "ckpt").string() + "' --prompt hello --max-new-tokens 3 --greedy");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("tokenizer.model (SentencePiece) (400 ids"), std::string::npos) << r.out;
  // ... and refuses when the tokenizer changed since: before training, in one line.
  write_bytes(dir / "tok/tokenizer.model", read_bytes(dir / "tok/tokenizer.model") + "x");
  EXPECT_THROW(train::tokenizer_files_of("", (dir / "out1").string()), std::exception);
  expect_one_error_line(run_tsp(dir, train_args), "changed since");
}

TEST(DataCli, StdinAndProgress) {
  ScratchDir dir;
  Result r = run_tsp(dir, "data prepare - --out '" + (dir / "o").string() + "' --progress bar", "abc");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(data::read_token_file(dir / "o/train-00000.tok"),
            (std::vector<int32_t>{'a', 'b', 'c', data::ByteTokenizer::kEosId}));
  EXPECT_NE(r.err.find("\r"), std::string::npos) << r.err;  // the redrawn bar
  EXPECT_NE(r.err.find("MB/s"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("4 tokens"), std::string::npos) << r.err;
  const data::ShardManifest m = data::read_manifest(dir / "o/manifest.json");
  ASSERT_EQ(m.sources.size(), 1u);
  EXPECT_EQ(m.sources[0].path, "-");
  EXPECT_EQ(m.sources[0].bytes, 3u);
  // JSONL on stdin needs --format jsonl.
  r = run_tsp(dir, "data prepare - --format jsonl --progress none --out '" + (dir / "j").string() + "'",
              "{\"text\": \"hi\"}\n");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(data::read_token_file(dir / "j/train-00000.tok"),
            (std::vector<int32_t>{'h', 'i', data::ByteTokenizer::kEosId}));
}

TEST(DataCli, ErrorsAreOneLine) {
  ScratchDir dir;
  write_bytes(dir / "bad.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"a\"\n");
  expect_one_error_line(run_tsp(dir, "data prepare '" + (dir / "bad.jsonl").string() + "' --out '" +
                                         (dir / "o").string() + "'"),
                        "bad.jsonl:2: not valid JSON");
  write_bytes(dir / "nofield.jsonl", "{\"body\": \"ok\"}\n");
  expect_one_error_line(run_tsp(dir, "data prepare '" + (dir / "nofield.jsonl").string() + "' --out '" +
                                         (dir / "o").string() + "'"),
                        "nofield.jsonl:1: no field \"text\"");
  expect_one_error_line(run_tsp(dir, "data prepare '" + (dir / "absent.txt").string() + "' --out '" +
                                         (dir / "o").string() + "'"),
                        "absent.txt does not exist");
  fs::create_directories(dir / "used");
  write_bytes(dir / "used/x.bin", "mine");
  write_bytes(dir / "a.txt", "text");
  expect_one_error_line(run_tsp(dir, "data prepare '" + (dir / "a.txt").string() + "' --out '" +
                                         (dir / "used").string() + "'"),
                        "did not write (x.bin)");
  expect_one_error_line(run_tsp(dir, "tokenizer train '" + (dir / "a.txt").string() + "' --out '" +
                                         (dir / "t").string() + "' --vocab-size 10"),
                        "--vocab-size");
  Result r = run_tsp(dir, "data prepare --help");
  EXPECT_EQ(r.rc, 0);
  for (const char* flag : {"--out", "--tokenizer", "--field", "--doc-sep", "--shard-tokens", "--val-fraction", "--val",
                           "--threads", "--overwrite", "--progress"})
    EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
}

}  // namespace
}  // namespace tsp::cli
