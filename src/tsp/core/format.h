// printf-style formatting into a std::string of any length (GCC 12's libstdc++ has no
// std::format): one helper instead of fixed buffers that silently truncate long output.
#pragma once

#include <cstdio>
#include <string>

namespace tsp {

// The snprintf of `f` with `args`, however long (measured first, then written).
template <typename... Args>
std::string format_printf(const char* f, Args... args) {
  char small[256];
  const int n = std::snprintf(small, sizeof small, f, args...);
  if (n < 0) return {};
  if (static_cast<size_t>(n) < sizeof small) return std::string(small, static_cast<size_t>(n));
  std::string out(static_cast<size_t>(n), '\0');
  std::snprintf(out.data(), out.size() + 1, f, args...);
  return out;
}

}  // namespace tsp
