// A read-only memory map of a whole regular file (RAII). The mapped bytes are the kernel's page
// cache shared by every process that maps the file, not allocations of this process.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string_view>

#include "tsp/core/file_io.h"

namespace tsp::data {

class MappedFile {
 public:
  // Opens `path` (open_regular_file: `what` names it in messages) and maps it read-only, shared.
  // An empty file maps nothing (data() is nullptr, size() 0). Failure -> IoError naming the file.
  explicit MappedFile(const std::filesystem::path& path, std::string_view what = "file");
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const unsigned char* data() const { return data_; }
  uint64_t size() const { return size_; }
  // The descriptor stays open: one-pass scans read with pread (core/file_io.h) so they do not
  // leave the whole file resident in this process's page tables.
  int fd() const { return fd_.get(); }
  // Unmaps this process's page-table entries for the bytes [p, p + n) and the fault-around block
  // (64 KiB) around them: the page cache keeps the data, so the next read is a minor fault, but
  // the process's resident set does not grow with every window ever read (docs/training.md,
  // "Reading at scale").
  void drop_pages(const unsigned char* p, uint64_t n) const noexcept;

 private:
  void unmap() noexcept;
  std::filesystem::path path_;
  UniqueFd fd_;
  const unsigned char* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace tsp::data
