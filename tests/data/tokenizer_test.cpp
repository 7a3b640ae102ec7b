// Tokenizers: the ids recorded from @huggingface/tokenizers (scripts/tokenizer-agreement.mjs
// --write-fixtures) on the real Llama-3.1 and Llama-2 vocabularies, cut down to what the fixture
// texts use; the choice of tokenizer from a model directory and its refusals; the pieces.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "scratch_dir.h"
#include "tsp/core/error.h"
#include "tsp/data/tokenizer/byte_level.h"
#include "tsp/data/tokenizer/hf_tokenizer.h"
#include "tsp/data/tokenizer/model_dir_tokenizer.h"
#include "tsp/data/tokenizer/regex.h"
#include "tsp/data/tokenizer/unicode_normalize.h"
#include "tsp/data/tokenizer/utf8.h"

namespace tsp::data {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

const fs::path kFixtures = fs::path(TSP_SOURCE_DIR) / "tests/data/tokenizer_fixtures";

json read_json(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str());
}

void write(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

class Fixture : public ::testing::TestWithParam<std::string> {};

TEST_P(Fixture, IdsAndDecodeMatchTheReference) {
  const std::string name = GetParam();
  const auto t = load_tokenizer_dir(kFixtures / name);
  const json expected = read_json(kFixtures / (name + "_expected.json"));
  ASSERT_GE(expected["cases"].size(), 5u);
  for (const json& c : expected["cases"]) {
    const std::string text = c["text"].get<std::string>();
    const std::vector<int32_t> ids = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(t->encode(text), ids) << name << ": " << c["category"];
    EXPECT_EQ(t->decode(ids), c["decoded"].get<std::string>()) << name << ": " << c["category"];
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, Fixture, ::testing::Values("llama3", "llama2"));

TEST(Tokenizer, Llama3SpecialIdsComeFromTheConfigFiles) {
  const auto t = load_tokenizer_dir(kFixtures / "llama3");
  EXPECT_EQ(t->bos_id(), 128000);
  EXPECT_EQ(t->eos_ids(), (std::vector<int32_t>{128001, 128008, 128009}));  // generation_config's list
  EXPECT_EQ(t->vocab_size(), 128256);
  EXPECT_TRUE(t->is_special(128009));
  EXPECT_FALSE(t->is_special(220));
  // Byte-level: the exact bytes come back, invalid UTF-8 included; specials skipped on request.
  const std::string bytes = std::string("a\xff\xfe b\xc3", 5) + " \xe2\x82";
  const std::vector<int32_t> ids = t->encode(bytes, false);
  EXPECT_EQ(t->decode(ids), bytes);
  std::vector<int32_t> with = {128000};
  with.insert(with.end(), ids.begin(), ids.end());
  EXPECT_EQ(t->decode(with, true), bytes);
  EXPECT_EQ(t->decode(with, false), "<|begin_of_text|>" + bytes);
  EXPECT_THROW(t->decode(std::vector<int32_t>{128256}), InvalidArgument);
  EXPECT_THROW(t->decode(std::vector<int32_t>{-1}), InvalidArgument);
}

TEST(Tokenizer, Llama2ByteFallbackRoundTripsAndTemplateAddsBos) {
  const auto t = load_tokenizer_dir(kFixtures / "llama2");
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_EQ(t->eos_ids(), std::vector<int32_t>{2});
  const std::vector<int32_t> ids = t->encode("\xf0\x9f\xa4\x96");  // U+1F916: not in the cut vocabulary
  ASSERT_EQ(ids.size(), 6u);  // BOS, "▁" and the four <0xNN> pieces (ids 3 + byte)
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(std::vector<int32_t>(ids.begin() + 2, ids.end()), (std::vector<int32_t>{3 + 0xf0, 3 + 0x9f, 3 + 0xa4, 3 + 0x96}));
  EXPECT_EQ(t->decode(ids, true), "\xf0\x9f\xa4\x96");  // Strip removes the prepended space
}

TEST(Tokenizer, ModelDirectoryChoiceAndRefusals) {
  tsp::testing::ScratchDir dir;
  // No tokenizer files: the byte tokenizer for a byte-sized vocabulary, a refusal otherwise.
  EXPECT_EQ(tokenizer_for_model("", dir.path(), 320)->describe(), "byte");
  try {
    tokenizer_for_model("", dir.path(), 32000);
    ADD_FAILURE() << "a 32000-id model without tokenizer files was accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("no tokenizer in"), std::string::npos) << e.what();
  }
  // The model's vocabulary must hold the tokenizer's ids, with little padding beyond them.
  EXPECT_EQ(tokenizer_for_model(kFixtures / "llama3", dir.path(), 128256)->vocab_size(), 128256);
  EXPECT_NO_THROW(tokenizer_for_model(kFixtures / "llama3", dir.path(), 128256 + kMaxVocabPadding));
  EXPECT_THROW(tokenizer_for_model(kFixtures / "llama3", dir.path(), 128255), InvalidArgument);
  EXPECT_THROW(tokenizer_for_model(kFixtures / "llama3", dir.path(), 128256 + kMaxVocabPadding + 1), InvalidArgument);
  EXPECT_THROW(tokenizer_for_model(kFixtures / "llama2", dir.path(), 128256), InvalidArgument);
  EXPECT_THROW(tokenizer_for_model("byte", dir.path(), 100), InvalidArgument);
  // Unsupported components are refused by name.
  write(dir.path() / "tokenizer.json", R"({"model": {"type": "WordPiece", "vocab": {}}})");
  try {
    load_tokenizer_dir(dir.path());
    ADD_FAILURE() << "a WordPiece model was accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("WordPiece"), std::string::npos) << e.what();
  }
  write(dir.path() / "tokenizer.json",
        R"({"normalizer": {"type": "Lowercase"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})");
  EXPECT_THROW(load_tokenizer_dir(dir.path()), InvalidArgument);
  // A tokenizer.model libsentencepiece cannot read: refused with its message.
  fs::remove(dir.path() / "tokenizer.json");
  write(dir.path() / "tokenizer.model", "not a protobuf");
  EXPECT_THROW(load_tokenizer_dir(dir.path()), InvalidArgument);
  // Ids beyond 2^24 are refused before any table is sized by them.
  fs::remove(dir.path() / "tokenizer.model");
  write(dir.path() / "tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 2000000000}, "merges": []}})");
  EXPECT_THROW(load_tokenizer_dir(dir.path()), InvalidArgument);
}

TEST(Tokenizer, GenerationDefaultsAreRead) {
  const GenerationDefaults g = read_generation_defaults(kFixtures / "llama3");
  EXPECT_EQ(g.do_sample, true);
  EXPECT_EQ(g.temperature, 0.6);
  EXPECT_EQ(g.top_p, 0.9);
  EXPECT_FALSE(g.top_k.has_value());
}

TEST(Tokenizer, BpeMergesLowestRankFirstAndLeftmostAmongEquals) {
  // "aaa": the merge "a a" applies at the leftmost pair first -> "aa" "a".
  const char* j = R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "aa": 2, "ab": 3, "aab": 4},
                     "merges": ["a b", "a a", "aa b"]}})";
  const HfTokenizer t(j, "test");
  EXPECT_EQ(t.encode("aaa"), (std::vector<int32_t>{2, 0}));
  // "aab": "a b" (rank 0) beats "a a" (rank 1): a + ab; "aab" is never formed.
  EXPECT_EQ(t.encode("aab"), (std::vector<int32_t>{0, 3}));
  EXPECT_THROW(t.encode("c"), InvalidArgument);  // no unk, no byte fallback: refused, not dropped
}

TEST(Tokenizer, RegexUsesOnigurumaWhitespace) {
  // U+0085 (NEL) is White_Space for Oniguruma's \s but not for PCRE2's.
  const Regex r(R"(\s+)");
  const auto m = r.find_all("a\xc2\x85" "b");
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0], (std::pair<size_t, size_t>{1, 3}));
  EXPECT_THROW(Regex("(unclosed"), InvalidArgument);
}

TEST(Tokenizer, UnicodeNormalizationKeepsInvalidBytes) {
  EXPECT_EQ(unicode_normalize("e\xcc\x81", NormalForm::nfc), "\xc3\xa9");    // e + U+0301 -> U+00E9
  EXPECT_EQ(unicode_normalize("\xc3\xa9", NormalForm::nfd), "e\xcc\x81");
  EXPECT_EQ(unicode_normalize("\xef\xac\x81", NormalForm::nfkc), "fi");       // U+FB01 ligature
  EXPECT_EQ(unicode_normalize("\xef\xac\x81", NormalForm::nfc), "\xef\xac\x81");
  EXPECT_EQ(unicode_normalize(std::string("a\xff" "e\xcc\x81\xc3", 6), NormalForm::nfc),
            std::string("a\xff\xc3\xa9\xc3", 5));
  EXPECT_EQ(unicode_normalize("", NormalForm::nfc), "");
}

TEST(Tokenizer, Utf8AndByteLevelHelpers) {
  EXPECT_EQ(utf8::char_length("\xe2\x82\xac", 0), 3u);
  EXPECT_EQ(utf8::char_length("\xe2\x82", 0), 1u);  // truncated: a byte of its own
  EXPECT_EQ(utf8::code_point("\xed\xa0\x80", 0), -1);  // a surrogate is invalid
  EXPECT_EQ(utf8::incomplete_tail("ab\xe2\x82"), 2u);
  EXPECT_EQ(utf8::incomplete_tail("ab\xe2\x82\xac"), 0u);
  EXPECT_EQ(byte_level::char_of(' '), "\xc4\xa0");  // "Ġ"
  EXPECT_EQ(byte_level::byte_of(0x120), ' ');
  EXPECT_EQ(byte_level::byte_of('A'), 'A');
}

}  // namespace
}  // namespace tsp::data
