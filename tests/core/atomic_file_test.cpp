// Tests of the atomic writer on raw bytes: a write that fails midway (file-size limit) or is
// abandoned leaves the previous file byte-for-byte intact and no temporary or partial file behind.
#include "tsp/core/atomic_file.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

// tests/core's CMake does not add tests/ to the include path: include the helpers relatively.
#include "io_test_util.h"
#include "scratch_dir.h"
#include "tsp/core/error.h"

namespace tsp {
namespace {

using testing::FileSizeLimit;
using testing::read_bytes;
using testing::ScratchDir;

TEST(AtomicFile, WritesAndReplaces) {
  ScratchDir dir;
  const auto path = dir / "f.bin";
  std::string bytes;
  for (int i = 0; i < 1000; ++i) bytes.push_back(static_cast<char>(i * 7));
  {
    AtomicFileWriter w(path);
    w.write(bytes.data(), 10);
    w.write(std::string_view(bytes).substr(10));
    EXPECT_EQ(w.bytes_written(), bytes.size());
    EXPECT_FALSE(std::filesystem::exists(path));  // nothing at the target before commit
    w.commit();
  }
  EXPECT_EQ(read_bytes(path), bytes);
  write_file_atomically(path, "second");
  EXPECT_EQ(read_bytes(path), "second");
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"f.bin"});
  EXPECT_EQ(std::filesystem::status(path).permissions() & std::filesystem::perms::others_read,
            std::filesystem::perms::others_read);  // 0644, not mkstemp's 0600
}

TEST(AtomicFile, FailedWriteKeepsTheOldFile) {
  ScratchDir dir;
  const auto path = dir / "data.bin";
  write_file_atomically(path, std::string(64, 'o'));
  const std::string old_bytes = read_bytes(path);

  const std::string big(256 * 1024, 'n');
  std::string message;
  {
    FileSizeLimit limit(32 * 1024);
    if (!limit.ok()) GTEST_SKIP() << "cannot lower RLIMIT_FSIZE here";
    try {
      write_file_atomically(path, big);
    } catch (const IoError& e) {
      message = e.what();
    }
  }
  EXPECT_NE(message.find("data.bin"), std::string::npos) << message;
  EXPECT_NE(message.find("failed after"), std::string::npos) << message;
  EXPECT_EQ(read_bytes(path), old_bytes);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"data.bin"});
}

TEST(AtomicFile, AbandonedWriterLeavesNothing) {
  ScratchDir dir;
  const auto path = dir / "f.txt";
  write_file_atomically(path, "old");
  {
    AtomicFileWriter w(path);
    w.write("new contents that are never committed");
    EXPECT_TRUE(std::filesystem::exists(w.temporary()));
    EXPECT_EQ(w.temporary().parent_path(), dir.path());
  }
  EXPECT_EQ(read_bytes(path), "old");
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"f.txt"});
  write_file_atomically(path, "new");
  EXPECT_EQ(read_bytes(path), "new");
}

TEST(AtomicFile, MissingDirectoryIsAnIoErrorNamingTheTarget) {
  ScratchDir dir;
  const std::string m = testing::io_error_of([&] { write_file_atomically(dir / "no_such_dir" / "x", "x"); });
  EXPECT_NE(m.find("no_such_dir"), std::string::npos) << m;
}

}  // namespace
}  // namespace tsp
