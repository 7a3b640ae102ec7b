// The sharded generation loop (the same checks, sampling and statistics as generate.cpp, one
// decoder call per step) and the per-rank checkpoint loader.
#include "tsp/infer/tsp_generate.h"

#include <algorithm>
#include <chrono>

#include "tsp/core/check.h"
#include "tsp/infer/tp_decode.h"
#include "tsp/infer/tsp_decode.h"
#include "tsp/model/hf_checkpoint.h"
#include "tsp/parallel/sharded_checkpoint.h"
#include "tsp/parallel/tp_sp_block.h"

namespace tsp::infer {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Positions per sequence, after generate()'s checks (same messages).
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
    for (const int32_t id : prompts[b])
      TSP_CHECK(id >= 0 && id < c.vocab_size(), "generate: prompt ", b, " holds token id ", id,
                " outside the vocabulary [0, ", c.vocab_size(), ")");
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

// Records the sampled tokens of the running sequences (generate.cpp's bookkeeping).
struct Progress {
  std::vector<std::vector<int32_t>>& tokens;
  const GenerateOptions& options;
  const TokenCallback& on_token;
  std::vector<bool> done;
  int64_t running;

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

// Prefill, sample, decode: the control flow depends only on the sampled tokens, which are the
// same on every rank, so every rank makes the same collective calls.
template <class Decoder>
Generation run(comm::Communicator& comm, const parallel::TspWeights& w,
               const std::vector<std::vector<int32_t>>& prompts, const GenerateOptions& options,
               const TokenCallback& on_token) {
  const int64_t capacity = checked_capacity(w.config(), prompts, options);
  const auto batch = static_cast<int64_t>(prompts.size());
  Decoder decoder(comm, w, batch, capacity, options.decode);
  Sampler sampler(options.sampling, batch);
  Generation gen;
  gen.tokens.resize(prompts.size());
  GenerateStats& st = gen.stats;
  st.batch = batch;
  for (const auto& p : prompts) st.prefill_tokens += static_cast<int64_t>(p.size());

  Clock::time_point t0 = Clock::now();
  Tensor logits = decoder.prefill(prompts);
  st.prefill_seconds = seconds_since(t0);
  st.kv_cache_capacity = decoder.cache().capacity();
  st.kv_cache_bytes = decoder.cache().bytes();
  st.kv_cache_allocated_bytes = decoder.cache().allocated_bytes();
  Progress progress{gen.tokens, options, on_token, std::vector<bool>(prompts.size(), false), batch};
  check_logits_finite(logits, prompts, gen.tokens, progress.done, options.max_new_tokens);
  std::vector<int32_t> next = sampler.sample(logits);
  progress.take(next);

  t0 = Clock::now();
  while (progress.running > 0) {
    logits = decoder.decode_step(next);
    check_logits_finite(logits, prompts, gen.tokens, progress.done, options.max_new_tokens);
    next = sampler.sample(logits);
    ++st.decode_steps;
    st.decode_tokens += progress.take(next);
  }
  st.decode_seconds = seconds_since(t0);
  return gen;
}

}  // namespace

Generation tsp_generate(comm::Communicator& comm, const parallel::TspWeights& w,
                        const std::vector<std::vector<int32_t>>& prompts,
                        const GenerateOptions& options, const TokenCallback& on_token) {
  return run<TspDecoder>(comm, w, prompts, options, on_token);
}

Generation tp_generate(comm::Communicator& comm, const parallel::TspWeights& w,
                       const std::vector<std::vector<int32_t>>& prompts,
                       const GenerateOptions& options, const TokenCallback& on_token) {
  return run<TpDecoder>(comm, w, prompts, options, on_token);
}

parallel::TspWeights load_weight_shards(const std::filesystem::path& dir, int degree, int rank,
                                        LayoutKind layout) {
  if (!std::filesystem::is_directory(dir)) {
    TSP_THROW(IoError, "checkpoint directory ", dir.string(), " does not exist");
  }
  const model::ModelConfig config = model::HfCheckpoint(dir).config();  // checks the files
  TSP_CHECK(layout == LayoutKind::tsp || layout == LayoutKind::tp, "load_weight_shards: layout ",
            layout_kind_name(layout), " does not decode from weight shards (tsp or tp)");
  if (layout == LayoutKind::tp) parallel::validate_tp_sp(config, degree, 1, 0);
  parallel::TspWeights w(config, config.torch_dtype(), degree, rank, MemCategory::weights);
  parallel::load_shards_from_hf(dir, w.params());
  return w;
}

}  // namespace tsp::infer
