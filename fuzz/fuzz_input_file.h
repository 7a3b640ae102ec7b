// The bytes of one fuzz input as a file, for readers that take a path (safetensors, token files,
// training state): one temporary file per process, rewritten for every input, removed at exit.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace tsp::fuzz {

class FuzzInputFile {
 public:
  // `suffix` keeps the name a reader may check (e.g. ".safetensors").
  explicit FuzzInputFile(const std::string& suffix) {
    // /dev/shm when present: a write per input stays in memory.
    const char* base = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
    std::string pattern = std::string(base) + "/tsp-fuzz-XXXXXX" + suffix;
    fd_ = mkstemps(pattern.data(), static_cast<int>(suffix.size()));
    if (fd_ < 0) std::abort();  // the harness itself is broken: no file to test with
    path_ = pattern;
  }
  ~FuzzInputFile() {
    close(fd_);
    std::filesystem::remove(path_);
  }
  FuzzInputFile(const FuzzInputFile&) = delete;
  FuzzInputFile& operator=(const FuzzInputFile&) = delete;

  // Replaces the file's contents with data[0, size).
  const std::filesystem::path& write(const uint8_t* data, size_t size) {
    if (ftruncate(fd_, 0) != 0) std::abort();
    size_t done = 0;
    while (done < size) {
      const ssize_t n = pwrite(fd_, data + done, size - done, static_cast<off_t>(done));
      if (n <= 0) std::abort();
      done += static_cast<size_t>(n);
    }
    return path_;
  }

 private:
  int fd_ = -1;
  std::filesystem::path path_;
};

}  // namespace tsp::fuzz
