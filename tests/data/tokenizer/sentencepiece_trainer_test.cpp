// Tests of `tsp tokenizer train`'s SentencePiece trainer: the vocabulary size asked for, exact
// round trips of held-out text (identity normalization, byte fallback), reproducible model bytes,
// and ids equal to Debian's spm_encode (an independent oracle: the library's own CLI).
#include "tsp/data/tokenizer/sentencepiece_trainer.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <sstream>

#include "scratch_dir.h"
#include "tsp/core/error.h"
#include "tsp/data/tokenizer/model_dir_tokenizer.h"
#include "tsp/data/tokenizer/sentencepiece_tokenizer.h"

namespace tsp::data {
namespace {

namespace fs = std::filesystem;
using testing::read_bytes;
using testing::ScratchDir;
using testing::write_bytes;

constexpr const char* kFortunes = "/usr/share/games/fortunes";

// Training text: the first fortune files (about 600 KB); held out: lines of another file plus
// text with characters the training never saw (byte fallback) and odd whitespace.
struct Texts {
  std::vector<std::string> train_files;
  std::vector<std::string> held_out;
};

Texts texts() {
  Texts t;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(kFortunes))
    if (e.is_regular_file() && e.path().extension() != ".dat" && e.path().extension() != ".u8")
      files.push_back(e.path());
  std::sort(files.begin(), files.end());
  size_t bytes = 0;
  size_t i = 0;
  for (; i < files.size() && bytes < 600'000; ++i) {
    t.train_files.push_back(files[i].string());
    bytes += fs::file_size(files[i]);
  }
  std::istringstream rest(i < files.size() ? read_bytes(files[i]) : std::string());
  std::string line;
  while (std::getline(rest, line) && t.held_out.size() < 200)
    if (!line.empty() && line != "%") t.held_out.push_back(line);
  for (const char* s : {"Ünïcödé 中文 🤖 emoji", "  two leading spaces and\ta tab", "trailing   ", "digits 12345.678",
                        "ÿ\x7f control"})
    t.held_out.push_back(s);
  return t;
}

SentencePieceTrainOptions options(const Texts& t, const fs::path& out, const std::string& type, int64_t vocab) {
  SentencePieceTrainOptions o;
  o.inputs = t.train_files;
  o.type = type;
  o.vocab_size = vocab;
  o.out_dir = out;
  return o;
}

// spm_encode's ids of every line (one output line per input line), or nullopt without the tool.
std::optional<std::vector<std::string>> spm_encode_ids(const fs::path& model, const fs::path& input) {
  if (std::system("command -v spm_encode > /dev/null 2>&1") != 0) return std::nullopt;
  const std::string cmd = "spm_encode --model='" + model.string() + "' --output_format=id < '" + input.string() + "'";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return std::nullopt;
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  EXPECT_EQ(::pclose(p), 0);
  std::vector<std::string> lines;
  std::istringstream in(out);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

std::string join_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) s += ' ';
    s += std::to_string(ids[i]);
  }
  return s;
}

TEST(SentencePieceTrainer, VocabularyRoundTripAndSpmEncodeAgree) {
  if (!fs::is_directory(kFortunes)) GTEST_SKIP() << "no fortunes corpus (scripts/install-deps.sh installs it)";
  const Texts t = texts();
  ScratchDir dir;
  for (const auto& [type, vocab] : {std::pair<std::string, int64_t>{"bpe", 1000}, {"unigram", 800}}) {
    SCOPED_TRACE(type);
    const fs::path out = dir / type;
    const SentencePieceTrainResult r = train_sentencepiece(options(t, out, type, vocab));
    EXPECT_GT(r.sentences, 10'000);
    const std::unique_ptr<Tokenizer> tok = load_tokenizer_dir(out);  // as train/generate load it
    EXPECT_EQ(tok->vocab_size(), vocab);
    EXPECT_EQ(tok->bos_id(), 1);
    EXPECT_EQ(tok->eos_ids(), std::vector<int32_t>{2});
    std::string held;
    for (const std::string& line : t.held_out) {
      const std::vector<int32_t> ids = tok->encode(line, false);
      for (const int32_t id : ids) EXPECT_TRUE(id >= 0 && id < vocab);
      // Identity normalization + byte fallback: the exact text back, unseen characters included.
      EXPECT_EQ(tok->decode(ids, true), line);
      EXPECT_EQ(tok->encode(line, true).front(), 1);  // BOS from tokenizer_config.json
      held += line + "\n";
    }
    write_bytes(dir / "held.txt", held);
    const auto spm = spm_encode_ids(out / "tokenizer.model", dir / "held.txt");
    if (!spm) {
      std::fprintf(stderr, "spm_encode not installed: the oracle comparison is skipped\n");
      continue;
    }
    ASSERT_EQ(spm->size(), t.held_out.size());
    for (size_t i = 0; i < t.held_out.size(); ++i)
      EXPECT_EQ(join_ids(tok->encode(t.held_out[i], false)), (*spm)[i]) << t.held_out[i];
  }
}

// Single-threaded training with a fixed seed gives the same model bytes; max_sentences samples.
TEST(SentencePieceTrainer, ReproducibleModelBytes) {
  if (!fs::is_directory(kFortunes)) GTEST_SKIP() << "no fortunes corpus";
  Texts t = texts();
  t.train_files.resize(std::min<size_t>(t.train_files.size(), 3));
  ScratchDir dir;
  for (const std::string type : {"bpe", "unigram"}) {
    SentencePieceTrainOptions o = options(t, dir / (type + "1"), type, 500);
    o.max_sentences = 3000;
    train_sentencepiece(o);
    o.out_dir = dir / (type + "2");
    train_sentencepiece(o);
    EXPECT_EQ(read_bytes(dir / (type + "1") / "tokenizer.model"), read_bytes(dir / (type + "2") / "tokenizer.model"))
        << type;
  }
}

TEST(SentencePieceTrainer, Refusals) {
  ScratchDir dir;
  write_bytes(dir / "a.txt", "some text\n");
  SentencePieceTrainOptions o;
  o.inputs = {(dir / "a.txt").string()};
  o.out_dir = dir / "out";
  o.vocab_size = 100;
  EXPECT_THROW(train_sentencepiece(o), InvalidArgument);  // below the 256 byte pieces + 3 specials
  o.vocab_size = 300;
  o.type = "wordpiece";
  EXPECT_THROW(train_sentencepiece(o), InvalidArgument);
  o.type = "bpe";
  o.inputs = {(dir / "absent.txt").string()};
  EXPECT_THROW(train_sentencepiece(o), IoError);
  write_bytes(dir / "bad.jsonl", "{\"text\": \"ok\"}\nnot json\n");
  o.inputs = {(dir / "bad.jsonl").string()};
  try {
    train_sentencepiece(o);
    ADD_FAILURE() << "no error";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:2: not valid JSON"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir / "out" / "tokenizer.model"));
}

// --out holding a user's tokenizer is refused before training and left as it was; a directory an
// earlier `tsp tokenizer train` wrote is trained into again.
TEST(SentencePieceTrainer, NeverReplacesAUsersTokenizer) {
  ScratchDir dir;
  std::string text;
  for (int i = 0; i < 200; ++i) text += "line " + std::to_string(i) + " of some training text\n";
  write_bytes(dir / "a.txt", text);
  fs::create_directory(dir / "user");
  write_bytes(dir / "user" / "tokenizer.model", "a user's model");
  SentencePieceTrainOptions o;
  o.inputs = {(dir / "a.txt").string()};
  o.vocab_size = 300;
  o.out_dir = dir / "user";
  try {
    train_sentencepiece(o);
    ADD_FAILURE() << "no error";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("not written by tsp tokenizer train"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_bytes(dir / "user" / "tokenizer.model"), "a user's model");
  o.out_dir = dir / "ours";
  train_sentencepiece(o);
  EXPECT_NO_THROW(train_sentencepiece(o));  // its own output is replaced
}

}  // namespace
}  // namespace tsp::data
