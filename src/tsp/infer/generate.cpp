// generate(): validation up front, then the prefill / sample / decode loop over a Decoder with
// wall-clock timing of the prefill and of the decode steps.
#include "tsp/infer/generate.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <cmath>
#include <string>

#include "tsp/core/check.h"
#include "tsp/infer/single/single_decoder.h"

namespace tsp::infer {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// KV-cache positions per sequence after the checks of generate().
int64_t checked_capacity(const model::ModelConfig& c,
                         const std::vector<std::vector<int32_t>>& prompts,
                         const GenerateOptions& o) {
  TSP_CHECK(!prompts.empty(), "generate: no prompts");
  TSP_CHECK(o.max_new_tokens >= 1, "max-new-tokens must be >= 1, got ", o.max_new_tokens);
  TSP_CHECK(o.capacity >= 0, "generate: capacity must be >= 0 (0 = automatic), got ", o.capacity);
  TSP_CHECK(o.decode.kv_parts >= 1, "generate: kv_parts must be >= 1, got ", o.decode.kv_parts);
  validate(o.sampling);
  int64_t longest = 0;
  for (size_t b = 0; b < prompts.size(); ++b) {
    TSP_CHECK(!prompts[b].empty(), "generate: prompt ", b,
              " is empty (it needs at least one token, e.g. BOS)");
    for (const int32_t id : prompts[b]) {
      TSP_CHECK(id >= 0 && id < c.vocab_size(), "generate: prompt ", b, " holds token id ", id,
                " outside the vocabulary [0, ", c.vocab_size(), ")");
    }
    longest = std::max(longest, static_cast<int64_t>(prompts[b].size()));
  }
  const int64_t needed = longest + o.max_new_tokens;
  TSP_CHECK(needed <= c.max_position_embeddings(), "prompt of ", longest, " tokens + ",
            o.max_new_tokens, " new tokens = ", needed,
            " positions exceeds the model's max_position_embeddings ", c.max_position_embeddings());
  TSP_CHECK(o.capacity == 0 || needed <= o.capacity, "prompt of ", longest, " tokens + ",
            o.max_new_tokens, " new tokens = ", needed, " positions exceeds the KV-cache capacity ",
            o.capacity);
  return o.capacity == 0 ? needed : o.capacity;
}

// Bookkeeping of which sequences still run.
struct Progress {
  std::vector<std::vector<int32_t>>& tokens;
  const GenerateOptions& options;
  const TokenCallback& on_token;
  std::vector<bool> done;
  int64_t running;

  // Records the sampled tokens of the running sequences; returns how many were recorded.
  int64_t take(const std::vector<int32_t>& sampled) {
    int64_t taken = 0;
    for (size_t b = 0; b < sampled.size(); ++b) {
      if (done[b]) continue;
      tokens[b].push_back(sampled[b]);
      ++taken;
      if (on_token) on_token(static_cast<int64_t>(b), sampled[b]);
      const bool limit = static_cast<int64_t>(tokens[b].size()) >= options.max_new_tokens;
      if (is_stop_id(options, sampled[b]) || limit) {
        done[b] = true;
        --running;
      }
    }
    return taken;
  }
};

}  // namespace

void check_logits_finite(const Tensor& logits, const std::vector<std::vector<int32_t>>& prompts,
                         const std::vector<std::vector<int32_t>>& tokens, const std::vector<bool>& done,
                         int64_t max_new_tokens) {
  TSP_CHECK_SHAPE(logits.rank() == 2 && logits.dim(0) == static_cast<int64_t>(prompts.size()) &&
                      tokens.size() == prompts.size() && done.size() == prompts.size(),
                  "check_logits_finite: logits must be [B, V] with B = ", prompts.size(), " prompts, got ",
                  logits.describe());
  const Tensor rows = logits.dtype() == DType::f32 && logits.is_contiguous() ? logits : logits.to_f32();
  const int64_t vocab = rows.dim(1);
  for (size_t b = 0; b < prompts.size(); ++b) {
    if (done[b]) continue;  // a stopped sequence's logits are discarded, never sampled
    const float* row = rows.data<float>() + static_cast<int64_t>(b) * vocab;
    const bool finite = std::all_of(row, row + vocab, [](float x) { return std::isfinite(x); });
    if (finite) continue;
    const std::string sequence = prompts.size() > 1 ? ", sequence " + std::to_string(b) : "";
    TSP_THROW(InvalidArgument, "generate: non-finite logits at position ",
              prompts[b].size() + tokens[b].size(), " (token ", tokens[b].size() + 1, " of ",
              max_new_tokens, sequence, "): the model produced NaN/Inf; check the checkpoint's weights");
  }
}

Generation generate(const model::ModelConfig& config, const DecoderFactory& make_decoder,
                    const std::vector<std::vector<int32_t>>& prompts, const GenerateOptions& options,
                    const TokenCallback& on_token) {
  const int64_t capacity = checked_capacity(config, prompts, options);
  const auto batch = static_cast<int64_t>(prompts.size());
  const std::unique_ptr<Decoder> decoder = make_decoder(batch, capacity);
  Sampler sampler(options.sampling, batch);
  Generation gen;
  gen.tokens.resize(prompts.size());
  GenerateStats& st = gen.stats;
  st.batch = batch;
  for (const auto& p : prompts) st.prefill_tokens += static_cast<int64_t>(p.size());

  Clock::time_point t0 = Clock::now();
  Tensor logits = decoder->prefill(prompts);
  st.prefill_seconds = seconds_since(t0);
  // Read after the prefill: a sequence-sharded cache is sized from the prompt lengths.
  st.kv_cache_capacity = decoder->cache().capacity();
  st.kv_cache_bytes = decoder->cache().bytes();
  st.kv_cache_allocated_bytes = decoder->cache().allocated_bytes();
  Progress progress{gen.tokens, options, on_token, std::vector<bool>(prompts.size(), false), batch};
  check_logits_finite(logits, prompts, gen.tokens, progress.done, options.max_new_tokens);
  std::vector<int32_t> next = sampler.sample(logits);
  progress.take(next);

  t0 = Clock::now();
  while (progress.running > 0) {
    logits = decoder->decode_step(next);
    check_logits_finite(logits, prompts, gen.tokens, progress.done, options.max_new_tokens);
    next = sampler.sample(logits);
    ++st.decode_steps;
    st.decode_tokens += progress.take(next);
  }
  st.decode_seconds = seconds_since(t0);
  return gen;
}

Generation generate(const model::ModelWeights& w, const std::vector<std::vector<int32_t>>& prompts,
                    const GenerateOptions& options, const TokenCallback& on_token) {
  const DecoderFactory make = [&](int64_t batch, int64_t capacity) -> std::unique_ptr<Decoder> {
    return std::make_unique<SingleDecoder>(w, batch, capacity, options.decode);
  };
  return generate(w.config(), make, prompts, options, on_token);
}

}  // namespace tsp::infer
