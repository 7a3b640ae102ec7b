// KvCache: the keys and values (after RoPE) of every token a sequence has seen, per layer, in
// slots that also record each token's global position, so a sharded cache can hold any subset.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "tsp/core/tensor.h"
#include "tsp/model/model_config.h"

namespace tsp::infer {

// Position of a slot that holds no token (never written, or padding of a shorter prompt). Flash
// attention never lets a query see a key at this position, so such slots are harmless.
inline constexpr int32_t kEmptySlot = std::numeric_limits<int32_t>::max();

// Per layer l: k(l), v(l) [B, capacity, H_kv, d] in the activation dtype (f32 or bf16); shared by
// the layers: positions() [B, capacity] i32, the global position of each slot (kEmptySlot when
// empty), and length(b), the number of slots sequence b has filled (slots [0, length) are in use).
// Single rank: slot s holds position s. A rank of the sharded decode holds a subset of the
// positions (zigzag chunks after prefill, then its share of the new tokens): the attention only
// reads positions, never slot indices. Every buffer is allocated under MemCategory::kv_cache.
class KvCache {
 public:
  // Validates before allocating: batch, capacity > 0; capacity <= max_position_embeddings (a slot
  // beyond the position limit could never be used); dtype f32 or bf16. Buffers are zeroed and
  // every slot is empty.
  KvCache(const model::ModelConfig& config, DType dtype, int64_t batch, int64_t capacity);

  const model::ModelConfig& config() const { return config_; }
  DType dtype() const { return dtype_; }
  int64_t layers() const { return static_cast<int64_t>(k_.size()); }
  int64_t batch() const { return batch_; }
  int64_t capacity() const { return capacity_; }

  const Tensor& k(int64_t layer) const;  // [B, capacity, H_kv, d]
  const Tensor& v(int64_t layer) const;  // [B, capacity, H_kv, d]
  const Tensor& positions() const { return positions_; }  // [B, capacity] i32

  int64_t length(int64_t b) const;  // filled slots of sequence b
  // Slots [0, n) of sequence b are in use from now on (prefill writes them and their positions).
  void set_length(int64_t b, int64_t n);
  // Appends one token of sequence b at global `position`: its slot (returned) is length(b), which
  // then grows by one. The caller writes K and V of every layer there. Throws if the row is full.
  int64_t claim_slot(int64_t b, int32_t position);
  // Views of sequence b's filled slots: [1, length(b), H_kv, d] and positions [length(b)].
  Tensor k_filled(int64_t layer, int64_t b) const;
  Tensor v_filled(int64_t layer, int64_t b) const;
  Tensor positions_filled(int64_t b) const;
  // Every sequence back to empty (lengths 0, positions kEmptySlot); buffers are kept.
  void clear();

  // Bytes of K and V: exactly 2 L B capacity H_kv d e (e = 4 for f32, 2 for bf16).
  int64_t bytes() const;
  // Bytes of the position table: 4 B capacity.
  int64_t position_bytes() const { return 4 * batch_ * capacity_; }
  // Everything this cache allocated under kv_cache: bytes() + position_bytes().
  int64_t allocated_bytes() const { return bytes() + position_bytes(); }
  // bytes() for a configuration, without allocating (for capacity planning and reports).
  static int64_t bytes_for(const model::ModelConfig& config, DType dtype, int64_t batch,
                           int64_t capacity);

 private:
  model::ModelConfig config_;
  DType dtype_;
  int64_t batch_, capacity_;
  std::vector<Tensor> k_, v_;   // per layer [B, capacity, H_kv, d]
  Tensor positions_;            // [B, capacity] i32
  std::vector<int64_t> length_;  // per sequence
};

}  // namespace tsp::infer
