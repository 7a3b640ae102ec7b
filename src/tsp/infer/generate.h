// The one generation loop, over any Decoder (decoder.h): capacity check, prefill, then decode
// steps that sample one token per sequence until EOS or the token limit, with streaming and speeds.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "tsp/infer/decoder.h"
#include "tsp/infer/sampler.h"
#include "tsp/model/model_weights.h"

namespace tsp::infer {

struct GenerateOptions {
  int64_t max_new_tokens = 64;  // >= 1: tokens sampled per sequence at most
  SamplingOptions sampling = {};
  int32_t eos_id = -1;          // a sequence stops after sampling this id; < 0: no stop token
  std::vector<int32_t> more_eos_ids = {};  // further stop ids (Llama-3.1 stops at any of three)
  int64_t capacity = 0;         // KV-cache positions; 0: longest prompt + max_new_tokens
  DecodeOptions decode = {};
};

// Whether `id` ends a sequence under `o` (eos_id or one of more_eos_ids).
inline bool is_stop_id(const GenerateOptions& o, int32_t id) {
  if (id == o.eos_id) return true;
  for (int32_t e : o.more_eos_ids)
    if (id == e) return true;
  return false;
}

struct GenerateStats {
  int64_t batch = 0;
  int64_t prefill_tokens = 0;     // prompt tokens (padding excluded)
  double prefill_seconds = 0;     // prefill() alone
  int64_t decode_steps = 0;
  int64_t decode_tokens = 0;      // tokens sampled from decode-step logits, over all sequences
  double decode_seconds = 0;      // decode steps + their sampling
  int64_t kv_cache_capacity = 0;  // positions per sequence
  int64_t kv_cache_bytes = 0;     // KvCache::bytes(): K and V of every layer
  int64_t kv_cache_allocated_bytes = 0;  // KvCache::allocated_bytes(): plus the position table

  double prefill_tokens_per_s() const { return prefill_seconds > 0 ? prefill_tokens / prefill_seconds : 0; }
  double decode_tokens_per_s() const { return decode_seconds > 0 ? decode_tokens / decode_seconds : 0; }
};

struct Generation {
  // New tokens of each sequence, in order; ends with eos_id when the sequence stopped on it.
  std::vector<std::vector<int32_t>> tokens;
  GenerateStats stats;
};

// Called for every sampled token, (sequence, token), as soon as it is sampled: the first token of
// every sequence after the prefill, then one per still-running sequence after each decode step.
using TokenCallback = std::function<void(int64_t sequence, int32_t token)>;

// Generates continuations of `prompts` (token ids; BOS is the caller's business) as one batch on
// the decoder `make_decoder(B, capacity)` returns: prefill (left-aligned, padded), sample the first
// token from the prefill logits, then decode_step + sample until every sequence has emitted a stop
// id or max_new_tokens tokens. A stopped sequence still runs through the batch's decode steps (fed
// its latest sample, outputs discarded). Checked before the decoder is made: every prompt
// non-empty with ids in [0, V) of `config`; sampling options; and for the longest prompt n:
// n + max_new_tokens <= max_position_embeddings (every generated token needs a position) and
// <= capacity when one is given (InvalidArgument naming the numbers). With a sharded decoder every
// rank calls this with the same arguments: the control flow depends only on the sampled tokens,
// which are the same on every rank (same logits, same seed), so the collectives match.
Generation generate(const model::ModelConfig& config, const DecoderFactory& make_decoder,
                    const std::vector<std::vector<int32_t>>& prompts, const GenerateOptions& options,
                    const TokenCallback& on_token = {});

// generate() on one rank: SingleDecoder (single_decoder.h) over `w`.
Generation generate(const model::ModelWeights& w, const std::vector<std::vector<int32_t>>& prompts,
                    const GenerateOptions& options, const TokenCallback& on_token = {});

// The finiteness check of the generation loop, on the
// logits [B, V] about to be sampled: row b of a running sequence (done[b] false) predicts its new
// token k = tokens[b].size() + 1, which will take the 0-based position
// N = prompts[b].size() + tokens[b].size(). A NaN or +-inf there (NaN/Inf weights, an overflow)
// throws InvalidArgument "generate: non-finite logits at position N (token k of M): the model
// produced NaN/Inf; check the checkpoint's weights" (", sequence b" added in a batch) instead of
// sampling garbage. Every rank of a sharded loop holds the same logits, so every rank throws.
void check_logits_finite(const Tensor& logits, const std::vector<std::vector<int32_t>>& prompts,
                         const std::vector<std::vector<int32_t>>& tokens, const std::vector<bool>& done,
                         int64_t max_new_tokens);

}  // namespace tsp::infer
