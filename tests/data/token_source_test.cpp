// Tests of token sources read in place: mapped TSPTOK1 / llm.c / nanoGPT files (layouts written
// here byte by byte from their documented formats), refusal of foreign or damaged files, shard
// concatenation, split views equal to split_train_val's copies, manifests, --data specs, and the
// loader over sources: the same batches as from memory, exact resume across shards and blends.
#include "tsp/data/token_source.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>

#include "io_test_util.h"
#include "scratch_dir.h"
#include "tsp/core/error.h"
#include "tsp/data/token_streams.h"

namespace tsp::data {
namespace {

using testing::io_error_of;
using testing::ScratchDir;
using testing::write_bytes;

std::vector<int32_t> some_tokens(size_t n, int32_t vocab, size_t salt = 0) {
  std::vector<int32_t> t(n);
  for (size_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>(((i + salt) * 7919 + 13) % static_cast<size_t>(vocab));
  return t;
}

template <class T>
void append(std::string& s, T v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof v);
}

// llm.c dev/data/data_common.py write_datafile: 256 int32 (magic, version, count, zeros), tokens.
std::string llmc_bytes(const std::vector<int32_t>& tokens, int32_t magic = kLlmcMagicU16, int32_t version = 1,
                       std::optional<int32_t> count = std::nullopt) {
  std::string s;
  append<int32_t>(s, magic);
  append<int32_t>(s, version);
  append<int32_t>(s, count.value_or(static_cast<int32_t>(tokens.size())));
  s.resize(kLlmcHeaderBytes, '\0');
  for (int32_t t : tokens) {
    if (magic == kLlmcMagicU32) {
      append<uint32_t>(s, static_cast<uint32_t>(t));
    } else {
      append<uint16_t>(s, static_cast<uint16_t>(t));
    }
  }
  return s;
}

// nanoGPT data/*/prepare.py: np.array(ids, dtype=np.uint16).tofile(path).
std::string nanogpt_bytes(const std::vector<int32_t>& tokens) {
  std::string s;
  for (int32_t t : tokens) append<uint16_t>(s, static_cast<uint16_t>(t));
  return s;
}

std::vector<int32_t> read_range(const TokenSource& s, int64_t begin, int64_t count) {
  std::vector<int32_t> out(static_cast<size_t>(count));
  s.read(begin, count, out.data());
  return out;
}

std::vector<int32_t> raw(const Batch& b) {
  const int32_t* p = b.tokens.data<int32_t>();
  return std::vector<int32_t>(p, p + b.tokens.numel());
}

TEST(TokenSource, MappedTokFileReadsLikeTheReader) {
  ScratchDir dir;
  for (const auto& [vocab, width] : {std::pair<int64_t, TokenWidth>{259, TokenWidth::u16}, {70000, TokenWidth::u32}}) {
    const auto tokens = some_tokens(50001, static_cast<int32_t>(vocab));
    write_token_file(dir / "a.tok", tokens, {.vocab_size = vocab});
    const MappedTokenFile f(dir / "a.tok");
    EXPECT_EQ(f.format(), TokenFileFormat::tsp);
    EXPECT_EQ(f.width(), width);
    EXPECT_EQ(f.size(), 50001);
    EXPECT_EQ(f.vocab_limit(), vocab);
    EXPECT_EQ(read_all(f), tokens);  // stream(): pread
    EXPECT_EQ(read_range(f, 40000, 10001), std::vector<int32_t>(tokens.begin() + 40000, tokens.end()));  // map
    EXPECT_THROW(read_range(f, 50000, 2), InvalidArgument);
  }
}

TEST(TokenSource, MappedFileRefusesDamageWithTheReadersMessages) {
  ScratchDir dir;
  write_token_file(dir / "a.tok", some_tokens(100, 259), {.vocab_size = 259});
  std::string bytes = testing::read_bytes(dir / "a.tok");
  write_bytes(dir / "short.tok", bytes.substr(0, bytes.size() - 1));
  EXPECT_NE(io_error_of([&] { MappedTokenFile f(dir / "short.tok"); }).find("(truncated)"), std::string::npos);
  write_bytes(dir / "text.tok", "hello world, these are not tokens at all but plain text");
  EXPECT_NE(io_error_of([&] { MappedTokenFile f(dir / "text.tok"); }).find("bad magic"), std::string::npos);
  // An id at or above the header's vocab_size is refused when read, naming its position.
  bytes[32 + 2 * 7] = '\xff';
  bytes[32 + 2 * 7 + 1] = '\x7f';
  write_bytes(dir / "bad.tok", bytes);
  const MappedTokenFile bad(dir / "bad.tok");
  const std::string msg = io_error_of([&] { read_range(bad, 0, 10); });
  EXPECT_NE(msg.find("at position 7"), std::string::npos) << msg;
  EXPECT_NE(io_error_of([&] { read_all(bad); }).find("at position 7"), std::string::npos);
}

TEST(TokenSource, LlmcShardsU16AndU32) {
  ScratchDir dir;
  const auto tokens = some_tokens(3001, 50257);
  write_bytes(dir / "shard.bin", llmc_bytes(tokens));
  const MappedTokenFile f(dir / "shard.bin");
  EXPECT_EQ(f.format(), TokenFileFormat::llmc);
  EXPECT_EQ(f.width(), TokenWidth::u16);
  EXPECT_EQ(f.size(), 3001);
  EXPECT_EQ(read_all(f), tokens);
  EXPECT_EQ(read_range(f, 17, 5), std::vector<int32_t>(tokens.begin() + 17, tokens.begin() + 22));
  const auto big = some_tokens(501, 128256);
  write_bytes(dir / "llama.bin", llmc_bytes(big, kLlmcMagicU32, kLlmcVersionU32));
  const MappedTokenFile g(dir / "llama.bin");
  EXPECT_EQ(g.width(), TokenWidth::u32);
  EXPECT_EQ(read_all(g), big);
}

TEST(TokenSource, LlmcRefusalsAreOneClearError) {
  ScratchDir dir;
  const auto tokens = some_tokens(100, 50257);
  auto refused = [&](const std::string& bytes) {
    write_bytes(dir / "x.bin", bytes);
    return io_error_of([&] { MappedTokenFile f(dir / "x.bin"); });
  };
  std::string m = refused(llmc_bytes(tokens, kLlmcMagicU16, 2));
  EXPECT_NE(m.find("unsupported version 2"), std::string::npos) << m;
  EXPECT_NE(m.find("x.bin"), std::string::npos) << m;
  m = refused(llmc_bytes(tokens, kLlmcMagicU16, 1, 101));
  EXPECT_NE(m.find("header says 101 tokens"), std::string::npos) << m;
  EXPECT_NE(m.find("(truncated)"), std::string::npos) << m;
  m = refused(llmc_bytes(tokens, kLlmcMagicU16, 1, 99));
  EXPECT_NE(m.find("(trailing bytes)"), std::string::npos) << m;
  m = refused(llmc_bytes(tokens).substr(0, 1000));
  EXPECT_NE(m.find("1024-byte header"), std::string::npos) << m;
  m = refused(llmc_bytes(tokens, kLlmcMagicU16, 1, -5));
  EXPECT_NE(m.find("negative token count"), std::string::npos) << m;
  // A wrong magic in a .bin file is read as raw nanoGPT uint16 unless its size is odd.
  m = refused(llmc_bytes(tokens, 20240519) + "x");
  EXPECT_NE(m.find("not an llm.c shard"), std::string::npos) << m;
  // A wrong magic in any other file is the token file's "bad magic".
  write_bytes(dir / "x.dat", llmc_bytes(tokens, 20240519));
  m = io_error_of([&] { MappedTokenFile f(dir / "x.dat"); });
  EXPECT_NE(m.find("bad magic"), std::string::npos) << m;
}

TEST(TokenSource, NanoGptRawUint16) {
  ScratchDir dir;
  const auto tokens = some_tokens(4097, 50257);
  write_bytes(dir / "train.bin", nanogpt_bytes(tokens));
  const MappedTokenFile f(dir / "train.bin");
  EXPECT_EQ(f.format(), TokenFileFormat::nanogpt);
  EXPECT_EQ(f.size(), 4097);
  EXPECT_EQ(f.vocab_limit(), 65536);
  EXPECT_EQ(read_all(f), tokens);
  write_bytes(dir / "empty.bin", "");
  EXPECT_EQ(MappedTokenFile(dir / "empty.bin").size(), 0);
}

TEST(TokenSource, ConcatenationReadsAcrossShardBoundaries) {
  ScratchDir dir;
  std::vector<int32_t> all;
  std::vector<TokenSourcePtr> parts;
  for (int i = 0; i < 3; ++i) {
    const auto t = some_tokens(static_cast<size_t>(100 + 37 * i), 259, static_cast<size_t>(i) * 1000);
    all.insert(all.end(), t.begin(), t.end());
    const auto name = "s" + std::to_string(i) + ".tok";
    write_token_file(dir / name, t, {.vocab_size = 259});
    parts.push_back(std::make_shared<MappedTokenFile>(dir / name));
  }
  const ConcatTokens c(parts);
  ASSERT_EQ(c.size(), static_cast<int64_t>(all.size()));
  EXPECT_EQ(read_all(c), all);
  for (int64_t begin : {0, 90, 99, 100, 130, 236, 237, 300}) {
    const int64_t n = std::min<int64_t>(80, c.size() - begin);
    EXPECT_EQ(read_range(c, begin, n), std::vector<int32_t>(all.begin() + begin, all.begin() + begin + n)) << begin;
  }
  EXPECT_THROW(read_range(c, c.size() - 1, 2), InvalidArgument);
}

TEST(TokenSource, SplitViewsEqualTheCopyingSplit) {
  for (const int64_t n : {int64_t{1}, int64_t{99}, int64_t{1000}, int64_t{10000}, int64_t{10007}}) {
    for (const double f : {0.0, 0.001, 0.1, 0.25, 0.9}) {
      for (const int64_t block : {int64_t{1}, int64_t{7}, int64_t{1024}, int64_t{1} << 16, INT64_MAX}) {
        const auto tokens = some_tokens(static_cast<size_t>(n), 1 << 20);
        const SplitOptions o{.val_fraction = f, .block_tokens = block};
        const TokenSplit copy = split_train_val(tokens, o);
        const SplitSources view = split_train_val(std::make_shared<InMemoryTokens>(tokens, "t"), o);
        ASSERT_EQ(read_all(*view.train), copy.train) << n << " " << f << " " << block;
        ASSERT_EQ(read_all(*view.val), copy.val) << n << " " << f << " " << block;
        if (view.train->size() > 3) {  // a window read in pieces equals the copy's range
          const int64_t b = view.train->size() / 3, c = view.train->size() - b;
          EXPECT_EQ(read_range(*view.train, b, c), std::vector<int32_t>(copy.train.begin() + b, copy.train.end()));
        }
      }
    }
  }
}

TEST(TokenSource, LoaderOverAMappedFileDrawsTheSameBatchesAsFromMemory) {
  ScratchDir dir;
  const auto tokens = some_tokens(20000, 259);
  write_token_file(dir / "a.tok", tokens, {.vocab_size = 259});
  const SplitOptions o{.val_fraction = 0.1, .block_tokens = 1024};
  const BatchLoaderOptions lo{.batch_size = 6, .seq_len = 32, .seed = 9};
  BatchLoader memory(split_train_val(tokens, o).train, lo);
  BatchLoader mapped(split_train_val(std::make_shared<MappedTokenFile>(dir / "a.tok"), o).train, lo);
  for (int i = 0; i < 200; ++i) {  // > one epoch: 18000 / 32 = 562 windows / 6 rows
    ASSERT_EQ(raw(memory.next()), raw(mapped.next())) << i;
    ASSERT_EQ(memory.state(), mapped.state());
  }
  // A data-parallel rank reads its rows only; they equal its block of the global batch.
  BatchLoader a(split_train_val(tokens, o).train, lo), b = a;
  const auto global = raw(a.next());
  const auto mine = raw(b.next(DataShard{.rank = 1, .world = 3}));
  EXPECT_EQ(mine, std::vector<int32_t>(global.begin() + 2 * 33, global.begin() + 4 * 33));
}

// Draws k batches, saves the state (through its text form), draws more; a fresh loader restored
// from the state draws the same batches as the uninterrupted one.
void expect_exact_resume(const std::function<BatchLoader()>& make, int k, int more) {
  BatchLoader first = make();
  for (int i = 0; i < k; ++i) first.next();
  const LoaderState saved = LoaderState::parse(first.state().to_string());
  ASSERT_EQ(saved, first.state());
  BatchLoader resumed = make();
  resumed.restore(saved);
  for (int i = 0; i < more; ++i) ASSERT_EQ(raw(first.next()), raw(resumed.next())) << "batch " << k + i;
  EXPECT_EQ(first.state(), resumed.state());
}

TEST(TokenSource, ResumeIsExactAcrossShardBoundaries) {
  ScratchDir dir;
  std::vector<TokenSourcePtr> shards;
  for (int i = 0; i < 4; ++i) {
    const auto name = "s" + std::to_string(i) + ".tok";
    write_token_file(dir / name, some_tokens(257, 259, static_cast<size_t>(i) * 999), {.vocab_size = 259});
    shards.push_back(std::make_shared<MappedTokenFile>(dir / name));
  }
  const auto stream = std::make_shared<ConcatTokens>(shards);
  // 1028 tokens / S = 16: 64 windows, many straddle shards; 50 batches of 4 rows pass 3 epochs.
  for (int k : {0, 7, 16, 33})
    expect_exact_resume([&] { return BatchLoader(stream, {.batch_size = 4, .seq_len = 16, .seed = 3}); }, k, 20);
}

TEST(TokenSource, BlendRowsFollowTheWeightsAndResumeExactly) {
  const auto a = std::make_shared<InMemoryTokens>(std::vector<int32_t>(5000, 1), "a");  // all ones
  const auto b = std::make_shared<InMemoryTokens>(std::vector<int32_t>(700, 2), "b");   // all twos
  const BatchLoaderOptions lo{.batch_size = 8, .seq_len = 16, .seed = 5};
  auto make = [&] { return BatchLoader(std::vector<BlendPart>{{a, 0.7}, {b, 0.3}}, lo); };
  BatchLoader blend = make();
  int64_t rows_b = 0, rows = 0;
  for (int i = 0; i < 500; ++i) {
    const auto t = raw(blend.next());
    for (size_t r = 0; r < t.size(); r += 17) {
      // A row comes wholly from one part.
      EXPECT_EQ(std::count(t.begin() + static_cast<ptrdiff_t>(r), t.begin() + static_cast<ptrdiff_t>(r + 17), t[r]), 17);
      rows_b += t[r] == 2;
      ++rows;
    }
  }
  // 4000 Bernoulli(0.3) rows: standard deviation sqrt(4000 * 0.21) = 29 rows; 6 sigma = 174.
  EXPECT_NEAR(static_cast<double>(rows_b), 0.3 * static_cast<double>(rows), 174.0);
  // Part b (700 tokens: 43 windows) passed many epochs, part a (312 windows) fewer.
  const LoaderState st = blend.state();
  ASSERT_EQ(st.parts.size(), 2u);
  EXPECT_GT(st.parts[1].epoch, st.parts[0].epoch);
  EXPECT_EQ(st.num_tokens, 5700);
  for (int k : {0, 3, 100}) expect_exact_resume(make, k, 30);
  // A one-part blend samples exactly as a single source.
  BatchLoader one(std::vector<BlendPart>{{a, 0.5}}, lo), single(TokenSourcePtr(a), lo);
  for (int i = 0; i < 20; ++i) ASSERT_EQ(raw(one.next()), raw(single.next()));
  // Restoring a blend's state into another blend or a single source is refused.
  BatchLoader other(std::vector<BlendPart>{{a, 0.7}, {a, 0.3}}, lo);
  EXPECT_THROW(other.restore(st), InvalidArgument);
  EXPECT_THROW(single.restore(st), InvalidArgument);
  EXPECT_THROW(BatchLoader(std::vector<BlendPart>{{a, 0.0}, {b, 1.0}}, lo), InvalidArgument);
  EXPECT_THROW(LoaderState::parse(st.to_string() + " parts=1:2:3,4:5:6"), InvalidArgument);
}

TEST(TokenSource, DataSpecs) {
  auto items = parse_data_spec("a.tok");
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].paths, std::vector<std::string>{"a.tok"});
  EXPECT_FALSE(items[0].weight.has_value());
  items = parse_data_spec("a.bin,b.bin");
  ASSERT_EQ(items.size(), 2u);
  EXPECT_FALSE(items[1].weight.has_value());
  items = parse_data_spec("x/a:0.7,b+c:0.3");
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0].paths, std::vector<std::string>{"x/a"});
  EXPECT_DOUBLE_EQ(*items[0].weight, 0.7);
  EXPECT_EQ(items[1].paths, (std::vector<std::string>{"b", "c"}));
  items = parse_data_spec("dir:with:colons/a.tok");  // not a number after the last ':'
  EXPECT_EQ(items[0].paths, std::vector<std::string>{"dir:with:colons/a.tok"});
  EXPECT_THROW(parse_data_spec("a:0.7,b"), InvalidArgument);
  EXPECT_THROW(parse_data_spec("a:0,b:1"), InvalidArgument);
  EXPECT_THROW(parse_data_spec("a:-1,b:1"), InvalidArgument);
  EXPECT_THROW(parse_data_spec("a,,b"), InvalidArgument);
  EXPECT_THROW(parse_data_spec("a++b"), InvalidArgument);
}

// A manifest as tsp data prepare writes it (docs/training.md "Reading at scale").
void write_manifest(const std::filesystem::path& dir, const std::vector<std::pair<std::string, int64_t>>& train,
                    const std::vector<std::pair<std::string, int64_t>>& val, int64_t vocab) {
  auto list = [](const std::vector<std::pair<std::string, int64_t>>& l) {
    std::string s = "[";
    for (const auto& [f, n] : l)
      s += std::string(s.size() > 1 ? "," : "") + "{\"file\":\"" + f + "\",\"tokens\":" + std::to_string(n) +
           ",\"xxh64\":\"0000000000000000\"}";
    return s + "]";
  };
  write_bytes(dir / "manifest.json", "{\"format\":\"tsp-token-shards-v1\",\"tokenizer\":{\"kind\":\"byte\"},"
                                     "\"vocab_size\":" + std::to_string(vocab) + ",\"train\":" + list(train) +
                                         ",\"val\":" + list(val) + ",\"documents\":3}");
}

TEST(TokenSource, ManifestTrainAndValidationShards) {
  ScratchDir dir;
  const auto t0 = some_tokens(300, 259, 1), t1 = some_tokens(200, 259, 2), v0 = some_tokens(90, 259, 3);
  write_token_file(dir / "train-00000.tok", t0, {.vocab_size = 259});
  write_token_file(dir / "train-00001.tok", t1, {.vocab_size = 259});
  write_token_file(dir / "val-00000.tok", v0, {.vocab_size = 259});
  write_manifest(dir.path(), {{"train-00000.tok", 300}, {"train-00001.tok", 200}}, {{"val-00000.tok", 90}}, 259);
  for (const auto& p : {dir.path(), dir / "manifest.json"}) {
    const TokenStreams s = open_token_path(p);
    std::vector<int32_t> train = t0;
    train.insert(train.end(), t1.begin(), t1.end());
    EXPECT_EQ(read_all(*s.train), train);
    ASSERT_NE(s.val, nullptr);
    EXPECT_EQ(read_all(*s.val), v0);
  }
  write_manifest(dir.path(), {{"train-00000.tok", 300}}, {}, 259);
  EXPECT_EQ(open_token_path(dir.path()).val, nullptr);  // the split rule applies
  write_manifest(dir.path(), {{"train-00000.tok", 301}}, {}, 259);
  EXPECT_NE(io_error_of([&] { open_token_path(dir.path()); }).find("holds 300 tokens, the manifest says 301"),
            std::string::npos);
  write_manifest(dir.path(), {{"train-00000.tok", 300}}, {}, 100);
  EXPECT_NE(io_error_of([&] { open_token_path(dir.path()); }).find("larger than the manifest's 100"),
            std::string::npos);
  write_manifest(dir.path(), {{"missing.tok", 300}}, {}, 259);
  EXPECT_NE(io_error_of([&] { open_token_path(dir.path()); }).find("missing.tok"), std::string::npos);
  write_bytes(dir / "manifest.json", "{\"format\":\"something-else\"}");
  EXPECT_NE(io_error_of([&] { open_token_path(dir.path()); }).find("tsp-token-shards-v1"), std::string::npos);
  ScratchDir empty;
  EXPECT_NE(io_error_of([&] { open_token_path(empty.path()); }).find("is a directory, not a regular file, and has no manifest.json"),
            std::string::npos);
}

}  // namespace
}  // namespace tsp::data
