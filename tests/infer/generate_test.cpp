// generate(): greedy determinism and agreement with the reference forward, EOS and token limits,
// streaming callback, statistics, and the errors of generation and model loading (capacity,
// position limit, empty prompt, missing or corrupt checkpoint), checked before allocating.
#include "tsp/infer/generate.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <span>
#include <string>

#include "infer_test_util.h"
#include "io_test_util.h"
#include "scratch_dir.h"
#include "tsp/core/error.h"
#include "tsp/core/memory.h"
#include "tsp/infer/single/decode_step.h"
#include "tsp/infer/decoder.h"
#include "tsp/infer/kv_cache.h"
#include "tsp/infer/load_model.h"
#include "tsp/infer/single/prefill.h"
#include "tsp/model/hf_checkpoint.h"

namespace tsp::infer {
namespace {

using testing::kGqaUntied;
using testing::kMhaTied;
using testing::make_config;
using testing::random_tokens;
using testing::random_weights;

template <class Fn>
std::string invalid_argument_of(Fn&& fn) {
  return tsp::testing::message_of<InvalidArgument>(std::forward<Fn>(fn));
}

TEST(Generate, GreedyIsDeterministicAndEqualsTheArgmaxOfTheFullForward) {
  const model::ModelConfig c = make_config(kGqaUntied);
  const model::ModelWeights w = random_weights(c, 21);
  const std::vector<int32_t> prompt = random_tokens(6, c.vocab_size(), 30);
  const GenerateOptions o{.max_new_tokens = 20, .sampling = {.greedy = true}};
  const Generation a = generate(w, {prompt}, o), b = generate(w, {prompt}, o);
  ASSERT_EQ(a.tokens[0].size(), 20u);
  EXPECT_EQ(a.tokens, b.tokens);
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), a.tokens[0].begin(), a.tokens[0].end() - 1);
  const Tensor ref = testing::reference_logits(w, all);
  for (size_t i = 0; i < a.tokens[0].size(); ++i) {
    EXPECT_EQ(a.tokens[0][i], argmax(testing::row(ref, static_cast<int64_t>(prompt.size() + i - 1))))
        << "token " << i;
  }
}

TEST(Generate, SameSeedSameSamplesAndTheCallbackStreamsEveryToken) {
  const model::ModelConfig c = make_config(kMhaTied);
  const model::ModelWeights w = random_weights(c, 22);
  const std::vector<std::vector<int32_t>> prompts = {random_tokens(4, 37, 31), random_tokens(9, 37, 32)};
  const GenerateOptions o{.max_new_tokens = 15,
                          .sampling = {.temperature = 1.f, .top_k = 10, .top_p = 0.9f, .seed = 5}};
  std::vector<std::vector<int32_t>> streamed(2);
  const Generation a = generate(w, prompts, o, [&](int64_t b, int32_t t) { streamed[b].push_back(t); });
  EXPECT_EQ(streamed, a.tokens);
  EXPECT_EQ(generate(w, prompts, o).tokens, a.tokens);
  GenerateOptions other = o;
  other.sampling.seed = 6;
  EXPECT_NE(generate(w, prompts, other).tokens, a.tokens);
  const GenerateStats& st = a.stats;
  EXPECT_EQ(st.prefill_tokens, 13);
  EXPECT_EQ(st.decode_steps, 14);
  EXPECT_EQ(st.decode_tokens, 28);
  EXPECT_EQ(st.kv_cache_capacity, 9 + 15);
  EXPECT_EQ(st.kv_cache_bytes, KvCache::bytes_for(c, DType::f32, 2, 24));
  EXPECT_GT(st.prefill_tokens_per_s(), 0);
  EXPECT_GT(st.decode_tokens_per_s(), 0);
}

TEST(Generate, StopsAtEosPerSequence) {
  const model::ModelConfig c = make_config(kGqaUntied);
  const model::ModelWeights w = random_weights(c, 23);
  const std::vector<std::vector<int32_t>> prompts = {random_tokens(5, 37, 33), random_tokens(3, 37, 34)};
  GenerateOptions o{.max_new_tokens = 12, .sampling = {.greedy = true}};
  const Generation free_run = generate(w, prompts, o);
  o.eos_id = free_run.tokens[0][3];  // the 4th token of sequence 0 now ends it
  const Generation stopped = generate(w, prompts, o);
  const auto& s0 = stopped.tokens[0];
  ASSERT_FALSE(s0.empty());
  EXPECT_EQ(s0.back(), o.eos_id);
  EXPECT_LE(s0.size(), 4u);
  EXPECT_EQ(std::vector<int32_t>(free_run.tokens[0].begin(), free_run.tokens[0].begin() + s0.size()), s0);
  for (size_t b = 0; b < 2; ++b) {
    const auto& t = stopped.tokens[b];
    const auto eos = std::find(t.begin(), t.end(), o.eos_id);
    EXPECT_TRUE(eos == t.end() || eos + 1 == t.end()) << "tokens after EOS in sequence " << b;
    EXPECT_TRUE(eos != t.end() || t.size() == 12u);
  }
}

// A decoder with scripted logits: at call n (0 = prefill) sequence b's argmax is token
// (7 n + b + fed) % V, where fed is the token it was just fed (0 at the prefill). It records what
// the loop asks of it in a Record the test owns (generate() destroys the decoder when it returns),
// so the test sees the loop's contract without any model math.
struct Record {
  int64_t batch = -1, capacity = -1;     // what the factory was asked for
  int prefills = 0;
  std::vector<std::vector<int32_t>> fed;  // the tokens of every decode step
  int64_t cache_capacity = -1, cache_bytes = -1;
};

class ScriptedDecoder final : public Decoder {
 public:
  ScriptedDecoder(const model::ModelConfig& c, int64_t batch, int64_t capacity, Record& record)
      : vocab_(c.vocab_size()), cache_(c, DType::f32, batch, capacity), record_(&record) {
    record.batch = batch;
    record.capacity = capacity;
    record.cache_capacity = cache_.capacity();
    record.cache_bytes = cache_.bytes();
  }
  Tensor prefill(const std::vector<std::vector<int32_t>>& prompts) override {
    ++record_->prefills;
    return logits(std::vector<int32_t>(prompts.size(), 0));
  }
  Tensor decode_step(std::span<const int32_t> tokens) override {
    record_->fed.emplace_back(tokens.begin(), tokens.end());
    return logits(record_->fed.back());
  }
  const KvCache& cache() const override { return cache_; }

 private:
  int32_t scripted(int64_t call, int64_t b, int32_t fed_token) const {
    return static_cast<int32_t>((7 * call + b + fed_token) % vocab_);
  }
  Tensor logits(const std::vector<int32_t>& tokens) {
    const auto batch = static_cast<int64_t>(tokens.size());
    Tensor out = Tensor::zeros({batch, vocab_}, DType::f32, MemCategory::workspace);
    for (int64_t b = 0; b < batch; ++b)
      out.data<float>()[b * vocab_ + scripted(calls_, b, tokens[static_cast<size_t>(b)])] = 1.f;
    ++calls_;
    return out;
  }
  int64_t vocab_;
  int64_t calls_ = 0;
  KvCache cache_;
  Record* record_;
};

TEST(Generate, TheOneLoopDrivesAnyDecoderThroughTheInterface) {
  const model::ModelConfig c = make_config(kGqaUntied);
  const std::vector<std::vector<int32_t>> prompts = {random_tokens(5, 37, 40), random_tokens(2, 37, 41)};
  GenerateOptions o{.max_new_tokens = 6, .sampling = {.greedy = true}};
  Record made;
  const DecoderFactory make = [&](int64_t batch, int64_t capacity) -> std::unique_ptr<Decoder> {
    return std::make_unique<ScriptedDecoder>(c, batch, capacity, made);
  };
  std::vector<std::vector<int32_t>> expected(2);
  // The expected tokens: sample n of sequence b is scripted(n, b, sample n-1 of b).
  for (int64_t b = 0; b < 2; ++b) {
    int32_t fed_token = 0;
    for (int64_t call = 0; call < 6; ++call) {
      fed_token = static_cast<int32_t>((7 * call + b + fed_token) % c.vocab_size());
      expected[static_cast<size_t>(b)].push_back(fed_token);
    }
  }
  // Sequence 1 stops at its 3rd token; it is still fed through the batch's steps afterwards.
  o.eos_id = expected[1][2];
  ASSERT_EQ(std::count(expected[0].begin(), expected[0].begin() + 6, o.eos_id), 0)
      << "the script must not stop sequence 0";
  expected[1].resize(3);
  std::vector<std::vector<int32_t>> streamed(2);
  const Generation gen =
      generate(c, make, prompts, o, [&](int64_t b, int32_t t) { streamed[static_cast<size_t>(b)].push_back(t); });
  EXPECT_EQ(made.batch, 2);
  EXPECT_EQ(made.capacity, 5 + 6);  // longest prompt + max_new_tokens
  EXPECT_EQ(made.prefills, 1);
  EXPECT_EQ(gen.tokens, expected);
  EXPECT_EQ(streamed, expected);
  ASSERT_EQ(made.fed.size(), 5u);  // 6 tokens: one from the prefill, five decode steps
  for (size_t step = 0; step < made.fed.size(); ++step)
    EXPECT_EQ(made.fed[step][0], expected[0][step]) << "step " << step;
  EXPECT_EQ(gen.stats.decode_steps, 5);
  EXPECT_EQ(gen.stats.decode_tokens, 5 + 2);  // sequence 1 sampled twice after the prefill
  EXPECT_EQ(gen.stats.kv_cache_capacity, made.cache_capacity);
  EXPECT_EQ(gen.stats.kv_cache_bytes, made.cache_bytes);

  // Refused input never reaches the factory.
  made = Record{};
  EXPECT_THROW(generate(c, make, {std::vector<int32_t>{}}, o), InvalidArgument);
  EXPECT_EQ(made.batch, -1);
}

TEST(Generate, PositionLimitCapacityAndEmptyPromptAreClearErrorsBeforeAllocating) {
  const model::ModelConfig c = make_config(kGqaUntied, 2, /*max_pos=*/64);
  const model::ModelWeights w = random_weights(c, 24);
  MemoryLedger& ledger = MemoryLedger::process();
  const int64_t allocations = ledger.total().allocations;
  std::string m = invalid_argument_of([&] {
    generate(w, {random_tokens(60, 37, 1)}, {.max_new_tokens = 5});
  });
  EXPECT_NE(m.find("prompt of 60 tokens + 5 new tokens = 65 positions exceeds the model's "
                   "max_position_embeddings 64"), std::string::npos) << m;
  m = invalid_argument_of([&] {
    generate(w, {random_tokens(3, 37, 1), random_tokens(20, 37, 2)}, {.max_new_tokens = 5, .capacity = 24});
  });
  EXPECT_NE(m.find("prompt of 20 tokens + 5 new tokens = 25 positions exceeds the KV-cache capacity 24"),
            std::string::npos) << m;
  m = invalid_argument_of([&] { generate(w, {random_tokens(3, 37, 1), {}}, {}); });
  EXPECT_NE(m.find("prompt 1 is empty"), std::string::npos) << m;
  m = invalid_argument_of([&] { generate(w, {{1, 2, 40}}, {}); });
  EXPECT_NE(m.find("token id 40 outside the vocabulary [0, 37)"), std::string::npos) << m;
  m = invalid_argument_of([&] { generate(w, {{1}}, {.max_new_tokens = 0}); });
  EXPECT_NE(m.find("max-new-tokens must be >= 1, got 0"), std::string::npos) << m;
  m = invalid_argument_of([&] { generate(w, {{1}}, {.sampling = {.top_p = 2.f}}); });
  EXPECT_NE(m.find("top-p must be in (0, 1]"), std::string::npos) << m;
  EXPECT_EQ(ledger.total().allocations, allocations);
}

TEST(Generate, PrefillAndDecodeRefuseWhatDoesNotFit) {
  const model::ModelConfig c = make_config(kGqaUntied);
  const model::ModelWeights w = random_weights(c, 25);
  KvCache cache(c, DType::f32, 1, 4);
  std::string m = invalid_argument_of([&] { prefill(w, {random_tokens(5, 37, 1)}, cache); });
  EXPECT_NE(m.find("prompt 0 has 5 tokens but the KV cache capacity is 4 positions"), std::string::npos) << m;
  m = invalid_argument_of([&] { prefill(w, {{}}, cache); });
  EXPECT_NE(m.find("prompt 0 is empty"), std::string::npos) << m;
  prefill(w, {random_tokens(4, 37, 1)}, cache);
  m = invalid_argument_of([&] { prefill(w, {{1}}, cache); });
  EXPECT_NE(m.find("needs an empty cache"), std::string::npos) << m;
  const int32_t token = 3;
  m = invalid_argument_of([&] { decode_step(w, std::span<const int32_t>(&token, 1), cache); });
  EXPECT_NE(m.find("sequence 0 already holds 4 tokens, the KV cache capacity (4 positions)"),
            std::string::npos) << m;
  KvCache bf16_cache(c, DType::bf16, 1, 4);
  EXPECT_THROW(prefill(w, {{1}}, bf16_cache), DTypeError);
}

model::ModelWeights saved_checkpoint(const std::filesystem::path& dir, const model::ModelConfig& c) {
  model::ModelWeights w = random_weights(c, 26);
  std::vector<model::NamedTensor> named;
  for (auto& [name, t] : w.named()) named.push_back({name, t});
  model::save_hf_checkpoint(dir, c, named);
  return w;
}

TEST(LoadModel, RoundTripsACheckpointAndGeneratesTheSameTokens) {
  tsp::testing::ScratchDir dir;
  const model::ModelConfig c = make_config(kGqaUntied);
  const model::ModelWeights w = saved_checkpoint(dir / "ck", c);
  const model::ModelWeights loaded = load_model(dir / "ck");
  EXPECT_EQ(loaded.config(), c);
  const GenerateOptions o{.max_new_tokens = 8, .sampling = {.greedy = true}};
  EXPECT_EQ(generate(loaded, {{1, 2, 3}}, o).tokens, generate(w, {{1, 2, 3}}, o).tokens);
}

TEST(LoadModel, MissingOrCorruptCheckpointsAreIoErrors) {
  tsp::testing::ScratchDir dir;
  std::string m = tsp::testing::io_error_of([&] { load_model(dir / "nope"); });
  EXPECT_NE(m.find("checkpoint directory " + (dir / "nope").string() + " does not exist"), std::string::npos) << m;
  saved_checkpoint(dir / "ck", make_config(kGqaUntied));
  const auto weights = dir / "ck" / model::kSingleWeightsFileName;
  const std::string bytes = tsp::testing::read_bytes(weights);
  tsp::testing::write_bytes(weights, bytes.substr(0, bytes.size() - 100));
  m = tsp::testing::io_error_of([&] { load_model(dir / "ck"); });
  EXPECT_NE(m.find("model.safetensors"), std::string::npos) << m;
  EXPECT_NE(m.find("truncated"), std::string::npos) << m;
  tsp::testing::write_bytes(dir / "ck" / model::kConfigFileName, "{ not json");
  m = tsp::testing::io_error_of([&] { load_model(dir / "ck"); });
  EXPECT_NE(m.find("config.json"), std::string::npos) << m;
}

}  // namespace
}  // namespace tsp::infer
