// mmap(PROT_READ, MAP_SHARED) of a whole file; MADV_RANDOM because training reads scattered
// windows (read-ahead of neighbouring pages would only grow the resident set).
#include "tsp/data/mapped_file.h"

#include <sys/mman.h>

#include <cerrno>
#include <utility>

#include "tsp/core/check.h"

namespace tsp::data {

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

void MappedFile::unmap() noexcept {
  if (data_ != nullptr) ::munmap(const_cast<unsigned char*>(data_), static_cast<size_t>(size_));
  data_ = nullptr;
  size_ = 0;
}

}  // namespace tsp::data
