// Deterministic, platform-independent random numbers for initialisation and tests.
// splitmix64 streams keyed by (seed, stream); normals by Box-Muller, so results never depend on libstdc++.
#pragma once

#include <cstdint>

#include "tsp/core/tensor.h"

namespace tsp {

class Rng {
 public:
  explicit Rng(uint64_t seed, uint64_t stream = 0) : state_(seed * 0x9E3779B97F4A7C15ull ^ (stream + 0x632BE59BD9B4E019ull)) {}
  uint64_t next_u64();
  float uniform();                  // [0, 1)
  float uniform(float lo, float hi);
  float normal();                   // mean 0, std 1
  uint64_t below(uint64_t n);       // uniform integer in [0, n)
  uint64_t state() const { return state_; }
  void set_state(uint64_t s) { state_ = s; }

 private:
  uint64_t state_;
};

// Fill f32/bf16 tensors (any strides) in row-major element order.
void fill_normal(Tensor& t, Rng& rng, float mean = 0.f, float stddev = 1.f);
void fill_uniform(Tensor& t, Rng& rng, float lo, float hi);

}  // namespace tsp
