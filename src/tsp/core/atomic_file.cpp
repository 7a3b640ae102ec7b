// Temporary-file + fsync + rename writer (POSIX), used for every file the model layer writes.
// A crash or error at any point leaves the previous version of the target intact.
#include "tsp/core/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "tsp/core/check.h"
#include "tsp/core/file_io.h"

namespace tsp {

AtomicFileWriter::AtomicFileWriter(std::filesystem::path target) : target_(std::move(target)) {
  TSP_CHECK(!target_.filename().empty(), "atomic write needs a file name, got \"", target_.string(), "\"");
  const std::filesystem::path dir = target_.has_parent_path() ? target_.parent_path() : ".";
  std::string temp_name(".");  // built by appends: GCC 12 warns (-Wrestrict) on "." + string
  temp_name += target_.filename().string();
  temp_name += ".tmp.XXXXXX";
  const std::string pattern = (dir / temp_name).string();
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  fd_.reset(::mkstemp(buf.data()));
  if (!fd_) {
    const int err = errno;
    TSP_THROW(IoError, "cannot create a temporary file in ", dir.string(), " to write ",
              target_.string(), ": ", errno_text(err));
  }
  temp_ = buf.data();
  ::fchmod(fd_.get(), 0644);  // mkstemp creates 0600; checkpoints are meant to be shared
}

AtomicFileWriter::~AtomicFileWriter() {
  if (!committed_) discard();
}

void AtomicFileWriter::discard() noexcept {
  fd_.reset();
  if (!temp_.empty()) ::unlink(temp_.c_str());
  temp_.clear();
}

void AtomicFileWriter::write(const void* data, size_t bytes) {
  TSP_CHECK(fd_.valid() && !committed_, "write to ", target_.string(), " after commit or failure");
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::write(fd_.get(), p, bytes);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      discard();
      TSP_THROW(IoError, "writing ", target_.string(), " failed after ", written_, " bytes: ",
                errno_text(err), " (the previous file, if any, is unchanged)");
    }
    p += n;
    bytes -= static_cast<size_t>(n);
    written_ += static_cast<size_t>(n);
  }
}

void AtomicFileWriter::commit() {
  TSP_CHECK(fd_.valid() && !committed_, "commit of ", target_.string(), " twice or after a failure");
  if (::fsync(fd_.get()) != 0) {
    const int err = errno;
    discard();
    TSP_THROW(IoError, "fsync of ", target_.string(), " failed: ", errno_text(err));
  }
  if (const int err = fd_.close(); err != 0) {
    discard();
    TSP_THROW(IoError, "closing ", target_.string(), " failed: ", errno_text(err));
  }
  if (::rename(temp_.c_str(), target_.c_str()) != 0) {
    const int err = errno;
    discard();
    TSP_THROW(IoError, "renaming ", temp_.string(), " to ", target_.string(), " failed: ", errno_text(err));
  }
  committed_ = true;
  temp_.clear();
  // Make the rename itself durable. Some file systems refuse fsync on directories: ignored.
  const std::filesystem::path dir = target_.has_parent_path() ? target_.parent_path() : ".";
  fsync_directory(dir);
}

void write_file_atomically(const std::filesystem::path& path, std::string_view bytes) {
  AtomicFileWriter w(path);
  w.write(bytes);
  w.commit();
}

}  // namespace tsp
