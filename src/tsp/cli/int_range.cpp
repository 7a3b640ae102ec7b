// The strict integer-range validator of every integer flag.
#include "tsp/cli/int_range.h"

#include <charconv>
#include <string>

namespace tsp::cli {

CLI::Validator int_range(int64_t lo, int64_t hi) {
  std::string range = "[";
  range += std::to_string(lo);
  range += ", ";
  range += std::to_string(hi);
  range += "]";
  return CLI::Validator(
      [lo, hi, range](std::string& text) -> std::string {
        int64_t v = 0;
        const char* end = text.data() + text.size();
        // from_chars: decimal only, fails (result_out_of_range) instead of clamping.
        const auto [p, ec] = std::from_chars(text.data(), end, v);
        if (ec == std::errc() && p == end && v >= lo && v <= hi) return {};
        std::string why = text;  // appends: GCC 12 warns (-Wrestrict) on string + literal chains
        why += " is not an integer in ";
        why += range;
        return why;
      },
      std::string("in ").append(range), "INT_RANGE");
}

}  // namespace tsp::cli
