// Tests of the file-reading helpers: UniqueFd ownership, pread_exact (exact reads, EOF and bad
// descriptors as IoErrors naming the file), read_whole_file and open_regular_file errors.
#include "tsp/core/file_io.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>

// tests/core's CMake does not add tests/ to the include path: include the helpers relatively.
#include "io_test_util.h"
#include "scratch_dir.h"

namespace tsp {
namespace {

using testing::io_error_of;
using testing::ScratchDir;
using testing::write_bytes;

bool fd_is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

TEST(FileIo, UniqueFdClosesOnceAndMoves) {
  ScratchDir dir;
  write_bytes(dir / "a", "abc");
  int raw = -1;
  {
    UniqueFd fd(::open((dir / "a").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    raw = fd.get();
    UniqueFd moved(std::move(fd));
    EXPECT_FALSE(fd.valid());  // NOLINT(bugprone-use-after-move): the moved-from state is specified
    EXPECT_EQ(moved.get(), raw);
    UniqueFd assigned;
    assigned = std::move(moved);
    EXPECT_EQ(assigned.get(), raw);
    EXPECT_TRUE(fd_is_open(raw));
  }
  EXPECT_FALSE(fd_is_open(raw));

  UniqueFd fd(::open((dir / "a").c_str(), O_RDONLY | O_CLOEXEC));
  raw = fd.get();
  EXPECT_EQ(fd.close(), 0);
  EXPECT_FALSE(fd.valid());
  EXPECT_FALSE(fd_is_open(raw));
  EXPECT_EQ(fd.close(), 0);  // closing an empty UniqueFd is a no-op

  UniqueFd kept(::open((dir / "a").c_str(), O_RDONLY | O_CLOEXEC));
  const int released = kept.release();
  EXPECT_FALSE(kept.valid());
  EXPECT_TRUE(fd_is_open(released));
  ::close(released);
}

TEST(FileIo, PreadExactReadsTheRangeAndNamesTheFileAtEof) {
  ScratchDir dir;
  std::string bytes;
  for (int i = 0; i < 5000; ++i) bytes.push_back(static_cast<char>(i % 251));
  write_bytes(dir / "data.bin", bytes);
  OpenFile f = open_regular_file(dir / "data.bin", "test file");
  EXPECT_EQ(f.size, bytes.size());
  std::string got(1000, '\0');
  pread_exact(f.fd.get(), got.data(), got.size(), 1234, dir / "data.bin");
  EXPECT_EQ(got, bytes.substr(1234, 1000));
  pread_exact(f.fd.get(), got.data(), 0, 999999, dir / "data.bin");  // zero bytes: no read at all

  std::string m = io_error_of([&] { pread_exact(f.fd.get(), got.data(), 1000, 4500, dir / "data.bin"); });
  EXPECT_NE(m.find("data.bin"), std::string::npos) << m;
  EXPECT_NE(m.find("ended at offset 5000"), std::string::npos) << m;
  EXPECT_NE(m.find("500 more bytes"), std::string::npos) << m;

  m = io_error_of([&] { pread_exact(-1, got.data(), 10, 0, dir / "closed.bin"); });
  EXPECT_NE(m.find("closed.bin"), std::string::npos) << m;
  EXPECT_NE(m.find(errno_text(EBADF)), std::string::npos) << m;
}

TEST(FileIo, ReadWholeFile) {
  ScratchDir dir;
  write_bytes(dir / "empty", "");
  EXPECT_EQ(read_whole_file(dir / "empty"), "");
  std::string big(100000, 'x');
  big[0] = '\0';  // binary-safe
  big.back() = 'y';
  write_bytes(dir / "big", big);
  EXPECT_EQ(read_whole_file(dir / "big"), big);
  write_bytes(dir / "exact", std::string(4095, 'z'));  // the initial buffer size minus one
  EXPECT_EQ(read_whole_file(dir / "exact"), std::string(4095, 'z'));

  std::string m = io_error_of([&] { read_whole_file(dir / "absent.json", "model config"); });
  EXPECT_NE(m.find("cannot open model config"), std::string::npos) << m;
  EXPECT_NE(m.find("absent.json"), std::string::npos) << m;
  EXPECT_NE(m.find(errno_text(ENOENT)), std::string::npos) << m;

  std::filesystem::create_directory(dir / "subdir");
  m = io_error_of([&] { read_whole_file(dir / "subdir", "corpus file"); });
  EXPECT_NE(m.find("subdir"), std::string::npos) << m;
  EXPECT_NE(m.find("is a directory, not a regular file"), std::string::npos) << m;
}

// A FIFO with no writer: a blocking open would wait forever, so the test runs the read in a
// child process with an alarm; the parent only collects its verdict.
TEST(FileIo, FifoIsRefusedWithoutWaitingForAWriter) {
  ScratchDir dir;
  const auto fifo = dir / "config.json";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << errno_text(errno);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::alarm(5);  // a regression (blocking open) dies by SIGALRM instead of hanging the suite
    try {
      read_whole_file(fifo, "model config");
    } catch (const IoError& e) {
      const std::string m = e.what();
      ::_exit(m.find("model config") != std::string::npos && m.find("config.json") != std::string::npos &&
                      m.find("is a FIFO, not a regular file") != std::string::npos
                  ? 0
                  : 3);
    }
    ::_exit(4);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "the child was killed by signal " << WTERMSIG(status)
                                 << " (SIGALRM: the open blocked on the FIFO)";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "3: wrong message, 4: no error";
}

TEST(FileIo, OpenRegularFileNamesTheFileType) {
  EXPECT_EQ(file_type_name(S_IFIFO | 0600), "a FIFO");
  EXPECT_EQ(file_type_name(S_IFSOCK | 0600), "a socket");
  EXPECT_EQ(file_type_name(S_IFCHR | 0600), "a character device");
  std::string m = io_error_of([&] { open_regular_file("/dev/null", "token file"); });
  EXPECT_NE(m.find("token file /dev/null is a character device, not a regular file"), std::string::npos) << m;
  // The descriptor of a regular file is back in blocking mode.
  ScratchDir dir;
  write_bytes(dir / "f", "abc");
  const OpenFile f = open_regular_file(dir / "f");
  EXPECT_EQ(::fcntl(f.fd.get(), F_GETFL) & O_NONBLOCK, 0);
  EXPECT_EQ(f.size, 3u);
}

TEST(FileIo, FsyncDirectory) {
  ScratchDir dir;
  EXPECT_TRUE(fsync_directory(dir.path()));
  EXPECT_FALSE(fsync_directory(dir / "absent"));
}

}  // namespace
}  // namespace tsp
