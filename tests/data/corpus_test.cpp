// Tests of the fortune corpus reader (on a directory built here, and on the installed package when
// present) and of the unigram entropy.
#include "tsp/data/corpus.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "scratch_dir.h"
#include "tsp/core/error.h"
#include "tsp/data/byte_tokenizer.h"

namespace tsp::data {
namespace {

using testing::ScratchDir;
using testing::write_bytes;

TEST(Corpus, SplitsRecords) {
  EXPECT_EQ(split_fortune_records("one\ntwo\n%\nthree\n%\n%\n  \n%\nlast"),
            (std::vector<std::string>{"one\ntwo\n", "three\n", "last\n"}));
  EXPECT_EQ(split_fortune_records("a\r\n%\r\nb\r\n"), (std::vector<std::string>{"a\n", "b\n"}));
  EXPECT_EQ(split_fortune_records("50% off\n%\n"), (std::vector<std::string>{"50% off\n"}));
  EXPECT_TRUE(split_fortune_records("").empty());
}

TEST(Corpus, ReadsADirectoryDeterministically) {
  ScratchDir dir;
  write_bytes(dir / "zen", "Z one\n%\nZ two\n%\n");
  write_bytes(dir / "art", "A one\n%\nA two\n  still two\n");
  write_bytes(dir / "art.dat", std::string("\x00\x00\x00\x02 binary index", 18));
  std::filesystem::create_symlink("art", dir / "art.u8");
  std::filesystem::create_symlink("zen", dir / "zen-link");
  std::filesystem::create_directory(dir / "off");
  write_bytes(dir / "off" / "rude", "never read\n%\n");
  write_bytes(dir / ".hidden", "never read\n%\n");

  const Corpus c = read_fortune_corpus({.dir = dir.path()});
  EXPECT_EQ(c.files, 2);
  EXPECT_EQ(c.records, 4);
  EXPECT_EQ(c.text, "A one\n\nA two\n  still two\n\nZ one\n\nZ two\n\n");
  const Corpus compact = read_fortune_corpus({.dir = dir.path(), .record_separator = ""});
  EXPECT_EQ(compact.text, "A one\nA two\n  still two\nZ one\nZ two\n");
}

TEST(Corpus, MissingOrEmptyDirectoryThrows) {
  ScratchDir dir;
  try {
    read_fortune_corpus({.dir = dir / "absent"});
    ADD_FAILURE() << "no exception";
  } catch (const IoError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("absent"), std::string::npos) << m;
    EXPECT_NE(m.find("apt-get install fortunes"), std::string::npos) << m;
  }
  EXPECT_THROW(read_fortune_corpus({.dir = dir.path()}), IoError);
  write_bytes(dir / "blank", "%\n%\n");
  EXPECT_THROW(read_fortune_corpus({.dir = dir.path()}), IoError);
}

// TSP_FORTUNE_DIR may point at an unpacked package (dpkg -x) instead of the installed one.
TEST(Corpus, InstalledFortunesPackage) {
  const char* env = std::getenv("TSP_FORTUNE_DIR");
  const std::filesystem::path dir = env ? std::filesystem::path(env) : std::filesystem::path(kDefaultFortuneDir);
  if (!std::filesystem::is_directory(dir))
    GTEST_SKIP() << dir << " is absent (Debian package 'fortunes' not installed)";
  const Corpus c = read_fortune_corpus({.dir = dir});
  EXPECT_GT(c.records, 100);
  EXPECT_GT(c.text.size(), 10000u);
  EXPECT_EQ(read_fortune_corpus({.dir = dir}).text, c.text);  // deterministic
  const UnigramEntropy e = unigram_entropy_of_bytes(c.text);
  EXPECT_GT(e.bits, 3.5);  // English text: about 4.5 bits per byte
  EXPECT_LT(e.bits, 5.5);
}

TEST(Corpus, UnigramEntropy) {
  const UnigramEntropy uniform = unigram_entropy(std::vector<int32_t>{0, 1, 2, 3, 3, 2, 1, 0});
  EXPECT_DOUBLE_EQ(uniform.bits, 2.0);
  EXPECT_NEAR(uniform.nats, std::log(4.0), 1e-12);
  EXPECT_EQ(uniform.distinct, 4);
  EXPECT_EQ(uniform.tokens, 8);
  EXPECT_DOUBLE_EQ(unigram_entropy(std::vector<int32_t>{5, 5, 5}).bits, 0.0);
  EXPECT_DOUBLE_EQ(unigram_entropy(std::vector<int32_t>{}).bits, 0.0);
  // p = (1/2, 1/4, 1/4): 1.5 bits; large ids take the sparse path.
  EXPECT_DOUBLE_EQ(unigram_entropy(std::vector<int32_t>{1 << 30, 1 << 30, 7, 9}).bits, 1.5);
  EXPECT_THROW(unigram_entropy(std::vector<int32_t>{1, -2}), InvalidArgument);
  const std::string text = "the quick brown fox jumps over the lazy dog";
  const UnigramEntropy a = unigram_entropy_of_bytes(text);
  const UnigramEntropy b = unigram_entropy(ByteTokenizer().encode(text));
  EXPECT_DOUBLE_EQ(a.bits, b.bits);
  EXPECT_DOUBLE_EQ(a.nats, b.nats);
}

}  // namespace
}  // namespace tsp::data
