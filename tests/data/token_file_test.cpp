// Tests of token files: uint16/uint32 round trips, range reads, and rejection of truncated,
// padded, foreign or corrupt files with IoErrors naming the file.
#include "tsp/data/token_file.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "io_test_util.h"
#include "scratch_dir.h"
#include "tsp/core/error.h"

namespace tsp::data {
namespace {

using testing::io_error_of;
using testing::read_bytes;
using testing::ScratchDir;
using testing::write_bytes;

std::vector<int32_t> some_tokens(size_t n, int32_t vocab) {
  std::vector<int32_t> t(n);
  for (size_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 7919 + 13) % static_cast<size_t>(vocab));
  return t;
}

TEST(TokenFile, RoundTripU16) {
  ScratchDir dir;
  const auto tokens = some_tokens(100001, 259);
  write_token_file(dir / "a.tok", tokens, {.vocab_size = 259});
  EXPECT_EQ(std::filesystem::file_size(dir / "a.tok"), 32u + 2u * tokens.size());
  const TokenFileReader r(dir / "a.tok");
  EXPECT_EQ(r.header().width, TokenWidth::u16);
  EXPECT_EQ(r.header().vocab_size, 259u);
  EXPECT_EQ(r.size(), tokens.size());
  EXPECT_EQ(r.read_all(), tokens);
  EXPECT_EQ(r.read(500, 3), (std::vector<int32_t>(tokens.begin() + 500, tokens.begin() + 503)));
  EXPECT_TRUE(r.read(tokens.size(), 0).empty());
  EXPECT_THROW(r.read(tokens.size() - 1, 2), InvalidArgument);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"a.tok"});

  // Byte layout: magic, version 1, width 2, count, vocab.
  const std::string bytes = read_bytes(dir / "a.tok");
  EXPECT_EQ(bytes.substr(0, 8), std::string("TSPTOK1\0", 8));
  uint32_t version, width;
  uint64_t count, vocab;
  std::memcpy(&version, bytes.data() + 8, 4);
  std::memcpy(&width, bytes.data() + 12, 4);
  std::memcpy(&count, bytes.data() + 16, 8);
  std::memcpy(&vocab, bytes.data() + 24, 8);
  EXPECT_EQ(version, 1u);
  EXPECT_EQ(width, 2u);
  EXPECT_EQ(count, tokens.size());
  EXPECT_EQ(vocab, 259u);
}

TEST(TokenFile, RoundTripU32) {
  ScratchDir dir;
  auto tokens = some_tokens(5000, 100000);
  tokens.push_back(99999);
  write_token_file(dir / "b.tok", tokens, {.vocab_size = 100000});
  EXPECT_EQ(TokenFileReader(dir / "b.tok").header().width, TokenWidth::u32);
  EXPECT_EQ(read_token_file(dir / "b.tok"), tokens);
  // Explicit u32 for a small vocabulary, and an empty file.
  write_token_file(dir / "c.tok", std::vector<int32_t>{1, 2, 3}, {.vocab_size = 4, .width = TokenWidth::u32});
  EXPECT_EQ(std::filesystem::file_size(dir / "c.tok"), 32u + 12u);
  EXPECT_EQ(read_token_file(dir / "c.tok"), (std::vector<int32_t>{1, 2, 3}));
  write_token_file(dir / "d.tok", std::vector<int32_t>{}, {.vocab_size = 4});
  EXPECT_TRUE(read_token_file(dir / "d.tok").empty());
}

TEST(TokenFile, WriterValidates) {
  ScratchDir dir;
  EXPECT_THROW(write_token_file(dir / "x.tok", std::vector<int32_t>{1, 5}, {.vocab_size = 5}), InvalidArgument);
  EXPECT_THROW(write_token_file(dir / "x.tok", std::vector<int32_t>{-1}, {.vocab_size = 5}), InvalidArgument);
  EXPECT_THROW(write_token_file(dir / "x.tok", std::vector<int32_t>{1}, {.vocab_size = 0}), InvalidArgument);
  EXPECT_THROW(write_token_file(dir / "x.tok", std::vector<int32_t>{1},
                                {.vocab_size = 70000, .width = TokenWidth::u16}),
               InvalidArgument);
  EXPECT_TRUE(dir.entries().empty());
}

TEST(TokenFile, RejectsBrokenFiles) {
  ScratchDir dir;
  const auto tokens = some_tokens(64, 300);
  write_token_file(dir / "good.tok", tokens, {.vocab_size = 300});
  const std::string good = read_bytes(dir / "good.tok");

  struct Case {
    const char* name;
    std::string content;
    const char* expect;
  };
  std::string bad_magic = good;
  bad_magic[0] = 'X';
  std::string bad_version = good;
  bad_version[8] = 9;
  std::string bad_width = good;
  bad_width[12] = 3;
  std::string corrupt_token = good;
  corrupt_token[32 + 2 * 10] = static_cast<char>(0xff);  // token 10 -> 0x??ff >= 300
  corrupt_token[32 + 2 * 10 + 1] = static_cast<char>(0xff);
  const std::vector<Case> cases = {
      {"truncated", good.substr(0, good.size() - 1), "(truncated)"},
      {"header_only_part", good.substr(0, 20), "fewer than the 32-byte header"},
      {"trailing", good + "zz", "(trailing bytes)"},
      {"bad_magic", bad_magic, "bad magic"},
      {"bad_version", bad_version, "unsupported version 9"},
      {"bad_width", bad_width, "token width 3"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const auto path = dir / (std::string(c.name) + ".tok");
    write_bytes(path, c.content);
    const std::string m = io_error_of([&] { TokenFileReader r(path); });
    EXPECT_NE(m.find(path.string()), std::string::npos) << m;
    EXPECT_NE(m.find(c.expect), std::string::npos) << m;
  }
  write_bytes(dir / "corrupt.tok", corrupt_token);
  const TokenFileReader r(dir / "corrupt.tok");  // header is fine
  EXPECT_EQ(r.read(0, 10).size(), 10u);
  const std::string m = io_error_of([&] { r.read_all(); });
  EXPECT_NE(m.find("position 10"), std::string::npos) << m;
  EXPECT_NE(m.find("corrupt.tok"), std::string::npos) << m;
  EXPECT_NE(io_error_of([&] { TokenFileReader x(dir / "absent.tok"); }).find("absent.tok"), std::string::npos);
}

}  // namespace
}  // namespace tsp::data

namespace tsp::data {
namespace {

// The stream writer's file is byte-identical to write_token_file's for the same tokens, whatever
// the append sizes (1, a prime, more than its 1 MiB buffer), for both widths.
TEST(TokenFileStream, SameBytesAsTheWholeFileWriter) {
  testing::ScratchDir dir;
  for (const int64_t vocab : {int64_t{320}, int64_t{128256}}) {
    const std::vector<int32_t> tokens = some_tokens(700'001, static_cast<int32_t>(vocab));
    std::filesystem::remove(dir / "stream.tok");
    write_token_file(dir / "whole.tok", tokens, {.vocab_size = vocab});
    {
      TokenFileStreamWriter w(dir / "stream.tok", {.vocab_size = vocab});
      size_t at = 0;
      for (const size_t step : {size_t{1}, size_t{7919}, size_t{600'000}}) {
        const size_t n = std::min(step, tokens.size() - at);
        w.append(std::span<const int32_t>(tokens).subspan(at, n));
        at += n;
      }
      w.append(std::span<const int32_t>(tokens).subspan(at));
      EXPECT_EQ(w.size(), tokens.size());
      EXPECT_FALSE(std::filesystem::exists(dir / "stream.tok"));  // only the temporary until finish()
      w.finish();
    }
    EXPECT_EQ(testing::read_bytes(dir / "stream.tok"), testing::read_bytes(dir / "whole.tok")) << vocab;
    EXPECT_EQ(read_token_file(dir / "stream.tok"), tokens);
  }
}

// Destroyed without finish(): no target, no temporary left; an existing file at the path is kept.
TEST(TokenFileStream, AbandonedWriterLeavesNothing) {
  testing::ScratchDir dir;
  testing::write_bytes(dir / "keep.tok", "user data");
  {
    TokenFileStreamWriter w(dir / "keep.tok", {.vocab_size = 300});
    const std::vector<int32_t> t = {1, 2, 3};
    w.append(t);
    EXPECT_THROW(w.append(std::vector<int32_t>{5, 300}), InvalidArgument);  // 300 is outside [0, 300)
  }
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"keep.tok"});
  EXPECT_EQ(testing::read_bytes(dir / "keep.tok"), "user data");
}

// An empty stream is a valid file of 0 tokens.
TEST(TokenFileStream, EmptyFile) {
  testing::ScratchDir dir;
  TokenFileStreamWriter w(dir / "e.tok", {.vocab_size = 259});
  w.finish();
  EXPECT_EQ(TokenFileReader(dir / "e.tok").size(), 0u);
}

}  // namespace
}  // namespace tsp::data
