// Token streams read where they lie: a TokenSource is a random-access sequence of token ids that
// the batch loader copies windows out of. Sources: an in-memory vector (the fortunes corpus), a
// memory-mapped token file (TSPTOK1, llm.c .bin, raw uint16 nanoGPT .bin), a concatenation of
// sources (shards) and a train or validation view of split_train_val's rule (index arithmetic,
// no copy). docs/training.md ("Reading at scale"), docs/formats.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tsp/data/batch_loader.h"
#include "tsp/data/mapped_file.h"
#include "tsp/data/token_file.h"

namespace tsp::data {

class TokenSource {
 public:
  virtual ~TokenSource() = default;
  virtual int64_t size() const = 0;
  // Every id is below this (from the file's header, or what its width can hold).
  virtual int64_t vocab_limit() const = 0;
  // Tokens [begin, begin + count) widened to int32 into out[0, count). A range outside
  // [0, size()] -> InvalidArgument; an id >= vocab_limit() -> IoError naming file and position.
  virtual void read(int64_t begin, int64_t count, int32_t* out) const = 0;
  // The same tokens for a one-pass scan of the stream (fingerprint, unigram counts): mapped files
  // read these with pread, so a scan does not leave the whole file resident in this process.
  virtual void stream(int64_t begin, int64_t count, int32_t* out) const { read(begin, count, out); }
  // "token file x.tok", "llm.c shard a.bin", "3 shards (...)".
  virtual std::string describe() const = 0;
};

using TokenSourcePtr = std::shared_ptr<const TokenSource>;

// The tokens in memory (small streams: the fortunes corpus, tests).
class InMemoryTokens final : public TokenSource {
 public:
  InMemoryTokens(std::vector<int32_t> tokens, std::string description, int64_t vocab_limit = INT32_MAX);
  int64_t size() const override { return static_cast<int64_t>(tokens_.size()); }
  int64_t vocab_limit() const override { return vocab_limit_; }
  void read(int64_t begin, int64_t count, int32_t* out) const override;
  std::string describe() const override { return description_; }
  const std::vector<int32_t>& tokens() const { return tokens_; }

 private:
  std::vector<int32_t> tokens_;
  std::string description_;
  int64_t vocab_limit_;
};

enum class TokenFileFormat : uint8_t {
  tsp,      // TSPTOK1 (token_file.h): 32-byte header, u16 or u32, vocab_size in the header
  llmc,     // llm.c: 256 x int32 header, magic 20240520 version 1 (u16) or 20240801 version 7 (u32)
  nanogpt,  // nanoGPT: raw little-endian uint16, no header (recognised by the .bin extension)
};

inline constexpr int32_t kLlmcMagicU16 = 20240520;  // llm.c dev/data/data_common.py "gpt-2"
inline constexpr int32_t kLlmcVersionU16 = 1;
inline constexpr int32_t kLlmcMagicU32 = 20240801;  // "llama-3"
inline constexpr int32_t kLlmcVersionU32 = 7;
inline constexpr uint64_t kLlmcHeaderBytes = 256 * 4;

// One token file, memory-mapped read-only. The header is validated at construction as
// TokenFileReader does (IoError naming the file: bad magic, version, width, vocab_size, a size
// that does not match the token count). Reads copy the window's tokens out of the map.
class MappedTokenFile final : public TokenSource {
 public:
  // The format from the first bytes: TSPTOK1 magic, llm.c magic, else a ".bin" name is a raw
  // nanoGPT uint16 stream; anything else -> IoError "bad magic" listing the accepted formats.
  explicit MappedTokenFile(const std::filesystem::path& path);

  int64_t size() const override { return static_cast<int64_t>(count_); }
  int64_t vocab_limit() const override { return static_cast<int64_t>(vocab_); }
  void read(int64_t begin, int64_t count, int32_t* out) const override;
  void stream(int64_t begin, int64_t count, int32_t* out) const override;
  std::string describe() const override;

  TokenFileFormat format() const { return format_; }
  TokenWidth width() const { return width_; }
  const std::filesystem::path& path() const { return map_.path(); }

 private:
  void check_range(int64_t begin, int64_t count) const;
  void widen(const unsigned char* src, int64_t begin, int64_t count, int32_t* out) const;
  MappedFile map_;
  TokenFileFormat format_ = TokenFileFormat::tsp;
  TokenWidth width_ = TokenWidth::u16;
  uint64_t offset_ = 0;  // header bytes before the first token
  uint64_t count_ = 0;
  uint64_t vocab_ = 0;
};

// Sources one after another (shards of one stream). At least one part.
class ConcatTokens final : public TokenSource {
 public:
  explicit ConcatTokens(std::vector<TokenSourcePtr> parts);
  int64_t size() const override { return ends_.empty() ? 0 : ends_.back(); }
  int64_t vocab_limit() const override { return vocab_limit_; }
  void read(int64_t begin, int64_t count, int32_t* out) const override;
  void stream(int64_t begin, int64_t count, int32_t* out) const override;
  std::string describe() const override;
  const std::vector<TokenSourcePtr>& parts() const { return parts_; }

 private:
  template <class Fn>
  void each_piece(int64_t begin, int64_t count, int32_t* out, Fn&& fn) const;
  std::vector<TokenSourcePtr> parts_;
  std::vector<int64_t> ends_;  // ends_[i]: tokens in parts 0..i
  int64_t vocab_limit_ = 0;
};

enum class SplitSide : uint8_t { train, val };

// The train or validation part of split_train_val(source, options) as a view: the same tokens in
// the same order, found by index arithmetic over the blocks instead of copied.
class SplitView final : public TokenSource {
 public:
  SplitView(TokenSourcePtr source, const SplitOptions& options, SplitSide side);
  int64_t size() const override { return size_; }
  int64_t vocab_limit() const override { return source_->vocab_limit(); }
  void read(int64_t begin, int64_t count, int32_t* out) const override;
  void stream(int64_t begin, int64_t count, int32_t* out) const override;
  std::string describe() const override;

 private:
  template <class Fn>
  void each_piece(int64_t begin, int64_t count, int32_t* out, Fn&& fn) const;
  TokenSourcePtr source_;
  SplitSide side_;
  int64_t block_ = 0;        // block length
  int64_t full_blocks_ = 0;  // blocks of exactly block_ tokens
  int64_t take_full_ = 0;    // tokens of this side in each full block
  int64_t skip_full_ = 0;    // offset of this side inside a block (0 for train, the cut for val)
  int64_t take_last_ = 0;    // tokens of this side in the last, shorter block
  int64_t skip_last_ = 0;
  int64_t size_ = 0;
};

// The train and validation views of one source (split_train_val's rule without a copy).
struct SplitSources {
  TokenSourcePtr train;
  TokenSourcePtr val;
};
SplitSources split_train_val(TokenSourcePtr source, const SplitOptions& options);

// All tokens of a source as a vector (tests and small streams).
std::vector<int32_t> read_all(const TokenSource& source);

}  // namespace tsp::data
