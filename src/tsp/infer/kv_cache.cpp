// KvCache: allocation under MemCategory::kv_cache (checked first), slot bookkeeping and views of
// the filled slots of one sequence.
#include "tsp/infer/kv_cache.h"

#include "tsp/core/check.h"

namespace tsp::infer {

KvCache::KvCache(const model::ModelConfig& config, DType dtype, int64_t batch, int64_t capacity)
    : config_(config), dtype_(dtype), batch_(batch), capacity_(capacity) {
  TSP_CHECK_DTYPE(dtype == DType::f32 || dtype == DType::bf16,
                  "KvCache: dtype must be f32 or bf16, got ", dtype);
  TSP_CHECK(batch > 0, "KvCache: batch must be positive, got ", batch);
  TSP_CHECK(capacity > 0, "KvCache: capacity must be positive, got ", capacity);
  TSP_CHECK(capacity <= config.max_position_embeddings(), "KvCache: capacity ", capacity,
            " positions exceeds the model's max_position_embeddings ",
            config.max_position_embeddings());
  const Shape shape{batch, capacity, config.num_key_value_heads(), config.head_dim()};
  const auto layers = static_cast<size_t>(config.num_hidden_layers());
  k_.reserve(layers);
  v_.reserve(layers);
  for (size_t l = 0; l < layers; ++l) {
    k_.push_back(Tensor::zeros(shape, dtype, MemCategory::kv_cache));
    v_.push_back(Tensor::zeros(shape, dtype, MemCategory::kv_cache));
  }
  positions_ = Tensor::empty({batch, capacity}, DType::i32, MemCategory::kv_cache);
  length_.assign(static_cast<size_t>(batch), 0);
  clear();
}

const Tensor& KvCache::k(int64_t layer) const {
  TSP_CHECK(layer >= 0 && layer < layers(), "KvCache: layer ", layer, " outside [0, ", layers(), ")");
  return k_[static_cast<size_t>(layer)];
}

const Tensor& KvCache::v(int64_t layer) const {
  TSP_CHECK(layer >= 0 && layer < layers(), "KvCache: layer ", layer, " outside [0, ", layers(), ")");
  return v_[static_cast<size_t>(layer)];
}

int64_t KvCache::length(int64_t b) const {
  TSP_CHECK(b >= 0 && b < batch_, "KvCache: sequence ", b, " outside [0, ", batch_, ")");
  return length_[static_cast<size_t>(b)];
}

void KvCache::set_length(int64_t b, int64_t n) {
  TSP_CHECK(b >= 0 && b < batch_, "KvCache: sequence ", b, " outside [0, ", batch_, ")");
  TSP_CHECK(n >= 0 && n <= capacity_, "KvCache: sequence ", b, " would hold ", n,
            " tokens but the cache capacity is ", capacity_, " positions");
  length_[static_cast<size_t>(b)] = n;
}

int64_t KvCache::claim_slot(int64_t b, int32_t position) {
  const int64_t slot = length(b);
  TSP_CHECK(slot < capacity_, "KvCache: sequence ", b, " already holds ", slot,
            " tokens, the KV cache capacity (", capacity_, " positions); no room for another token");
  TSP_CHECK(position >= 0 && position != kEmptySlot, "KvCache: invalid position ", position);
  positions_.data<int32_t>()[b * capacity_ + slot] = position;
  length_[static_cast<size_t>(b)] = slot + 1;
  return slot;
}

Tensor KvCache::k_filled(int64_t layer, int64_t b) const {
  return k(layer).slice(0, b, 1).slice(1, 0, length(b));
}

Tensor KvCache::v_filled(int64_t layer, int64_t b) const {
  return v(layer).slice(0, b, 1).slice(1, 0, length(b));
}

Tensor KvCache::positions_filled(int64_t b) const {
  return positions_.select(0, b).slice(0, 0, length(b));
}

void KvCache::clear() {
  int32_t* pos = positions_.data<int32_t>();
  for (int64_t i = 0; i < batch_ * capacity_; ++i) pos[i] = kEmptySlot;
  for (int64_t& n : length_) n = 0;
}

int64_t KvCache::bytes_for(const model::ModelConfig& c, DType dtype, int64_t batch,
                           int64_t capacity) {
  const auto e = static_cast<int64_t>(dtype_size(dtype));
  return 2 * c.num_hidden_layers() * batch * capacity * c.kv_dim() * e;
}

int64_t KvCache::bytes() const { return bytes_for(config_, dtype_, batch_, capacity_); }

}  // namespace tsp::infer
