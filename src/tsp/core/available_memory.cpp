// Reading MemAvailable, the cgroup limit and RLIMIT_AS for the startup memory check.
#include "tsp/core/available_memory.h"

#include <sys/resource.h>

#include <charconv>
#include <optional>
#include <sstream>
#include <string_view>

#include "tsp/core/file_io.h"

namespace tsp {

namespace {

std::optional<std::string> read_text(const std::filesystem::path& p) {
  try {
    return read_whole_file(p, "memory information file");
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::optional<int64_t> parse_int(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  int64_t v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < 0) return std::nullopt;
  return v;
}

// "<key>:   123 kB" in /proc/meminfo or /proc/self/status, in bytes.
std::optional<int64_t> kib_field(const std::string& text, std::string_view key) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with(key) || line.size() <= key.size() || line[key.size()] != ':') continue;
    std::string_view v(line);
    v.remove_prefix(key.size() + 1);
    if (v.ends_with(" kB")) v.remove_suffix(3);
    const std::optional<int64_t> kib = parse_int(v);
    if (!kib || *kib > INT64_MAX / 1024) return std::nullopt;
    return *kib * 1024;
  }
  return std::nullopt;
}

// limit - usage of one cgroup directory; nullopt when unlimited or unreadable.
std::optional<int64_t> cgroup_headroom(const std::filesystem::path& dir, const char* limit_file,
                                       const char* usage_file) {
  const std::optional<std::string> limit_text = read_text(dir / limit_file);
  const std::optional<std::string> usage_text = read_text(dir / usage_file);
  if (!limit_text || !usage_text) return std::nullopt;
  const std::optional<int64_t> limit = parse_int(*limit_text), usage = parse_int(*usage_text);
  if (!limit || !usage) return std::nullopt;  // "max": no limit
  // cgroup v1 reports "no limit" as a huge page-rounded number near 2^63.
  if (*limit >= (INT64_MAX / 2)) return std::nullopt;
  return *limit > *usage ? *limit - *usage : 0;
}

}  // namespace

AvailableMemory available_memory(const MemorySources& src) {
  AvailableMemory best;
  auto consider = [&](std::optional<int64_t> bytes, std::string source) {
    if (bytes && *bytes < best.bytes) best = {.bytes = *bytes, .source = std::move(source)};
  };
  if (const auto meminfo = read_text(src.meminfo)) consider(kib_field(*meminfo, "MemAvailable"), "MemAvailable");
  if (const auto cgroups = read_text(src.self_cgroup)) {
    std::istringstream in(*cgroups);
    std::string line;
    while (std::getline(in, line)) {
      // "hierarchy-id:controllers:path"; v2 is "0::/path", v1's memory controller "N:memory:/path".
      const size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
      if (b == std::string::npos) continue;
      const std::string controllers = line.substr(a + 1, b - a - 1);
      const std::string path = line.substr(b + 1);
      const std::filesystem::path rel = std::filesystem::path(path).relative_path();
      if (line.starts_with("0::")) {
        consider(cgroup_headroom(src.cgroup_root / rel, "memory.max", "memory.current"),
                 "cgroup memory.max - memory.current");
      } else if (controllers == "memory" || controllers.find("memory,") != std::string::npos ||
                 controllers.ends_with(",memory")) {
        consider(cgroup_headroom(src.cgroup_root / "memory" / rel, "memory.limit_in_bytes", "memory.usage_in_bytes"),
                 "cgroup memory.limit_in_bytes - memory.usage_in_bytes");
      }
    }
  }
  if (src.use_rlimit) {
    rlimit lim{};
    if (::getrlimit(RLIMIT_AS, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < rlim_t{INT64_MAX}) {
      const auto status = read_text(src.self_status);
      const int64_t used = status ? kib_field(*status, "VmSize").value_or(0) : 0;
      const auto cap = static_cast<int64_t>(lim.rlim_cur);
      consider(cap > used ? cap - used : 0, "RLIMIT_AS - VmSize");
    }
  }
  return best;
}

}  // namespace tsp
