// Tests of `tsp data prepare`'s pipeline: the exact token stream (documents, EOS, validation rule,
// shard cuts), identical bytes at 1, 2 and 3 threads, the manifest, and the refusals.
#include "tsp/data/prepare/prepare.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <filesystem>

#include "scratch_dir.h"
#include "tsp/core/error.h"
#include "tsp/data/byte_tokenizer.h"
#include "tsp/data/token_file.h"

namespace tsp::data {
namespace {

namespace fs = std::filesystem;
using testing::read_bytes;
using testing::ScratchDir;
using testing::write_bytes;

// Pseudo-English lines (deterministic) of about `bytes` bytes.
std::string text_of(size_t bytes, uint32_t seed) {
  static const char* words[] = {"the", "lord", "said", "unto", "moses", "and", "fortune", "cookie", "of", "in",
                                "light", "darkness", "über", "naïve", "日本", "🤖"};
  std::string s;
  uint32_t x = seed * 2654435761u + 1;
  while (s.size() < bytes) {
    x = x * 1664525u + 1013904223u;
    s += words[(x >> 16) % 16];
    s += ((x >> 8) % 11 == 0) ? "\n" : " ";
  }
  return s + "\n";
}

// A corpus: a directory with nested files (one above kPieceBytes, so it is cut into pieces), an
// empty file, a hidden file (skipped), and a JSONL file.
struct Corpus {
  ScratchDir dir;
  std::vector<std::string> documents;  // in the order prepare reads them
  Corpus() {
    fs::create_directories(dir / "in/b");
    const std::vector<std::pair<std::string, std::string>> files = {
        {"in/a.txt", text_of(5000, 1)},
        {"in/b/big.txt", text_of(kPieceBytes * 2 + 12345, 2)},
        {"in/b/c.txt", text_of(300, 3)},
        {"in/b/empty.txt", ""},
        {"in/z.txt", text_of(70'000, 4)},
    };
    for (const auto& [name, text] : files) {
      write_bytes(dir / name, text);
      if (!text.empty()) documents.push_back(text);
    }
    write_bytes(dir / "in/.hidden", "never read");
    std::string jsonl;
    for (int i = 0; i < 40; ++i) {
      const std::string t = text_of(static_cast<size_t>(100 + 37 * i), 10 + i);
      jsonl += nlohmann_escape(t);
      documents.push_back(t);
    }
    write_bytes(dir / "docs.jsonl", jsonl);
  }
  static std::string nlohmann_escape(const std::string& t) {
    std::string s = "{\"id\": 1, \"text\": \"";
    for (char c : t) {
      if (c == '\n') s += "\\n";
      else if (c == '"') s += "\\\"";
      else s += c;
    }
    return s + "\"}\n";
  }
  PrepareOptions options(const std::string& out) const {
    PrepareOptions o;
    o.inputs = {(dir / "in").string(), (dir / "docs.jsonl").string()};
    o.out_dir = dir / out;
    return o;
  }
};

std::vector<int32_t> read_split(const fs::path& dir, const std::vector<ShardEntry>& shards) {
  std::vector<int32_t> all;
  for (const ShardEntry& s : shards) {
    const std::vector<int32_t> t = read_token_file(dir / s.file);
    EXPECT_EQ(t.size(), s.tokens) << s.file;
    EXPECT_EQ(xxh64_file_hex((dir / s.file).string()), s.xxh64) << s.file;
    all.insert(all.end(), t.begin(), t.end());
  }
  return all;
}

TEST(Prepare, ValidationRuleHoldsOutExactlyFloorNF) {
  for (const double f : {0.0, 0.01, 0.1, 0.25, 1.0 / 3.0, 0.5}) {
    for (const int64_t n : {int64_t{1}, int64_t{9}, int64_t{10}, int64_t{97}, int64_t{1000}}) {
      int64_t held = 0;
      for (int64_t i = 0; i < n; ++i) held += is_val_document(i, f) ? 1 : 0;
      EXPECT_EQ(held, static_cast<int64_t>(std::floor(static_cast<double>(n) * f))) << f << " " << n;
    }
  }
  EXPECT_TRUE(is_val_document(9, 0.1));
  EXPECT_FALSE(is_val_document(8, 0.1));
  EXPECT_FALSE(is_val_document(10, 0.1));
}

// The byte tokenizer makes the expected stream exact: each document's bytes then EOS (257), train
// and validation documents split by the rule, cut into shards of at most shard_tokens.
TEST(Prepare, ByteStreamIsTheDocumentsWithEosAndTheSplit) {
  Corpus c;
  PrepareOptions o = c.options("out");
  o.val_fraction = 0.1;
  o.shard_tokens = 1'000'000;
  o.threads = 2;
  const PrepareResult r = prepare_token_shards(o);
  std::vector<int32_t> want_train, want_val;
  for (size_t i = 0; i < c.documents.size(); ++i) {
    std::vector<int32_t>& w = is_val_document(static_cast<int64_t>(i), 0.1) ? want_val : want_train;
    for (unsigned char b : c.documents[i]) w.push_back(b);
    w.push_back(ByteTokenizer::kEosId);
  }
  const ShardManifest m = read_manifest(o.out_dir / kShardManifestName);
  EXPECT_EQ(m.documents, static_cast<int64_t>(c.documents.size()));
  EXPECT_EQ(read_split(o.out_dir, m.train), want_train);
  EXPECT_EQ(read_split(o.out_dir, m.val), want_val);
  ASSERT_EQ(m.train.size(), (want_train.size() + 999'999) / 1'000'000);  // every shard full but the last
  for (size_t i = 0; i + 1 < m.train.size(); ++i) EXPECT_EQ(m.train[i].tokens, 1'000'000u);
  EXPECT_EQ(m.train[0].file, "train-00000.tok");
  EXPECT_EQ(m.val[0].file, "val-00000.tok");
  EXPECT_EQ(r.train_tokens, want_train.size());
  EXPECT_EQ(m.tokenizer.kind, "byte");
  EXPECT_EQ(m.tokenizer.eos_id, ByteTokenizer::kEosId);
  EXPECT_EQ(m.vocab_size, ByteTokenizer::kNumIds);
  // Sources: sorted recursive listing, hidden file skipped, then the JSONL file.
  std::vector<std::string> names;
  for (const SourceEntry& s : m.sources) names.push_back(fs::path(s.path).filename().string());
  EXPECT_EQ(names, (std::vector<std::string>{"a.txt", "big.txt", "c.txt", "empty.txt", "z.txt", "docs.jsonl"}));
  EXPECT_EQ(m.sources[1].bytes, c.documents[1].size());
}

// Same inputs and tokenizer -> the same bytes in every file, at 1, 2 and 3 threads and any batch
// size: small batches make the corpus many encoding tasks, finishing out of order; a real BPE
// tokenizer (the Llama-3 fixture) and the byte tokenizer.
TEST(Prepare, OutputDoesNotDependOnThreads) {
  Corpus c;
  for (const std::string& tokenizer :
       {std::string("byte"), (fs::path(TSP_SOURCE_DIR) / "tests/data/tokenizer_fixtures/llama3").string()}) {
    std::vector<std::string> first;
    for (const auto& [threads, batch] : {std::pair{1, 1 << 20}, {2, 4096}, {3, 4096}, {3, 20000}}) {
      PrepareOptions o = c.options("out" + std::to_string(threads) + "_" + std::to_string(batch));
      o.overwrite = true;  // the second tokenizer replaces the first one's output
      o.tokenizer = tokenizer;
      o.threads = threads;
      o.batch_bytes = static_cast<size_t>(batch);
      o.val_fraction = 0.2;
      o.shard_tokens = 40'000;
      prepare_token_shards(o);
      std::vector<std::string> files;
      for (const fs::directory_entry& e : fs::directory_iterator(o.out_dir))
        files.push_back(e.path().filename().string() + ":" + read_bytes(e.path()));
      std::sort(files.begin(), files.end());
      ASSERT_GE(files.size(), 4u);  // several train shards, a val shard, the manifest
      if (first.empty()) first = files;
      else EXPECT_TRUE(files == first) << tokenizer << " threads=" << threads << " batch=" << batch;
    }
  }
}

TEST(Prepare, BlankLineDocumentsAndSeparateValidationInputs) {
  ScratchDir dir;
  write_bytes(dir / "t.txt", "\n\nfirst doc\nline two\n\n  \n\nsecond\n\n\nthird\n");
  write_bytes(dir / "v.txt", "held out\n\nalso held\n");
  PrepareOptions o;
  o.inputs = {(dir / "t.txt").string()};
  o.val_inputs = {(dir / "v.txt").string()};
  o.input.unit = DocumentUnit::blankline;
  o.out_dir = dir / "out";
  prepare_token_shards(o);
  const ShardManifest m = read_manifest(o.out_dir / kShardManifestName);
  const ByteTokenizer bt;
  const auto decode_all = [&](const std::vector<ShardEntry>& s) {
    return bt.decode(read_split(o.out_dir, s), {.special = SpecialTokens::render});
  };
  EXPECT_EQ(decode_all(m.train), "first doc\nline two\n<eos>second\n<eos>third\n<eos>");
  EXPECT_EQ(decode_all(m.val), "held out\n<eos>also held\n<eos>");
  EXPECT_EQ(m.documents, 5);
}

// The fortune format: records between lines holding only "%" (a "%" inside a line, a line "%%" or
// " %" is text); empty records are no documents; CRLF separators too.
TEST(Prepare, PercentLineDocumentsAreFortuneRecords) {
  ScratchDir dir;
  write_bytes(dir / "f", "%\nA fortune.\n  -- someone\n%\n%\n100% sure\n%%\n %\n%\r\nlast one\n");
  PrepareOptions o;
  o.inputs = {(dir / "f").string()};
  o.input.unit = DocumentUnit::percent;
  o.val_fraction = 0;
  o.out_dir = dir / "out";
  prepare_token_shards(o);
  const ShardManifest m = read_manifest(o.out_dir / kShardManifestName);
  const ByteTokenizer bt;
  EXPECT_EQ(bt.decode(read_split(o.out_dir, m.train), {.special = SpecialTokens::render}),
            "A fortune.\n  -- someone\n<eos>100% sure\n%%\n %\n<eos>last one\n<eos>");
  EXPECT_EQ(m.documents, 3);
  EXPECT_EQ(parse_document_unit("percent"), DocumentUnit::percent);
  EXPECT_THROW(parse_document_unit("para"), InvalidArgument);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(Prepare, BadJsonlLinesNameFileAndLine) {
  ScratchDir dir;
  const auto run = [&](const std::string& text, const std::string& field = "text") {
    write_bytes(dir / "d.jsonl", text);
    PrepareOptions o;
    o.inputs = {(dir / "d.jsonl").string()};
    o.input.field = field;
    o.out_dir = dir / "out";
    o.shard_tokens = 1;  // every token its own shard: the failure comes after shards were renamed
    o.batch_bytes = 1;   // ... because every document is its own encoding task, written (one thread)
    o.threads = 1;       // before the one after next is read
    return error_of([&] { prepare_token_shards(o); });
  };
  EXPECT_NE(run("{\"text\": \"a\"}\n{\"text\": \"bc\"}\n\n{\"text\": \"b\"\n").find("d.jsonl:4: not valid JSON"),
            std::string::npos);
  EXPECT_TRUE(fs::is_empty(dir / "out"));  // the failed run removed the shards it wrote
  EXPECT_NE(run("{\"text\": \"a\"}\n{\"body\": \"b\"}\n").find("d.jsonl:2: no field \"text\""), std::string::npos);
  EXPECT_NE(run("{\"text\": 5}\n").find("d.jsonl:1: field \"text\" is a JSON number"), std::string::npos);
  EXPECT_NE(run("[1]\n").find("d.jsonl:1: a JSON array"), std::string::npos);
  EXPECT_EQ(run("{\"body\": \"b\"}\n", "body"), "");  // --field names another field
  EXPECT_TRUE(fs::exists(dir / "out" / kShardManifestName));
}

TEST(Prepare, RefusesBadInputsAndOutputsBeforeWriting) {
  ScratchDir dir;
  write_bytes(dir / "a.txt", "hello\n");
  PrepareOptions o;
  o.inputs = {(dir / "a.txt").string(), (dir / "missing.txt").string()};
  o.out_dir = dir / "out";
  EXPECT_NE(error_of([&] { prepare_token_shards(o); }).find("missing.txt does not exist"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir / "out"));  // nothing created for a refused run

  // A directory with a stranger's file: refused, untouched, even with --overwrite.
  o.inputs = {(dir / "a.txt").string()};
  fs::create_directories(dir / "out");
  write_bytes(dir / "out/notes.txt", "mine");
  o.overwrite = true;
  EXPECT_NE(error_of([&] { prepare_token_shards(o); }).find("did not write (notes.txt)"), std::string::npos);
  EXPECT_EQ(read_bytes(dir / "out/notes.txt"), "mine");
  fs::remove(dir / "out/notes.txt");

  // An earlier output: replaced only with --overwrite; its extra shards are removed.
  o.overwrite = false;
  o.shard_tokens = 2;
  prepare_token_shards(o);  // "hello\n" + EOS = 7 tokens: 4 shards
  EXPECT_TRUE(fs::exists(dir / "out/train-00003.tok"));
  EXPECT_NE(error_of([&] { prepare_token_shards(o); }).find("give --overwrite"), std::string::npos);
  o.overwrite = true;
  o.shard_tokens = 100;
  prepare_token_shards(o);
  std::vector<std::string> names;
  for (const fs::directory_entry& e : fs::directory_iterator(dir / "out"))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"manifest.json", "train-00000.tok"}));

  // A tokenizer that does not load: an error before any shard is written.
  o.tokenizer = (dir / "nope").string();
  fs::remove_all(dir / "out");
  EXPECT_NE(error_of([&] { prepare_token_shards(o); }).find("nope does not exist"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir / "out"));
}

TEST(Prepare, TokenizerJsonIdentityAndEos) {
  ScratchDir dir;
  write_bytes(dir / "a.txt", "Hello world\n");
  PrepareOptions o;
  o.inputs = {(dir / "a.txt").string()};
  o.out_dir = dir / "out";
  const fs::path llama3 = fs::path(TSP_SOURCE_DIR) / "tests/data/tokenizer_fixtures/llama3";
  o.tokenizer = llama3.string();
  prepare_token_shards(o);
  const ShardManifest m = read_manifest(o.out_dir / kShardManifestName);
  const LoadedTokenizer t = load_tokenizer_for_prepare(llama3.string());
  EXPECT_EQ(m.tokenizer.kind, "tokenizer.json");
  EXPECT_EQ(m.tokenizer.source, fs::absolute(llama3 / "tokenizer.json").lexically_normal().string());
  EXPECT_EQ(m.tokenizer.xxh64, xxh64_hex(read_bytes(llama3 / "tokenizer.json")));
  EXPECT_EQ(m.tokenizer.eos_id, t.tokenizer->eos_ids().front());
  EXPECT_EQ(m.vocab_size, t.tokenizer->vocab_size());
  std::vector<int32_t> want = t.tokenizer->encode("Hello world\n", false);
  want.push_back(m.tokenizer.eos_id);
  EXPECT_EQ(read_split(o.out_dir, m.train), want);
  EXPECT_GT(m.vocab_size, 65536);  // u32 shards
  EXPECT_EQ(TokenFileReader(o.out_dir / "train-00000.tok").header().width, TokenWidth::u32);
}

}  // namespace
}  // namespace tsp::data
