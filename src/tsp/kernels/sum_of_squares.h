// The sum of squares of a gradient in double, in one fixed order (the gradient-norm of clipping,
// single-rank and sharded alike): the same bits for any thread count.
#pragma once

#include "tsp/core/tensor.h"

namespace tsp::kernels {

// sum + sum_i t_i^2 for a contiguous f32 tensor: fixed blocks of 2^14 elements, each summed in
// double in index order, then the blocks in order (an OpenMP reduction would combine partial sums
// in any order).
double add_sum_of_squares(const Tensor& t, double sum);

}  // namespace tsp::kernels
