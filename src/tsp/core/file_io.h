// Small POSIX file-reading helpers shared by every reader of the engine (safetensors, token files,
// JSON configs, corpora): an owning file descriptor, an exact positioned read and a whole-file read.
// Every failure throws IoError naming the file and the system error. Writes: core/atomic_file.h.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace tsp {

// strerror(err) as a std::string ("No such file or directory").
std::string errno_text(int err);

// Owns a file descriptor: closed on destruction (errors ignored there: use close() to see them).
// Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }
  // Gives up ownership without closing.
  int release() noexcept;
  // Closes the current descriptor (if any, errors ignored) and takes `fd`.
  void reset(int fd = -1) noexcept;
  // Closes now and reports the result: 0 or the errno of close(2). No-op (0) when empty.
  int close() noexcept;

 private:
  int fd_ = -1;
};

// An open regular file and its size at open time.
struct OpenFile {
  UniqueFd fd;
  uint64_t size = 0;
};

// "a regular file", "a directory", "a FIFO", "a socket", "a character device", "a block device"
// for a stat st_mode.
std::string_view file_type_name(unsigned mode);

// Opens `path` read-only and checks that it is a regular file: the one way every input of the
// engine is opened. The open is non-blocking (a FIFO never waits for a writer) and the type is
// checked on the open descriptor (fstat). `what` describes the file in messages ("safetensors
// file", "token file"): "cannot open <what> <path>: <errno text>",
// "<what> <path> is a FIFO, not a regular file" (or a directory, socket, device).
OpenFile open_regular_file(const std::filesystem::path& path, std::string_view what = "file");

// Reads exactly `bytes` bytes at `offset` into `dst` with pread, retrying on EINTR and short
// reads (in chunks of at most 1 GiB). A read error or end of file before `bytes` bytes throws
// IoError naming `file`, the offset and the system error (or "file truncated while open?").
void pread_exact(int fd, void* dst, uint64_t bytes, uint64_t offset, const std::filesystem::path& file);

// The whole contents of the regular file `path` (read until end of file). Errors throw IoError
// naming `what` and the path, as open_regular_file, or "error reading <what> <path>: <errno text>".
std::string read_whole_file(const std::filesystem::path& path, std::string_view what = "file");

// fsync of a directory, to make renames and new entries in it durable. Best effort: returns
// false if the directory cannot be opened or the file system refuses fsync on directories.
bool fsync_directory(const std::filesystem::path& dir) noexcept;

}  // namespace tsp
