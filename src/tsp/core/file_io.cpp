// POSIX read helpers: UniqueFd, open_regular_file, pread_exact, read_whole_file.
#include "tsp/core/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "tsp/core/check.h"

namespace tsp {

std::string errno_text(int err) { return std::string(std::strerror(err)); }

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) reset(other.release());
  return *this;
}

int UniqueFd::release() noexcept { return std::exchange(fd_, -1); }

void UniqueFd::reset(int fd) noexcept {
  if (fd_ >= 0 && fd_ != fd) ::close(fd_);
  fd_ = fd;
}

int UniqueFd::close() noexcept {
  if (fd_ < 0) return 0;
  // Linux closes the descriptor even when close() fails (EINTR included): never retry.
  const int rc = ::close(std::exchange(fd_, -1));
  return rc == 0 ? 0 : errno;
}

std::string_view file_type_name(unsigned mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a plain file";
}

OpenFile open_regular_file(const std::filesystem::path& path, std::string_view what) {
  OpenFile f;
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever (and a
  // device could block too); the type is checked on the descriptor, so no race with a rename.
  f.fd.reset(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (!f.fd) {
    const int err = errno;
    struct stat st {};
    // A socket cannot be opened at all (ENXIO): say what it is rather than "no such device".
    if (err == ENXIO && ::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
      TSP_THROW(IoError, what, " ", path.string(), " is ", file_type_name(st.st_mode), ", not a regular file");
    TSP_THROW(IoError, "cannot open ", what, " ", path.string(), ": ", errno_text(err));
  }
  struct stat st {};
  if (::fstat(f.fd.get(), &st) != 0) {
    const int err = errno;
    TSP_THROW(IoError, "cannot stat ", what, " ", path.string(), ": ", errno_text(err));
  }
  if (!S_ISREG(st.st_mode))
    TSP_THROW(IoError, what, " ", path.string(), " is ", file_type_name(st.st_mode), ", not a regular file");
  // Regular files never block; clear the flag anyway so later reads have plain semantics.
  const int flags = ::fcntl(f.fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(f.fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0) {
    const int err = errno;
    TSP_THROW(IoError, "cannot clear O_NONBLOCK on ", what, " ", path.string(), ": ", errno_text(err));
  }
  f.size = static_cast<uint64_t>(st.st_size);
  return f;
}

void pread_exact(int fd, void* dst, uint64_t bytes, uint64_t offset, const std::filesystem::path& file) {
  char* p = static_cast<char*>(dst);
  while (bytes > 0) {
    TSP_CHECK(offset <= static_cast<uint64_t>(INT64_MAX), "read offset ", offset, " in ", file.string(),
              " beyond the largest file offset");
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(bytes, uint64_t{1} << 30));
    const ssize_t n = ::pread(fd, p, chunk, static_cast<off_t>(offset));
    if (n < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      TSP_THROW(IoError, "reading ", file.string(), " at offset ", offset, " failed: ", errno_text(err));
    }
    if (n == 0)
      TSP_THROW(IoError, file.string(), " ended at offset ", offset, " while ", bytes,
                " more bytes were expected (file truncated while open?)");
    p += n;
    offset += static_cast<uint64_t>(n);
    bytes -= static_cast<uint64_t>(n);
  }
}

std::string read_whole_file(const std::filesystem::path& path, std::string_view what) {
  OpenFile f = open_regular_file(path, what);
  std::string text;
  // The size at open time is a hint only: the loop reads until end of file.
  text.resize(static_cast<size_t>(std::max<uint64_t>(f.size + 1, 4096)));  // +1: see EOF at once
  size_t used = 0;
  for (;;) {
    if (used == text.size()) text.resize(text.size() * 2);
    const ssize_t n = ::read(f.fd.get(), text.data() + used, text.size() - used);
    if (n < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      TSP_THROW(IoError, "error reading ", what, " ", path.string(), ": ", errno_text(err));
    }
    if (n == 0) break;
    used += static_cast<size_t>(n);
  }
  text.resize(used);
  return text;
}

bool fsync_directory(const std::filesystem::path& dir) noexcept {
  const char* name = dir.empty() ? "." : dir.c_str();
  const UniqueFd dfd(::open(name, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  return dfd && ::fsync(dfd.get()) == 0;
}

}  // namespace tsp
