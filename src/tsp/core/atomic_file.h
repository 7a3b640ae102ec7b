// AtomicFileWriter: writes a file under a temporary name in the target's directory, fsyncs it and
// renames it over the target, so the target is always either the old complete file or the new one.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

#include "tsp/core/file_io.h"

namespace tsp {

// Usage: AtomicFileWriter w(path); w.write(...); ...; w.commit();
// Until commit() the data lives in "<dir>/.<name>.tmp.XXXXXX"; if the writer is destroyed without
// commit() (an exception, a failed write) the temporary is removed and the target is untouched.
// commit() = fsync(file) + close + rename(tmp, target) + fsync(dir). Errors throw IoError naming
// the target and the system error.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::filesystem::path target);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, size_t bytes);
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }
  void commit();

  const std::filesystem::path& target() const { return target_; }
  const std::filesystem::path& temporary() const { return temp_; }
  size_t bytes_written() const { return written_; }

 private:
  void discard() noexcept;
  std::filesystem::path target_;
  std::filesystem::path temp_;
  UniqueFd fd_;
  size_t written_ = 0;
  bool committed_ = false;
};

// Whole-file convenience: write `bytes` to `path` atomically.
void write_file_atomically(const std::filesystem::path& path, std::string_view bytes);

}  // namespace tsp
