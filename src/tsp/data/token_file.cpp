// Token file writer (atomic) and validating reader; little-endian hosts only.
// Writes go through core/atomic_file.h, so a failed write never clobbers an existing file.
#include "tsp/data/token_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
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

// The 32-byte header of a file of `count` tokens.
void encode_header(unsigned char (&header)[kTokenFileHeaderBytes], TokenWidth width, uint64_t count, uint64_t vocab) {
  std::memset(header, 0, sizeof header);
  std::memcpy(header, kTokenFileMagic, 8);
  put<uint32_t>(header + 8, kTokenFileVersion);
  put<uint32_t>(header + 12, static_cast<uint32_t>(width));
  put<uint64_t>(header + 16, count);
  put<uint64_t>(header + 24, vocab);
}

TokenWidth checked_width(const std::filesystem::path& path, const TokenFileWriteOptions& options) {
  TSP_CHECK(options.vocab_size > 0, "write_token_file(", path.string(), "): vocab_size must be positive, got ",
            options.vocab_size);
  const uint64_t vocab = static_cast<uint64_t>(options.vocab_size);
  const TokenWidth width = options.width.value_or(vocab <= 65536 ? TokenWidth::u16 : TokenWidth::u32);
  TSP_CHECK(vocab <= max_vocab_for(width), "write_token_file(", path.string(), "): vocab_size ", vocab,
            " does not fit ", static_cast<int>(width), "-byte tokens");
  return width;
}

}  // namespace

void write_token_file(const std::filesystem::path& path, std::span<const int32_t> tokens,
                      const TokenFileWriteOptions& options) {
  const TokenWidth width = checked_width(path, options);
  const uint64_t vocab = static_cast<uint64_t>(options.vocab_size);
  for (size_t i = 0; i < tokens.size(); ++i)
    TSP_CHECK(tokens[i] >= 0 && static_cast<uint64_t>(tokens[i]) < vocab, "write_token_file(", path.string(),
              "): token ", tokens[i], " at position ", i, " outside [0, ", vocab, ")");

  unsigned char header[kTokenFileHeaderBytes];
  encode_header(header, width, static_cast<uint64_t>(tokens.size()), vocab);

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

struct TokenFileStreamWriter::Impl {
  explicit Impl(const std::filesystem::path& p) : out(p) {}
  AtomicFileWriter out;
};

namespace {
constexpr size_t kStreamBufferBytes = 1 << 20;  // one write per MiB of tokens
}

TokenFileStreamWriter::TokenFileStreamWriter(const std::filesystem::path& path, const TokenFileWriteOptions& options)
    : path_(path), width_(checked_width(path, options)) {
  vocab_ = static_cast<uint64_t>(options.vocab_size);
  impl_ = std::make_unique<Impl>(path);
  unsigned char header[kTokenFileHeaderBytes];
  encode_header(header, width_, 0, vocab_);  // the count is written by finish()
  impl_->out.write(header, sizeof header);
  buffer_.reserve(kStreamBufferBytes);
}

TokenFileStreamWriter::~TokenFileStreamWriter() = default;  // AtomicFileWriter removes an uncommitted temporary

void TokenFileStreamWriter::append(std::span<const int32_t> tokens) {
  TSP_CHECK(impl_ != nullptr, "TokenFileStreamWriter::append after finish()");
  for (size_t i = 0; i < tokens.size(); ++i)
    TSP_CHECK(tokens[i] >= 0 && static_cast<uint64_t>(tokens[i]) < vocab_, "token file ", path().string(), ": token ",
              tokens[i], " at position ", count_ + i, " outside [0, ", vocab_, ")");
  const size_t w = static_cast<size_t>(width_);
  for (size_t i = 0; i < tokens.size();) {
    const size_t n = std::min(tokens.size() - i, std::max<size_t>(1, (kStreamBufferBytes - buffer_.size()) / w));
    const size_t at = buffer_.size();
    buffer_.resize(at + n * w);
    unsigned char* dst = &buffer_[at];
    if (width_ == TokenWidth::u16)
      for (size_t k = 0; k < n; ++k) put<uint16_t>(dst + 2 * k, static_cast<uint16_t>(tokens[i + k]));
    else
      std::memcpy(dst, tokens.data() + i, n * 4);
    i += n;
    if (buffer_.size() >= kStreamBufferBytes) flush_buffer();
  }
  count_ += tokens.size();
}

void TokenFileStreamWriter::flush_buffer() {
  if (buffer_.empty()) return;
  impl_->out.write(buffer_.data(), buffer_.size());
  buffer_.clear();
}

void TokenFileStreamWriter::finish() {
  TSP_CHECK(impl_ != nullptr, "TokenFileStreamWriter::finish called twice");
  flush_buffer();
  // The header's count, written in place through a second descriptor of the temporary; commit()
  // then fsyncs the file (both descriptors share its pages) and renames it.
  unsigned char header[kTokenFileHeaderBytes];
  encode_header(header, width_, count_, vocab_);
  const std::filesystem::path& temp = impl_->out.temporary();
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CLOEXEC);
  TSP_CHECK_T(IoError, fd >= 0, "cannot reopen ", temp.string(), " to write the token count: ", errno_text(errno));
  const ssize_t n = ::pwrite(fd, header, sizeof header, 0);
  const int err = errno;
  ::close(fd);
  TSP_CHECK_T(IoError, n == static_cast<ssize_t>(sizeof header), "cannot write the header of ", temp.string(), ": ",
              errno_text(err));
  impl_->out.commit();
  impl_.reset();
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
