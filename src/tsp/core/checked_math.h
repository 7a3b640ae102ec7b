// Checked 64-bit size arithmetic: products and sums of sizes (elements, bytes, tokens) that would
// overflow int64 throw SizeOverflow naming what was computed, instead of wrapping to a negative.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string_view>

#include "tsp/core/check.h"

namespace tsp {

// A size whose arithmetic does not fit in 64 bits (more than 8 EiB, or 2^63 elements).
class SizeOverflow : public InvalidArgument {
 public:
  using InvalidArgument::InvalidArgument;
};

// a * b, or SizeOverflow "<what> overflows 64-bit (a x b)".
inline int64_t mul_checked(int64_t a, int64_t b, std::string_view what) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) TSP_THROW(SizeOverflow, what, " overflows 64-bit (", a, " x ", b, ")");
  return r;
}

// a + b, or SizeOverflow "<what> overflows 64-bit (a + b)".
inline int64_t add_checked(int64_t a, int64_t b, std::string_view what) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) TSP_THROW(SizeOverflow, what, " overflows 64-bit (", a, " + ", b, ")");
  return r;
}

// The product of all factors, checked at every step.
inline int64_t product_checked(std::string_view what, std::initializer_list<int64_t> factors) {
  int64_t r = 1;
  for (const int64_t f : factors) r = mul_checked(r, f, what);
  return r;
}

// Whether a * b fits, without throwing (for searches of the largest input that fits).
inline bool mul_fits(int64_t a, int64_t b) {
  int64_t r = 0;
  return !__builtin_mul_overflow(a, b, &r);
}

}  // namespace tsp
