// The prompt-batch helpers every prefill shares (prompt_batch.h).
#include "tsp/infer/prompt_batch.h"

#include <algorithm>

#include "tsp/core/check.h"

namespace tsp::infer {

Tensor padded_prompts(const std::vector<std::vector<int32_t>>& prompts, int64_t seq) {
  const auto batch = static_cast<int64_t>(prompts.size());
  Tensor t = Tensor::empty({batch, seq}, DType::i32, MemCategory::workspace);
  int32_t* p = t.data<int32_t>();
  std::fill(p, p + batch * seq, kPrefillPadId);
  for (int64_t b = 0; b < batch; ++b) {
    TSP_ASSERT(static_cast<int64_t>(prompts[b].size()) <= seq, "padded_prompts: prompt ", b,
               " has ", prompts[b].size(), " tokens, more than ", seq);
    std::copy(prompts[b].begin(), prompts[b].end(), p + b * seq);
  }
  return t;
}

void record_prompt_positions(const std::vector<std::vector<int32_t>>& prompts, KvCache& cache) {
  TSP_ASSERT(static_cast<int64_t>(prompts.size()) == cache.batch(), "record_prompt_positions: ",
             prompts.size(), " prompts for a cache of batch ", cache.batch());
  int32_t* pos = cache.positions().data<int32_t>();
  for (int64_t b = 0; b < cache.batch(); ++b) {
    const auto n = static_cast<int64_t>(prompts[b].size());
    for (int64_t s = 0; s < n; ++s) pos[b * cache.capacity() + s] = static_cast<int32_t>(s);
    cache.set_length(b, n);
  }
}

Tensor last_prompt_rows(const Tensor& x, const std::vector<std::vector<int32_t>>& prompts, int64_t seq) {
  const auto batch = static_cast<int64_t>(prompts.size());
  Tensor out = Tensor::empty({batch, x.dim(1)}, x.dtype(), MemCategory::workspace);
  for (int64_t b = 0; b < batch; ++b) {
    const auto last = b * seq + static_cast<int64_t>(prompts[b].size()) - 1;
    out.slice(0, b, 1).copy_from(x.slice(0, last, 1));
  }
  return out;
}

}  // namespace tsp::infer
