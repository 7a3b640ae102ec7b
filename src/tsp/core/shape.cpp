// Shape arithmetic and printing.
#include "tsp/core/shape.h"

#include <sstream>

#include "tsp/core/check.h"

namespace tsp {

Shape::Shape(std::initializer_list<int64_t> dims) {
  for (int64_t d : dims) push_back(d);
}

void Shape::push_back(int64_t d) {
  TSP_CHECK_SHAPE(rank_ < kMaxRank, "shape ", str(), " cannot grow beyond rank ", kMaxRank);
  TSP_CHECK_SHAPE(d >= 0, "negative extent ", d, " appended to shape ", str());
  dims_[rank_++] = d;
}

int Shape::normalize(int i) const {
  const int j = i < 0 ? i + rank_ : i;
  TSP_CHECK_SHAPE(j >= 0 && j < rank_, "dimension ", i, " out of range for shape ", str());
  return j;
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank_; ++i) {
    TSP_CHECK_SHAPE(!__builtin_mul_overflow(n, dims_[i], &n), "shape ", str(),
                    " has more than 2^63 elements");
  }
  return n;
}

Shape Shape::contiguous_strides() const {
  Shape s = *this;
  int64_t stride = 1;
  for (int i = rank_ - 1; i >= 0; --i) {
    s.dims_[i] = stride;
    stride *= dims_[i];
  }
  return s;
}

std::string Shape::str() const {
  std::ostringstream os;
  os << '[';
  for (int i = 0; i < rank_; ++i) os << (i ? ", " : "") << dims_[i];
  os << ']';
  return os.str();
}

bool operator==(const Shape& a, const Shape& b) {
  if (a.rank_ != b.rank_) return false;
  for (int i = 0; i < a.rank_; ++i)
    if (a.dims_[i] != b.dims_[i]) return false;
  return true;
}

}  // namespace tsp
