// Pre-tokenised token files: a 32-byte header (magic "TSPTOK1\0", version, token width, count,
// vocab size) followed by little-endian uint16 or uint32 tokens. Byte layout: docs/formats.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "tsp/core/file_io.h"

namespace tsp::data {

enum class TokenWidth : uint8_t { u16 = 2, u32 = 4 };  // bytes per token on disk

inline constexpr char kTokenFileMagic[8] = {'T', 'S', 'P', 'T', 'O', 'K', '1', '\0'};
inline constexpr uint32_t kTokenFileVersion = 1;
inline constexpr uint64_t kTokenFileHeaderBytes = 32;

struct TokenFileHeader {
  uint32_t version = kTokenFileVersion;
  TokenWidth width = TokenWidth::u16;
  uint64_t count = 0;       // number of tokens
  uint64_t vocab_size = 0;  // every token is < vocab_size
};

struct TokenFileWriteOptions {
  int64_t vocab_size = 0;  // required, > 0; every token must lie in [0, vocab_size)
  // u16 when vocab_size <= 65536 unless set; u32 is required above that.
  std::optional<TokenWidth> width = std::nullopt;
};

// Atomic (temporary file in the same directory, fsync, rename). Tokens outside [0, vocab_size)
// or a width too narrow for vocab_size -> InvalidArgument before anything is written.
void write_token_file(const std::filesystem::path& path, std::span<const int32_t> tokens,
                      const TokenFileWriteOptions& options);

// A token file written as a stream (`tsp data prepare`'s shards, larger than memory): the header,
// then the tokens as they come, through core/atomic_file.h's temporary. finish() writes the final
// count into the header, fsyncs and renames the temporary over `path`; a writer destroyed without
// finish() removes its temporary and never touches `path`. Tokens outside [0, vocab_size) throw
// InvalidArgument naming their position in the file; nothing of that append is written.
class TokenFileStreamWriter {
 public:
  TokenFileStreamWriter(const std::filesystem::path& path, const TokenFileWriteOptions& options);
  ~TokenFileStreamWriter();
  TokenFileStreamWriter(const TokenFileStreamWriter&) = delete;
  TokenFileStreamWriter& operator=(const TokenFileStreamWriter&) = delete;

  void append(std::span<const int32_t> tokens);
  void finish();
  uint64_t size() const { return count_; }  // tokens appended so far
  const std::filesystem::path& path() const { return path_; }

 private:
  void flush_buffer();
  struct Impl;
  std::filesystem::path path_;
  std::unique_ptr<Impl> impl_;
  uint64_t vocab_ = 0;
  TokenWidth width_ = TokenWidth::u16;
  uint64_t count_ = 0;
  std::vector<unsigned char> buffer_;  // encoded tokens not yet written
};

// An open token file. The header is validated at construction: file shorter than the header,
// wrong magic, unknown version or width, vocab_size 0 or above what the width can hold, or a
// file size different from 32 + count * width (truncated or trailing bytes) -> IoError naming
// the file. Tokens are read on demand with positioned reads.
class TokenFileReader {
 public:
  explicit TokenFileReader(std::filesystem::path path);  // movable, not copyable

  const std::filesystem::path& path() const { return path_; }
  const TokenFileHeader& header() const { return header_; }
  uint64_t size() const { return header_.count; }

  // Tokens [begin, begin + count) widened to int32; a token >= vocab_size -> IoError naming
  // its position (a corrupt file). Range outside [0, size()] -> InvalidArgument.
  std::vector<int32_t> read(uint64_t begin, uint64_t count) const;
  std::vector<int32_t> read_all() const { return read(0, size()); }

 private:
  std::filesystem::path path_;
  UniqueFd fd_;
  TokenFileHeader header_;
};

// Convenience: open, validate and read every token.
std::vector<int32_t> read_token_file(const std::filesystem::path& path);

}  // namespace tsp::data
