// The available-memory reader against fake /proc and cgroup files: MemAvailable alone, a cgroup v2
// limit below it, "max" (no limit), cgroup v1, and unreadable sources skipped.
#include "tsp/core/available_memory.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "scratch_dir.h"

namespace tsp {
namespace {

using testing::ScratchDir;
using testing::write_bytes;

constexpr int64_t kKiB = 1024, kGiB = int64_t{1} << 30;

MemorySources fake(const ScratchDir& dir) {
  return {.meminfo = dir / "meminfo", .self_cgroup = dir / "cgroup", .cgroup_root = dir / "fs",
          .self_status = dir / "status", .use_rlimit = false};
}

void write_meminfo(const ScratchDir& dir, int64_t available_kib) {
  write_bytes(dir / "meminfo", "MemTotal:       65536000 kB\nMemFree:         1000000 kB\nMemAvailable:   " +
                                   std::to_string(available_kib) + " kB\nBuffers:          12345 kB\n");
}

TEST(AvailableMemory, MemAvailableAlone) {
  ScratchDir dir;
  write_meminfo(dir, 8 * kGiB / kKiB);
  const AvailableMemory a = available_memory(fake(dir));
  EXPECT_EQ(a.bytes, 8 * kGiB);
  EXPECT_EQ(a.source, "MemAvailable");
}

TEST(AvailableMemory, CgroupV2LimitBelowMemAvailableBinds) {
  ScratchDir dir;
  write_meminfo(dir, 8 * kGiB / kKiB);
  write_bytes(dir / "cgroup", "0::/job/step_0\n");
  std::filesystem::create_directories(dir / "fs/job/step_0");
  write_bytes(dir / "fs/job/step_0/memory.max", std::to_string(3 * kGiB) + "\n");
  write_bytes(dir / "fs/job/step_0/memory.current", std::to_string(kGiB) + "\n");
  AvailableMemory a = available_memory(fake(dir));
  EXPECT_EQ(a.bytes, 2 * kGiB);
  EXPECT_EQ(a.source, "cgroup memory.max - memory.current");
  // "max": no cgroup limit, MemAvailable binds again.
  write_bytes(dir / "fs/job/step_0/memory.max", "max\n");
  a = available_memory(fake(dir));
  EXPECT_EQ(a.bytes, 8 * kGiB);
  EXPECT_EQ(a.source, "MemAvailable");
  // Usage above the limit: nothing is available.
  write_bytes(dir / "fs/job/step_0/memory.max", std::to_string(kGiB) + "\n");
  write_bytes(dir / "fs/job/step_0/memory.current", std::to_string(2 * kGiB) + "\n");
  EXPECT_EQ(available_memory(fake(dir)).bytes, 0);
}

TEST(AvailableMemory, CgroupV1MemoryController) {
  ScratchDir dir;
  write_meminfo(dir, 8 * kGiB / kKiB);
  write_bytes(dir / "cgroup", "9:name=systemd:/\n4:memory:/slurm/job1\n1:cpu,cpuacct:/\n");
  std::filesystem::create_directories(dir / "fs/memory/slurm/job1");
  write_bytes(dir / "fs/memory/slurm/job1/memory.limit_in_bytes", std::to_string(5 * kGiB) + "\n");
  write_bytes(dir / "fs/memory/slurm/job1/memory.usage_in_bytes", std::to_string(kGiB) + "\n");
  AvailableMemory a = available_memory(fake(dir));
  EXPECT_EQ(a.bytes, 4 * kGiB);
  EXPECT_EQ(a.source, "cgroup memory.limit_in_bytes - memory.usage_in_bytes");
  // v1's "unlimited" is a page-rounded 2^63 - 4096.
  write_bytes(dir / "fs/memory/slurm/job1/memory.limit_in_bytes", "9223372036854771712\n");
  EXPECT_EQ(available_memory(fake(dir)).source, "MemAvailable");
}

TEST(AvailableMemory, UnreadableSourcesAreSkipped) {
  ScratchDir dir;
  const AvailableMemory none = available_memory(fake(dir));  // no file exists
  EXPECT_FALSE(none.known());
  write_bytes(dir / "meminfo", "MemTotal: 100 kB\nMemAvailable: lots kB\n");
  EXPECT_FALSE(available_memory(fake(dir)).known());
  // The live system has at least MemAvailable.
  EXPECT_TRUE(available_memory().known());
  EXPECT_GT(available_memory().bytes, 0);
}

}  // namespace
}  // namespace tsp
