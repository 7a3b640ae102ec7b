// Naive double-precision references of the row-wise kernels (RMSNorm, RoPE, SwiGLU, embedding,
// AdamW) on plain row-major std::vector<double>: obviously-correct loops for tests, never hot paths.
#pragma once

#include <cstdint>
#include <vector>

#include "tsp/core/tensor.h"

namespace tsp::kernels::reference {

using Vec = std::vector<double>;

// Every element of a f32/bf16/i32/i64 tensor (any strides) in row-major order, as double.
Vec to_doubles(const Tensor& t);
std::vector<int64_t> to_ints(const Tensor& t);
// A contiguous tensor of `shape` and `dtype` holding v (rounded once from double).
Tensor from_doubles(const Vec& v, const Shape& shape, DType dtype = DType::f32);

// y = x * rstd * g with rstd = 1/sqrt(mean(x^2) + eps); x [n, h], g [h].
void rmsnorm_forward(const Vec& x, const Vec& g, int64_t n, int64_t h, double eps, Vec& y, Vec& rstd);
// Analytic gradient of sum(dy * y): dx [n, h] and dg [h] (both overwritten).
void rmsnorm_backward(const Vec& dy, const Vec& x, const Vec& g, int64_t n, int64_t h, double eps,
                      Vec& dx, Vec& dg);

// Returns x [B, S, H, d] rotated by sign * pos[s] * theta^(-2i/d) (HF rotate_half pairing i, i+d/2).
Vec rope(const Vec& x, int64_t B, int64_t S, int64_t H, int64_t d, const std::vector<int64_t>& pos,
         double theta, double sign = 1.0);

// out = silu(gate) * up; backward gives dgate, dup (overwritten). All [n].
Vec swiglu_forward(const Vec& gate, const Vec& up);
void swiglu_backward(const Vec& dout, const Vec& gate, const Vec& up, Vec& dgate, Vec& dup);

// y [rows, n] + b [n] on every row; the bias gradient: column sums of dy [rows, n].
Vec bias_add(const Vec& y, const Vec& b, int64_t rows, int64_t n);
Vec bias_column_sums(const Vec& dy, int64_t rows, int64_t n);

// out [N, h]: table row ids[i] - row_offset, or zeros if outside [row_offset, row_offset + rows).
Vec embedding_forward(const std::vector<int64_t>& ids, const Vec& table, int64_t rows, int64_t h,
                      int64_t row_offset);
// dtable [rows, h] += dout rows of local ids.
void embedding_backward(const std::vector<int64_t>& ids, const Vec& dout, int64_t rows, int64_t h,
                        int64_t row_offset, Vec& dtable);

// One torch.optim.AdamW step in double (p *= 1 - lr*wd; m, v; p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)).
void adamw_step(Vec& p, Vec& m, Vec& v, const Vec& g, int64_t step, double lr, double beta1,
                double beta2, double eps, double weight_decay);

}  // namespace tsp::kernels::reference
