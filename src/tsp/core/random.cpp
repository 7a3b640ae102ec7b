// splitmix64 generator and tensor fills.
#include "tsp/core/random.h"

#include <cmath>

namespace tsp {

uint64_t Rng::next_u64() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

float Rng::uniform() { return static_cast<float>(next_u64() >> 40) * (1.0f / 16777216.0f); }

float Rng::uniform(float lo, float hi) { return lo + (hi - lo) * uniform(); }

float Rng::normal() {
  // Box-Muller on (0,1] x [0,1); one value per call keeps the stream position simple.
  const double u1 = (static_cast<double>(next_u64() >> 11) + 1.0) * (1.0 / 9007199254740992.0);
  const double u2 = static_cast<double>(next_u64() >> 11) * (1.0 / 9007199254740992.0);
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
}

uint64_t Rng::below(uint64_t n) { return n == 0 ? 0 : next_u64() % n; }

namespace {
template <class Gen>
void fill_with(Tensor& t, Gen&& gen) {
  TSP_CHECK_DTYPE(t.dtype() == DType::f32 || t.dtype() == DType::bf16, "random fill of ", t.describe());
  Tensor tmp = Tensor::empty(t.shape(), DType::f32, MemCategory::workspace);
  float* p = tmp.data<float>();
  for (int64_t i = 0; i < tmp.numel(); ++i) p[i] = gen();
  t.copy_from(tmp);
}
}  // namespace

void fill_normal(Tensor& t, Rng& rng, float mean, float stddev) {
  fill_with(t, [&] { return mean + stddev * rng.normal(); });
}

void fill_uniform(Tensor& t, Rng& rng, float lo, float hi) {
  fill_with(t, [&] { return rng.uniform(lo, hi); });
}

}  // namespace tsp
