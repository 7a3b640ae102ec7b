// mmap(PROT_READ, MAP_SHARED) of a whole file; MADV_RANDOM because training reads scattered
// windows (read-ahead of neighbouring pages would only grow the resident set).
#include "tsp/data/mapped_file.h"

#include <sys/mman.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "tsp/core/check.h"

namespace tsp::data {

namespace {
const uintptr_t kPage = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
}  // namespace

MappedFile::MappedFile(const std::filesystem::path& path, std::string_view what) : path_(path) {
  OpenFile opened = open_regular_file(path_, what);
  fd_ = std::move(opened.fd);
  size_ = opened.size;
  if (size_ == 0) return;
  void* p = ::mmap(nullptr, static_cast<size_t>(size_), PROT_READ, MAP_SHARED, fd_.get(), 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    TSP_THROW(IoError, "cannot map ", what, " ", path_.string(), " (", size_, " bytes): ", errno_text(err));
  }
  data_ = static_cast<const unsigned char*>(p);
  ::madvise(p, static_cast<size_t>(size_), MADV_RANDOM);  // a hint: failure changes nothing
}

MappedFile::~MappedFile() { unmap(); }

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)), fd_(std::move(other.fd_)), data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    unmap();
    path_ = std::move(other.path_);
    fd_ = std::move(other.fd_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void MappedFile::drop_pages(const unsigned char* p, uint64_t n) const noexcept {
  // Linux maps up to fault_around_bytes (64 KiB by default, aligned) of cached pages around a
  // read fault; dropping the aligned blocks that hold the read removes those too.
  constexpr uintptr_t kBlock = uintptr_t{64} << 10;
  if (data_ == nullptr || n == 0) return;
  const auto lo = reinterpret_cast<uintptr_t>(data_);
  const uintptr_t hi = (lo + static_cast<uintptr_t>(size_) + kPage - 1) & ~(kPage - 1);
  const uintptr_t a = std::max(lo, reinterpret_cast<uintptr_t>(p) & ~(kBlock - 1));
  const uintptr_t e = std::min(hi, (reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(n) + kBlock - 1) &
                                       ~(kBlock - 1));
  if (e > a) ::madvise(reinterpret_cast<void*>(a), e - a, MADV_DONTNEED);  // a hint: failure changes nothing
}

void MappedFile::unmap() noexcept {
  if (data_ != nullptr) ::munmap(const_cast<unsigned char*>(data_), static_cast<size_t>(size_));
  data_ = nullptr;
  size_ = 0;
}

}  // namespace tsp::data
