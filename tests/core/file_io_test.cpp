// Tests of the file-reading helpers: UniqueFd ownership, pread_exact (exact reads, EOF and bad
// descriptors as IoErrors naming the file), read_whole_file and open_regular_file errors.
#include "tsp/core/file_io.h"

#include <fcntl.h>
#include <gtest/gtest.h>
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
  EXPECT_NE(m.find("not a regular file"), std::string::npos) << m;
}

TEST(FileIo, FsyncDirectory) {
  ScratchDir dir;
  EXPECT_TRUE(fsync_directory(dir.path()));
  EXPECT_FALSE(fsync_directory(dir / "absent"));
}

}  // namespace
}  // namespace tsp
