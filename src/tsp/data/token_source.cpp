// Token sources: in-memory, memory-mapped files (three formats), concatenations, split views.
// Little-endian hosts only, as token_file.cpp.
#include "tsp/data/token_source.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "tsp/core/check.h"
#include "tsp/core/file_io.h"

static_assert(std::endian::native == std::endian::little, "token files are little-endian on disk");

namespace tsp::data {

namespace {

void check_range(const TokenSource& s, int64_t begin, int64_t count) {
  TSP_CHECK(begin >= 0 && count >= 0 && begin <= s.size() && count <= s.size() - begin, "token range [", begin,
            ", ", begin + count, ") outside the ", s.size(), " tokens of ", s.describe());
}

int32_t get_i32(const unsigned char* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace

// --- in memory ---------------------------------------------------------------------------------

InMemoryTokens::InMemoryTokens(std::vector<int32_t> tokens, std::string description, int64_t vocab_limit)
    : tokens_(std::move(tokens)), description_(std::move(description)), vocab_limit_(vocab_limit) {}

void InMemoryTokens::read(int64_t begin, int64_t count, int32_t* out) const {
  check_range(*this, begin, count);
  std::memcpy(out, tokens_.data() + begin, static_cast<size_t>(count) * sizeof(int32_t));
}

// --- mapped files ------------------------------------------------------------------------------

MappedTokenFile::MappedTokenFile(const std::filesystem::path& path) : map_(path, "token file") {
  const std::string file = path.string();
  const unsigned char* p = map_.data();
  const uint64_t bytes = map_.size();
  const int32_t magic = bytes >= 4 ? get_i32(p) : 0;
  if (bytes >= 8 && std::memcmp(p, kTokenFileMagic, 8) == 0) {
    // TokenFileReader validates the header with today's messages (a second, small read).
    const TokenFileReader reader(path);
    format_ = TokenFileFormat::tsp;
    width_ = reader.header().width;
    offset_ = kTokenFileHeaderBytes;
    count_ = reader.header().count;
    vocab_ = reader.header().vocab_size;
    return;
  }
  if (magic == kLlmcMagicU16 || magic == kLlmcMagicU32) {
    auto fail = [&](auto... what) { TSP_THROW(IoError, "llm.c token file ", file, ": ", what...); };
    if (bytes < kLlmcHeaderBytes)
      fail("has ", bytes, " bytes, fewer than the ", kLlmcHeaderBytes, "-byte header (256 int32; truncated?)");
    const int32_t version = get_i32(p + 4), want = magic == kLlmcMagicU16 ? kLlmcVersionU16 : kLlmcVersionU32;
    if (version != want)
      fail("unsupported version ", version, " for magic ", magic, " (this build reads version ", want,
           magic == kLlmcMagicU16 ? ", uint16 tokens)" : ", uint32 tokens)");
    const int32_t count = get_i32(p + 8);
    if (count < 0) fail("negative token count ", count, " in header[2]");
    format_ = TokenFileFormat::llmc;
    width_ = magic == kLlmcMagicU16 ? TokenWidth::u16 : TokenWidth::u32;
    offset_ = kLlmcHeaderBytes;
    count_ = static_cast<uint64_t>(count);
    vocab_ = width_ == TokenWidth::u16 ? 65536 : 2147483648ull;
    const uint64_t data = bytes - offset_, w = static_cast<uint64_t>(width_);
    if (data != count_ * w)
      fail("header says ", count_, " tokens (", count_, " x ", w, " bytes) but the file has ", data,
           " data bytes", data < count_ * w ? " (truncated)" : " (trailing bytes)");
    return;
  }
  if (path.extension() == ".bin") {
    if (bytes % 2 != 0)
      TSP_THROW(IoError, "token file ", file, ": not an llm.c shard (magic ", magic, ", expected ", kLlmcMagicU16,
                ") and, as a raw uint16 nanoGPT .bin, its ", bytes, " bytes are not a whole number of tokens");
    format_ = TokenFileFormat::nanogpt;
    width_ = TokenWidth::u16;
    offset_ = 0;
    count_ = bytes / 2;
    vocab_ = 65536;
    return;
  }
  // Not a format this reader knows: TokenFileReader's message ("bad magic ..." or "truncated").
  const TokenFileReader reader(path);
  TSP_THROW(IoError, "token file ", file, ": unrecognised format");  // not reached: the reader threw
}

std::string MappedTokenFile::describe() const {
  switch (format_) {
    case TokenFileFormat::tsp:
      return "token file " + path().string();
    case TokenFileFormat::llmc:
      return "llm.c shard " + path().string();
    case TokenFileFormat::nanogpt:
      return "nanoGPT uint16 file " + path().string();
  }
  return path().string();
}

void MappedTokenFile::check_range(int64_t begin, int64_t count) const { data::check_range(*this, begin, count); }

void MappedTokenFile::widen(const unsigned char* src, int64_t begin, int64_t count, int32_t* out) const {
  // Backwards: `src` may be `out` itself (stream() reads the raw bytes into the front of `out`);
  // element i is written over raw elements >= i, which are already converted.
  for (int64_t i = count - 1; i >= 0; --i) {
    uint64_t t;
    if (width_ == TokenWidth::u16) {
      uint16_t v;
      std::memcpy(&v, src + 2 * i, 2);
      t = v;
    } else {
      uint32_t v;
      std::memcpy(&v, src + 4 * i, 4);
      t = v;
    }
    if (t >= vocab_)
      TSP_THROW(IoError, "token file ", path().string(), ": token ", t, " at position ", begin + i,
                " is outside the vocabulary [0, ", vocab_, ") (corrupt file)");
    out[i] = static_cast<int32_t>(t);
  }
}

void MappedTokenFile::read(int64_t begin, int64_t count, int32_t* out) const {
  check_range(begin, count);
  const uint64_t w = static_cast<uint64_t>(width_);
  const unsigned char* src = map_.data() + offset_ + static_cast<uint64_t>(begin) * w;
  widen(src, begin, count, out);
  map_.drop_pages(src, static_cast<uint64_t>(count) * w);
}

void MappedTokenFile::stream(int64_t begin, int64_t count, int32_t* out) const {
  check_range(begin, count);
  if (count == 0) return;
  const uint64_t w = static_cast<uint64_t>(width_);
  pread_exact(map_.fd(), out, static_cast<uint64_t>(count) * w, offset_ + static_cast<uint64_t>(begin) * w,
              path());
  widen(reinterpret_cast<const unsigned char*>(out), begin, count, out);
}

// --- concatenation -----------------------------------------------------------------------------

ConcatTokens::ConcatTokens(std::vector<TokenSourcePtr> parts) : parts_(std::move(parts)) {
  TSP_CHECK(!parts_.empty(), "a concatenation of token sources needs at least one part");
  int64_t total = 0;
  for (const TokenSourcePtr& p : parts_) {
    TSP_CHECK(p != nullptr, "null token source in a concatenation");
    total += p->size();
    ends_.push_back(total);
    vocab_limit_ = std::max(vocab_limit_, p->vocab_limit());
  }
}

template <class Fn>
void ConcatTokens::each_piece(int64_t begin, int64_t count, int32_t* out, Fn&& fn) const {
  data::check_range(*this, begin, count);
  // The first part whose end lies beyond `begin`.
  size_t i = static_cast<size_t>(std::upper_bound(ends_.begin(), ends_.end(), begin) - ends_.begin());
  while (count > 0) {
    const int64_t part_begin = i == 0 ? 0 : ends_[i - 1];
    const int64_t local = begin - part_begin, n = std::min(count, ends_[i] - begin);
    fn(*parts_[i], local, n, out);
    begin += n;
    count -= n;
    out += n;
    ++i;
  }
}

void ConcatTokens::read(int64_t begin, int64_t count, int32_t* out) const {
  each_piece(begin, count, out, [](const TokenSource& s, int64_t b, int64_t n, int32_t* o) { s.read(b, n, o); });
}

void ConcatTokens::stream(int64_t begin, int64_t count, int32_t* out) const {
  each_piece(begin, count, out, [](const TokenSource& s, int64_t b, int64_t n, int32_t* o) { s.stream(b, n, o); });
}

std::string ConcatTokens::describe() const {
  if (parts_.size() == 1) return parts_[0]->describe();
  return std::to_string(parts_.size()) + " shards (" + parts_.front()->describe() + " ... " +
         parts_.back()->describe() + ")";
}

// --- split views -------------------------------------------------------------------------------

SplitView::SplitView(TokenSourcePtr source, const SplitOptions& options, SplitSide side)
    : source_(std::move(source)), side_(side) {
  TSP_CHECK(options.val_fraction >= 0.0 && options.val_fraction < 1.0, "val_fraction must be in [0, 1), got ",
            options.val_fraction);
  TSP_CHECK(options.block_tokens > 0, "block_tokens must be positive, got ", options.block_tokens);
  const int64_t n = source_->size();
  block_ = options.block_tokens;
  full_blocks_ = n / block_;
  // split_train_val (batch_loader.cpp): the last round(f * len) tokens of each block are validation.
  auto val_of = [&](int64_t len) {
    return std::min<int64_t>(len, std::llround(options.val_fraction * static_cast<double>(len)));
  };
  const int64_t last = n - full_blocks_ * block_;
  const int64_t val_full = full_blocks_ > 0 ? val_of(block_) : 0, val_last = val_of(last);
  if (side == SplitSide::train) {
    take_full_ = block_ - val_full;
    take_last_ = last - val_last;
  } else {
    skip_full_ = block_ - val_full;
    take_full_ = val_full;
    skip_last_ = last - val_last;
    take_last_ = val_last;
  }
  if (full_blocks_ == 0) take_full_ = skip_full_ = 0;
  size_ = full_blocks_ * take_full_ + take_last_;
}

template <class Fn>
void SplitView::each_piece(int64_t begin, int64_t count, int32_t* out, Fn&& fn) const {
  data::check_range(*this, begin, count);
  const int64_t in_full = full_blocks_ * take_full_;
  while (count > 0) {
    int64_t pos, run;
    if (begin < in_full) {
      const int64_t b = begin / take_full_, j = begin % take_full_;
      pos = b * block_ + skip_full_ + j;
      run = take_full_ - j;
    } else {
      const int64_t j = begin - in_full;
      pos = full_blocks_ * block_ + skip_last_ + j;
      run = take_last_ - j;
    }
    const int64_t n = std::min(count, run);
    fn(*source_, pos, n, out);
    begin += n;
    count -= n;
    out += n;
  }
}

void SplitView::read(int64_t begin, int64_t count, int32_t* out) const {
  each_piece(begin, count, out, [](const TokenSource& s, int64_t b, int64_t n, int32_t* o) { s.read(b, n, o); });
}

void SplitView::stream(int64_t begin, int64_t count, int32_t* out) const {
  each_piece(begin, count, out, [](const TokenSource& s, int64_t b, int64_t n, int32_t* o) { s.stream(b, n, o); });
}

std::string SplitView::describe() const {
  return (side_ == SplitSide::train ? "training split of " : "validation split of ") + source_->describe();
}

SplitSources split_train_val(TokenSourcePtr source, const SplitOptions& options) {
  SplitSources s;
  s.train = std::make_shared<SplitView>(source, options, SplitSide::train);
  s.val = std::make_shared<SplitView>(std::move(source), options, SplitSide::val);
  return s;
}

std::vector<int32_t> read_all(const TokenSource& source) {
  std::vector<int32_t> out(static_cast<size_t>(source.size()));
  source.stream(0, source.size(), out.data());
  return out;
}

}  // namespace tsp::data
