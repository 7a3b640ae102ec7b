// Integer flags with an explicit valid range, checked on the text the user typed: CLI11 2.1
// clamps out-of-range text to the type's limit, reads "1e20" through a double and wraps "-1"
// into an unsigned, so the conversion alone cannot be trusted.
#pragma once

#include <cstdint>

#include <CLI/CLI.hpp>

namespace tsp::cli {

// A validator for one integer flag: the text must be a plain decimal integer (optional '-',
// digits only: no exponent, no sign on 0-ranges, no hex) within [lo, hi], else the parse fails
// with "--flag: <text> is not an integer in [lo, hi]". The help shows "in [lo, hi]".
CLI::Validator int_range(int64_t lo, int64_t hi);

}  // namespace tsp::cli
