// Always-on checks that throw typed tsp::Error exceptions naming the values involved.
// TSP_CHECK* guard API and input boundaries; TSP_ASSERT marks internal invariants (InternalError).
#pragma once

#include <sstream>
#include <string>

#include "tsp/core/error.h"

namespace tsp::detail {

template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

template <class E, class... Args>
[[noreturn]] void fail(const char* file, int line, const char* cond, const Args&... args) {
  std::string msg = concat(args...);
  std::string where = concat(" [", cond, " failed at ", file, ":", line, "]");
  throw E(msg.empty() ? concat("check", where) : msg + where);
}

}  // namespace tsp::detail

// TSP_CHECK_T(ShapeError, a.dim(1) == b.dim(0), "gemm: ", a.shape(), " x ", b.shape())
#define TSP_CHECK_T(ErrorType, cond, ...)                                              \
  do {                                                                                 \
    if (!(cond)) [[unlikely]]                                                          \
      ::tsp::detail::fail<::tsp::ErrorType>(__FILE__, __LINE__, #cond, ##__VA_ARGS__); \
  } while (0)

#define TSP_CHECK(cond, ...) TSP_CHECK_T(InvalidArgument, cond, ##__VA_ARGS__)
#define TSP_CHECK_SHAPE(cond, ...) TSP_CHECK_T(ShapeError, cond, ##__VA_ARGS__)
#define TSP_CHECK_DTYPE(cond, ...) TSP_CHECK_T(DTypeError, cond, ##__VA_ARGS__)
#define TSP_ASSERT(cond, ...) TSP_CHECK_T(InternalError, cond, ##__VA_ARGS__)

#define TSP_THROW(ErrorType, ...) \
  throw ::tsp::ErrorType(::tsp::detail::concat(__VA_ARGS__))

// Binary comparisons print both operands: "S % (2D) == 0: 1000 vs 0".
#define TSP_CHECK_OP_(ErrorType, op, a, b, ...)                                             \
  do {                                                                                      \
    const auto& tsp_a_ = (a);                                                               \
    const auto& tsp_b_ = (b);                                                               \
    if (!(tsp_a_ op tsp_b_)) [[unlikely]]                                                   \
      ::tsp::detail::fail<::tsp::ErrorType>(__FILE__, __LINE__, #a " " #op " " #b,          \
                                            ::tsp::detail::concat(__VA_ARGS__), " (" #a " = ", \
                                            tsp_a_, ", " #b " = ", tsp_b_, ")");            \
  } while (0)

#define TSP_CHECK_EQ(a, b, ...) TSP_CHECK_OP_(InvalidArgument, ==, a, b, ##__VA_ARGS__)
#define TSP_CHECK_NE(a, b, ...) TSP_CHECK_OP_(InvalidArgument, !=, a, b, ##__VA_ARGS__)
#define TSP_CHECK_LT(a, b, ...) TSP_CHECK_OP_(InvalidArgument, <, a, b, ##__VA_ARGS__)
#define TSP_CHECK_LE(a, b, ...) TSP_CHECK_OP_(InvalidArgument, <=, a, b, ##__VA_ARGS__)
#define TSP_CHECK_GT(a, b, ...) TSP_CHECK_OP_(InvalidArgument, >, a, b, ##__VA_ARGS__)
#define TSP_CHECK_GE(a, b, ...) TSP_CHECK_OP_(InvalidArgument, >=, a, b, ##__VA_ARGS__)
