// Helpers shared by the comm MPI tests: rank-encoded values, counts that include 0 and sizes not
// divisible by the group, cross-rank sums of local dot products for the adjoint identities.
#pragma once

#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tsp/comm/communicator.h"
#include "tsp/comm/mpi/mpi_backend.h"
#include "tsp/core/random.h"
#include "tsp/core/tensor.h"

namespace tsp::testing {

inline constexpr DType kAllDTypes[] = {DType::f32, DType::bf16, DType::i32, DType::i64};

// Small integers, exact in every dtype (bf16 holds integers up to 256 exactly) and in sums over
// up to 4 ranks: enc(r, i) = 1 + r * 7 + i % 5 (at most 1 + 21 + 4 = 26; 4 ranks sum <= 104).
inline int64_t enc(int r, int64_t i) { return 1 + r * 7 + i % 5; }

inline Tensor filled(int64_t n, DType dtype, const std::function<int64_t(int64_t)>& f) {
  Tensor t = Tensor::empty({n}, dtype, MemCategory::workspace);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t v = f(i);
    switch (dtype) {
      case DType::f32: t.data<float>()[i] = static_cast<float>(v); break;
      case DType::bf16: t.data<bf16>()[i] = bf16(static_cast<float>(v)); break;
      case DType::i32: t.data<int32_t>()[i] = static_cast<int32_t>(v); break;
      case DType::i64: t.data<int64_t>()[i] = v; break;
      case DType::f16: t.data<f16>()[i] = f16(static_cast<float>(v)); break;
    }
  }
  return t;
}

inline int64_t value_at(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::f32: return static_cast<int64_t>(t.data<float>()[i]);
    case DType::bf16: return static_cast<int64_t>(static_cast<float>(t.data<bf16>()[i]));
    case DType::i32: return t.data<int32_t>()[i];
    case DType::i64: return t.data<int64_t>()[i];
    case DType::f16: return static_cast<int64_t>(static_cast<float>(t.data<f16>()[i]));
  }
  return 0;
}

// Expects t[i] == f(i) for all i; reports the first mismatch only.
inline void expect_values(const Tensor& t, const std::function<int64_t(int64_t)>& f,
                          const std::string& what) {
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (value_at(t, i) != f(i)) {
      ADD_FAILURE() << what << " (" << dtype_name(t.dtype()) << "): element " << i << " is "
                    << value_at(t, i) << ", expected " << f(i);
      return;
    }
  }
}

// The same pseudo-random sequence on every rank (seeded only by `seed`).
inline std::vector<int64_t> random_counts(uint64_t seed, int D, int64_t max_count) {
  Rng rng(seed, 7);
  std::vector<int64_t> c(D);
  for (int64_t& x : c) x = static_cast<int64_t>(rng.below(static_cast<uint64_t>(max_count) + 1));
  if (D > 1) c[rng.below(D)] = 0;  // always exercise an empty block
  return c;
}

inline double local_dot(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.numel(), b.numel());
  const Tensor fa = a.to_f32(), fb = b.to_f32();
  double s = 0;
  for (int64_t i = 0; i < fa.numel(); ++i)
    s += static_cast<double>(fa.data<float>()[i]) * fb.data<float>()[i];
  return s;
}

inline double sum_over_ranks(comm::Communicator& comm, double v) {
  double out = 0;
  MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, MPI_SUM, comm::mpi::handle_of(comm));
  return out;
}

inline int64_t sum_over_ranks(comm::Communicator& comm, int64_t v) {
  int64_t out = 0;
  MPI_Allreduce(&v, &out, 1, MPI_INT64_T, MPI_SUM, comm::mpi::handle_of(comm));
  return out;
}

inline Tensor random_f32(int64_t n, uint64_t seed, int rank) {
  Tensor t = Tensor::empty({n}, DType::f32, MemCategory::workspace);
  Rng rng(seed, static_cast<uint64_t>(rank) + 1);
  fill_normal(t, rng);
  return t;
}

}  // namespace tsp::testing
