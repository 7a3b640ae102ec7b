// A batch of prompts prefilled together, as every prefill (single rank, TSP, TP) lays it out:
// left-aligned, padded at the end, each prompt's positions recorded in the KV cache.
#pragma once

#include <cstdint>
#include <vector>

#include "tsp/core/tensor.h"
#include "tsp/infer/kv_cache.h"

namespace tsp::infer {

// Token id written into the padding slots of shorter prompts (any valid id would do: padding
// positions come after every real token, so the causal mask hides them; prefill.h).
inline constexpr int32_t kPrefillPadId = 0;

// [B, seq] i32: the prompts left-aligned, padded at the end with kPrefillPadId (seq >= the longest).
Tensor padded_prompts(const std::vector<std::vector<int32_t>>& prompts, int64_t seq);
// Slot s of sequence b := position s for s < len_b, and length(b) := len_b.
void record_prompt_positions(const std::vector<std::vector<int32_t>>& prompts, KvCache& cache);
// rows (b, len_b - 1) of x [B * seq, h] (the batch of `prompts`, seq per row) as [B, h].
Tensor last_prompt_rows(const Tensor& x, const std::vector<std::vector<int32_t>>& prompts, int64_t seq);

}  // namespace tsp::infer
