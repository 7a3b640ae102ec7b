// How much memory this process may still use: the least of MemAvailable (/proc/meminfo), the
// cgroup's limit minus its usage (v2 memory.max - memory.current, or v1's limit - usage) and
// RLIMIT_AS minus the current virtual size. Paths are injectable so tests use fake files.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace tsp {

// Where the numbers come from (the defaults are the live system's).
struct MemorySources {
  std::filesystem::path meminfo = "/proc/meminfo";
  std::filesystem::path self_cgroup = "/proc/self/cgroup";  // "0::/path" (v2), "N:memory:/path" (v1)
  std::filesystem::path cgroup_root = "/sys/fs/cgroup";     // v2 mount; v1 under <root>/memory
  std::filesystem::path self_status = "/proc/self/status";  // VmSize, for RLIMIT_AS
  bool use_rlimit = true;                                   // tests turn the live rlimit off
};

struct AvailableMemory {
  int64_t bytes = INT64_MAX;  // INT64_MAX: no source could be read (no check possible)
  std::string source;         // the binding limit: "MemAvailable", "cgroup memory.max - memory.current", ...
  bool known() const { return bytes != INT64_MAX; }
};

// The least of the readable sources; unreadable or absent ones are skipped ("max" in memory.max
// means no cgroup limit). Never throws.
AvailableMemory available_memory(const MemorySources& sources = {});

}  // namespace tsp
