// Token file writer (atomic) and validating reader; little-endian hosts only.
// Writes go through core/atomic_file.h, so a failed write never clobbers an existing file.
#include "tsp/data/token_file.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <string>

#include "tsp/core/atomic_file.h"
#include "tsp/core/check.h"
#include "tsp/core/file_io.h"

static_assert(std::endian::native == std::endian::little, "token files are little-endian on disk");

namespace tsp::data {

namespace {

// Tokens are int32 in memory, so u32 files hold ids below 2^31.
uint64_t max_vocab_for(TokenWidth w) { return w == TokenWidth::u16 ? 65536ull : 2147483648ull; }

template <class T>
void put(unsigned char* dst, T value) {
  std::memcpy(dst, &value, sizeof(T));
}
template <class T>
T get(const unsigned char* src) {
  T v;
  std::memcpy(&v, src, sizeof(T));
  return v;
}

}  // namespace

void write_token_file(const std::filesystem::path& path, std::span<const int32_t> tokens,
                      const TokenFileWriteOptions& options) {
  TSP_CHECK(options.vocab_size > 0, "write_token_file(", path.string(), "): vocab_size must be positive, got ",
            options.vocab_size);
  const uint64_t vocab = static_cast<uint64_t>(options.vocab_size);
  const TokenWidth width = options.width.value_or(vocab <= 65536 ? TokenWidth::u16 : TokenWidth::u32);
  TSP_CHECK(vocab <= max_vocab_for(width), "write_token_file(", path.string(), "): vocab_size ", vocab,
            " does not fit ", static_cast<int>(width), "-byte tokens");
  for (size_t i = 0; i < tokens.size(); ++i)
    TSP_CHECK(tokens[i] >= 0 && static_cast<uint64_t>(tokens[i]) < vocab, "write_token_file(", path.string(),
              "): token ", tokens[i], " at position ", i, " outside [0, ", vocab, ")");

  unsigned char header[kTokenFileHeaderBytes] = {};
  std::memcpy(header, kTokenFileMagic, 8);
  put<uint32_t>(header + 8, kTokenFileVersion);
  put<uint32_t>(header + 12, static_cast<uint32_t>(width));
  put<uint64_t>(header + 16, static_cast<uint64_t>(tokens.size()));
  put<uint64_t>(header + 24, vocab);

  AtomicFileWriter out(path);
  out.write(header, sizeof header);
  if (width == TokenWidth::u32) {
    out.write(tokens.data(), tokens.size_bytes());
  } else {
    std::vector<uint16_t> buf;
    constexpr size_t kChunk = 1 << 16;
    for (size_t i = 0; i < tokens.size(); i += kChunk) {
      const size_t n = std::min(kChunk, tokens.size() - i);
      buf.resize(n);
      for (size_t k = 0; k < n; ++k) buf[k] = static_cast<uint16_t>(tokens[i + k]);
      out.write(buf.data(), n * 2);
    }
  }
  out.commit();
}

TokenFileReader::TokenFileReader(std::filesystem::path path) : path_(std::move(path)) {
  const std::string file = path_.string();
  OpenFile opened = open_regular_file(path_, "token file");
  fd_ = std::move(opened.fd);  // a member: closed even if the constructor throws below
  auto fail = [&](auto... what) { TSP_THROW(IoError, "token file ", file, ": ", what...); };
  const uint64_t file_size = opened.size;
  if (file_size < kTokenFileHeaderBytes)
    fail("has ", file_size, " bytes, fewer than the ", kTokenFileHeaderBytes, "-byte header (truncated?)");
  unsigned char h[kTokenFileHeaderBytes];
  pread_exact(fd_.get(), h, sizeof h, 0, path_);
  if (std::memcmp(h, kTokenFileMagic, 8) != 0) fail("bad magic (expected \"TSPTOK1\\0\"): not a token file");
  header_.version = get<uint32_t>(h + 8);
  if (header_.version != kTokenFileVersion)
    fail("unsupported version ", header_.version, " (this build reads version ", kTokenFileVersion, ")");
  const uint32_t width = get<uint32_t>(h + 12);
  if (width != 2 && width != 4) fail("token width ", width, " bytes (must be 2 or 4)");
  header_.width = static_cast<TokenWidth>(width);
  header_.count = get<uint64_t>(h + 16);
  header_.vocab_size = get<uint64_t>(h + 24);
  if (header_.vocab_size == 0 || header_.vocab_size > max_vocab_for(header_.width))
    fail("vocab_size ", header_.vocab_size, " invalid for ", width, "-byte tokens");
  const uint64_t data = file_size - kTokenFileHeaderBytes;
  if (header_.count > data / width || data != header_.count * width)
    fail("header says ", header_.count, " tokens (", header_.count, " x ", width, " bytes) but the file has ",
         data, " data bytes", data < header_.count * width ? " (truncated)" : " (trailing bytes)");
}

std::vector<int32_t> TokenFileReader::read(uint64_t begin, uint64_t count) const {
  TSP_CHECK(begin <= header_.count && count <= header_.count - begin, "token range [", begin, ", ",
            begin + count, ") outside the ", header_.count, " tokens of ", path_.string());
  const uint64_t width = static_cast<uint64_t>(header_.width);
  std::vector<unsigned char> raw(count * width);
  pread_exact(fd_.get(), raw.data(), raw.size(), kTokenFileHeaderBytes + begin * width, path_);
  std::vector<int32_t> tokens(count);
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t t = width == 2 ? get<uint16_t>(&raw[i * 2]) : get<uint32_t>(&raw[i * 4]);
    if (t >= header_.vocab_size)
      TSP_THROW(IoError, "token file ", path_.string(), ": token ", t, " at position ", begin + i,
                " is outside the vocabulary [0, ", header_.vocab_size, ") (corrupt file)");
    tokens[i] = static_cast<int32_t>(t);
  }
  return tokens;
}

std::vector<int32_t> read_token_file(const std::filesystem::path& path) { return TokenFileReader(path).read_all(); }

}  // namespace tsp::data
