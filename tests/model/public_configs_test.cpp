// Acceptance table of issue #15: the real config.json files of public Hugging Face models
// (tests/model/public_configs/, where README.md names the source of each) load with the published
// sizes, RoPE, attention window, dtype and parameter count; the transformers >= 5 files ("dtype",
// "rope_parameters") give exactly the config of their transformers 4 twins; and every family,
// shrunk to tiny sizes with its RoPE scaling, window and dtype kept, survives config_to_json ->
// config_from_json unchanged.
//
// The expected values below are written from the models' published shapes, not read from the
// JSON files; the parameter counts were checked by hand against
//   V h (embed) + (untied ? V h : 0) + h (final norm)
//   + L (h H d + 2 h H_kv d + H d h + 3 h F + 2 h + (qwen2 ? H d + 2 H_kv d : 0))
// and against the counts the model cards / checkpoints report.
#include "tsp/model/model_config.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "tsp/core/dtype.h"
#include "tsp/kernels/rope.h"

#ifndef TSP_PUBLIC_CONFIGS_DIR
#error "TSP_PUBLIC_CONFIGS_DIR must name tests/model/public_configs (see tests/model/CMakeLists.txt)"
#endif

namespace tsp::model {
namespace {

namespace fs = std::filesystem;
using kernels::RopeScaling;
using kernels::RopeScalingType;

fs::path fixture(const std::string& file) { return fs::path(TSP_PUBLIC_CONFIGS_DIR) / file; }

RopeScaling no_scaling() { return RopeScaling{}; }

// Llama 3.1 / 3.2 rope_scaling: rope_type llama3, low_freq_factor 1, high_freq_factor 4,
// original_max_position_embeddings 8192; factor 8 (3.1) or 32 (3.2).
RopeScaling llama3(double factor) {
  RopeScaling r;
  r.type = RopeScalingType::llama3;
  r.factor = factor;
  r.low_freq_factor = 1.0;
  r.high_freq_factor = 4.0;
  r.original_max_position_embeddings = 8192;
  return r;
}

// One published model: its fixture file and what the engine must read from it.
struct Published {
  const char* file;
  ModelType family;
  int64_t hidden;         // h
  int64_t intermediate;   // F
  int64_t layers;         // L
  int64_t heads;          // H
  int64_t kv_heads;       // H_kv
  int64_t head_dim;       // d
  int64_t vocab;          // V
  int64_t max_positions;  // max_position_embeddings
  double rope_theta;
  double rms_norm_eps;
  RopeScaling scaling;
  int64_t window;         // attention window of every layer; 0: none
  DType dtype;
  bool tied;
  std::optional<int64_t> bos;
  std::optional<int64_t> eos;  // a list in config.json: its first entry
  int64_t params;         // total parameters (qwen2: with the q/k/v biases)
  const char* twin;       // a transformers >= 5 file: the transformers 4 file it must equal
};

void PrintTo(const Published& p, std::ostream* os) { *os << p.file; }

const std::vector<Published>& published() {
  static const std::vector<Published> table = [] {
    std::vector<Published> rows = {
      {.file = "TinyLlama--TinyLlama-1.1B-Chat-v1.0.json", .family = ModelType::llama,
       .hidden = 2048, .intermediate = 5632, .layers = 22, .heads = 32, .kv_heads = 4, .head_dim = 64,
       .vocab = 32000, .max_positions = 2048, .rope_theta = 10000.0, .rms_norm_eps = 1e-5,
       .scaling = no_scaling(), .window = 0, .dtype = DType::bf16, .tied = false, .bos = 1, .eos = 2,
       .params = 1'100'048'384, .twin = nullptr},
      {.file = "meta-llama--Meta-Llama-3-8B.json", .family = ModelType::llama,
       .hidden = 4096, .intermediate = 14336, .layers = 32, .heads = 32, .kv_heads = 8, .head_dim = 128,
       .vocab = 128256, .max_positions = 8192, .rope_theta = 500000.0, .rms_norm_eps = 1e-5,
       .scaling = no_scaling(), .window = 0, .dtype = DType::bf16, .tied = false, .bos = 128000, .eos = 128001,
       .params = 8'030'261'248, .twin = nullptr},
      {.file = "HuggingFaceTB--SmolLM2-135M.json", .family = ModelType::llama,
       .hidden = 576, .intermediate = 1536, .layers = 30, .heads = 9, .kv_heads = 3, .head_dim = 64,
       .vocab = 49152, .max_positions = 8192, .rope_theta = 100000.0, .rms_norm_eps = 1e-5,
       .scaling = no_scaling(), .window = 0, .dtype = DType::bf16, .tied = true, .bos = 0, .eos = 0,
       .params = 134'515'008, .twin = nullptr},
      // No rope_theta in the file: HF's default 10000. float16, pretraining_tp 1.
      {.file = "meta-llama--Llama-2-7b-hf.json", .family = ModelType::llama,
       .hidden = 4096, .intermediate = 11008, .layers = 32, .heads = 32, .kv_heads = 32, .head_dim = 128,
       .vocab = 32000, .max_positions = 4096, .rope_theta = 10000.0, .rms_norm_eps = 1e-5,
       .scaling = no_scaling(), .window = 0, .dtype = DType::f16, .tied = false, .bos = 1, .eos = 2,
       .params = 6'738'415'616, .twin = nullptr},
      {.file = "meta-llama--Llama-3.1-8B.json", .family = ModelType::llama,
       .hidden = 4096, .intermediate = 14336, .layers = 32, .heads = 32, .kv_heads = 8, .head_dim = 128,
       .vocab = 128256, .max_positions = 131072, .rope_theta = 500000.0, .rms_norm_eps = 1e-5,
       .scaling = llama3(8.0), .window = 0, .dtype = DType::bf16, .tied = false, .bos = 128000, .eos = 128001,
       .params = 8'030'261'248, .twin = nullptr},
      // eos_token_id [128001, 128008, 128009]: the first is kept.
      {.file = "meta-llama--Llama-3.1-8B-Instruct.json", .family = ModelType::llama,
       .hidden = 4096, .intermediate = 14336, .layers = 32, .heads = 32, .kv_heads = 8, .head_dim = 128,
       .vocab = 128256, .max_positions = 131072, .rope_theta = 500000.0, .rms_norm_eps = 1e-5,
       .scaling = llama3(8.0), .window = 0, .dtype = DType::bf16, .tied = false, .bos = 128000, .eos = 128001,
       .params = 8'030'261'248, .twin = nullptr},
      {.file = "meta-llama--Llama-3.2-1B.json", .family = ModelType::llama,
       .hidden = 2048, .intermediate = 8192, .layers = 16, .heads = 32, .kv_heads = 8, .head_dim = 64,
       .vocab = 128256, .max_positions = 131072, .rope_theta = 500000.0, .rms_norm_eps = 1e-5,
       .scaling = llama3(32.0), .window = 0, .dtype = DType::bf16, .tied = true, .bos = 128000, .eos = 128001,
       .params = 1'235'814'400, .twin = nullptr},
      // Qwen2: q/k/v biases; sliding_window 32768 but use_sliding_window false, so no window.
      {.file = "Qwen--Qwen2.5-0.5B.json", .family = ModelType::qwen2,
       .hidden = 896, .intermediate = 4864, .layers = 24, .heads = 14, .kv_heads = 2, .head_dim = 64,
       .vocab = 151936, .max_positions = 32768, .rope_theta = 1000000.0, .rms_norm_eps = 1e-6,
       .scaling = no_scaling(), .window = 0, .dtype = DType::bf16, .tied = true, .bos = 151643, .eos = 151643,
       .params = 494'032'768, .twin = nullptr},
      {.file = "Qwen--Qwen2.5-1.5B-Instruct.json", .family = ModelType::qwen2,
       .hidden = 1536, .intermediate = 8960, .layers = 28, .heads = 12, .kv_heads = 2, .head_dim = 128,
       .vocab = 151936, .max_positions = 32768, .rope_theta = 1000000.0, .rms_norm_eps = 1e-6,
       .scaling = no_scaling(), .window = 0, .dtype = DType::bf16, .tied = true, .bos = 151643, .eos = 151645,
       .params = 1'543'714'304, .twin = nullptr},
      // Qwen2 untied, rope_theta 10000, sliding_window 4096 with use_sliding_window false.
      {.file = "deepseek-ai--DeepSeek-R1-Distill-Qwen-1.5B.json", .family = ModelType::qwen2,
       .hidden = 1536, .intermediate = 8960, .layers = 28, .heads = 12, .kv_heads = 2, .head_dim = 128,
       .vocab = 151936, .max_positions = 131072, .rope_theta = 10000.0, .rms_norm_eps = 1e-6,
       .scaling = no_scaling(), .window = 0, .dtype = DType::bf16, .tied = false, .bos = 151643, .eos = 151643,
       .params = 1'777'088'000, .twin = nullptr},
      {.file = "mistralai--Mistral-7B-v0.1.json", .family = ModelType::mistral,
       .hidden = 4096, .intermediate = 14336, .layers = 32, .heads = 32, .kv_heads = 8, .head_dim = 128,
       .vocab = 32000, .max_positions = 32768, .rope_theta = 10000.0, .rms_norm_eps = 1e-5,
       .scaling = no_scaling(), .window = 4096, .dtype = DType::bf16, .tied = false, .bos = 1, .eos = 2,
       .params = 7'241'732'096, .twin = nullptr},
      // sliding_window null: none.
      {.file = "mistralai--Mistral-7B-v0.3.json", .family = ModelType::mistral,
       .hidden = 4096, .intermediate = 14336, .layers = 32, .heads = 32, .kv_heads = 8, .head_dim = 128,
       .vocab = 32768, .max_positions = 32768, .rope_theta = 1000000.0, .rms_norm_eps = 1e-5,
       .scaling = no_scaling(), .window = 0, .dtype = DType::bf16, .tied = false, .bos = 1, .eos = 2,
       .params = 7'248'023'552, .twin = nullptr},
    };
    // The transformers >= 5 files ("dtype", "rope_parameters") of two of them: the same model.
    for (const auto& [v4, v5] : {std::pair{"HuggingFaceTB--SmolLM2-135M.json", "HuggingFaceTB--SmolLM2-135M--tf5.json"},
                                 std::pair{"meta-llama--Llama-3.2-1B.json", "meta-llama--Llama-3.2-1B--tf5.json"}}) {
      const auto it = std::find_if(rows.begin(), rows.end(), [&](const Published& p) { return std::string(p.file) == v4; });
      Published twin = *it;
      twin.file = v5;
      twin.twin = v4;
      rows.push_back(twin);
    }
    return rows;
  }();
  return table;
}

// "meta-llama--Llama-3.2-1B--tf5.json" -> "meta_llama__Llama_3_2_1B__tf5" (gtest names: [A-Za-z0-9_]).
std::string test_name(const ::testing::TestParamInfo<Published>& info) {
  std::string s = info.param.file;
  s = s.substr(0, s.size() - std::string(".json").size());
  for (char& ch : s) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return s;
}

ModelConfig load_fixture(const Published& p) { return load_config(fixture(p.file)); }

// The table and the directory hold the same files, with at least ten distinct public models and
// a transformers >= 5 twin for at least two of them.
TEST(PublicConfigs, TableCoversEveryFixture) {
  std::set<std::string> in_table, on_disk;
  int models = 0, twins = 0;
  for (const Published& p : published()) {
    EXPECT_TRUE(in_table.insert(p.file).second) << p.file << " is listed twice";
    (p.twin == nullptr ? models : twins) += 1;
    if (p.twin != nullptr) {
      const std::string twin = p.twin;
      EXPECT_TRUE(std::any_of(published().begin(), published().end(),
                              [&](const Published& q) { return twin == q.file && q.twin == nullptr; }))
          << p.file << ": its twin " << twin << " is not a transformers 4 row of the table";
    }
  }
  for (const fs::directory_entry& e : fs::directory_iterator(TSP_PUBLIC_CONFIGS_DIR)) {
    if (e.path().extension() == ".json") on_disk.insert(e.path().filename().string());
  }
  EXPECT_EQ(in_table, on_disk);
  EXPECT_GE(models, 10);
  EXPECT_GE(twins, 2);
}

class PublicConfig : public ::testing::TestWithParam<Published> {};

TEST_P(PublicConfig, LoadsWithThePublishedShape) {
  const Published& p = GetParam();
  std::optional<ModelConfig> loaded;
  try {
    loaded.emplace(load_fixture(p));
  } catch (const std::exception& e) {
    FAIL() << p.file << " is refused: " << e.what();
  }
  const ModelConfig& c = *loaded;

  EXPECT_EQ(c.model_type(), p.family);
  EXPECT_EQ(c.qkv_bias(), p.family == ModelType::qwen2);
  EXPECT_EQ(c.hidden_size(), p.hidden);
  EXPECT_EQ(c.intermediate_size(), p.intermediate);
  EXPECT_EQ(c.num_hidden_layers(), p.layers);
  EXPECT_EQ(c.num_attention_heads(), p.heads);
  EXPECT_EQ(c.num_key_value_heads(), p.kv_heads);
  EXPECT_EQ(c.head_dim(), p.head_dim);
  EXPECT_EQ(c.q_dim(), p.heads * p.head_dim);
  EXPECT_EQ(c.kv_dim(), p.kv_heads * p.head_dim);
  EXPECT_EQ(c.vocab_size(), p.vocab);
  EXPECT_EQ(c.max_position_embeddings(), p.max_positions);
  EXPECT_EQ(c.rms_norm_eps(), p.rms_norm_eps);

  // RoPE as every layout builds it: theta and the scaling type with its parameters.
  const kernels::RopeOptions rope = c.rope_options();
  EXPECT_EQ(c.rope_theta(), p.rope_theta);
  EXPECT_EQ(rope.theta, p.rope_theta);
  EXPECT_EQ(rope.scaling.type, p.scaling.type) << kernels::describe_rope(rope);
  EXPECT_EQ(rope.scaling.factor, p.scaling.factor);
  EXPECT_EQ(rope.scaling.low_freq_factor, p.scaling.low_freq_factor);
  EXPECT_EQ(rope.scaling.high_freq_factor, p.scaling.high_freq_factor);
  EXPECT_EQ(rope.scaling.original_max_position_embeddings, p.scaling.original_max_position_embeddings);
  EXPECT_TRUE(rope.scaling == p.scaling) << kernels::describe_rope(rope);

  EXPECT_EQ(c.sliding_window(), p.window);
  EXPECT_EQ(c.attention_options().window, p.window);
  EXPECT_TRUE(c.attention_options().causal);
  EXPECT_EQ(c.torch_dtype(), p.dtype);
  EXPECT_EQ(c.tie_word_embeddings(), p.tied);
  EXPECT_EQ(c.fields().bos_token_id, p.bos);
  EXPECT_EQ(c.fields().eos_token_id, p.eos);
  EXPECT_FALSE(c.fields().pad_token_id.has_value());

  EXPECT_EQ(c.embedding_params(), p.vocab * p.hidden);
  EXPECT_EQ(c.lm_head_params(), p.tied ? 0 : p.vocab * p.hidden);
  EXPECT_EQ(c.total_params(), p.params) << c.summary();

  if (p.twin != nullptr) {
    EXPECT_EQ(c, load_config(fixture(p.twin)))
        << p.file << " (transformers >= 5) differs from " << p.twin << ": " << c.summary() << " vs "
        << load_config(fixture(p.twin)).summary();
  }
}

// Tiny sizes with the family, RoPE scaling, window (at most 8) and dtype of the published model:
// written by config_to_json and read back by config_from_json, the config is unchanged.
TEST_P(PublicConfig, ShrunkToTinySizesRoundTripsThroughJson) {
  const Published& p = GetParam();
  std::optional<ModelConfig> loaded;
  try {
    loaded.emplace(load_fixture(p));
  } catch (const std::exception& e) {
    FAIL() << p.file << " is refused: " << e.what();
  }
  const ModelConfigFields& original = loaded->fields();
  ModelConfigFields f = original;
  f.hidden_size = 64;
  f.intermediate_size = 128;
  f.num_hidden_layers = 2;
  f.num_attention_heads = 4;
  f.num_key_value_heads = original.num_key_value_heads == original.num_attention_heads ? 4 : 2;  // MHA stays MHA
  f.head_dim = 16;
  f.vocab_size = 256;
  f.max_position_embeddings = std::min<int64_t>(original.max_position_embeddings, int64_t{1} << 20);
  if (original.sliding_window > 0) f.sliding_window = std::min<int64_t>(original.sliding_window, 8);
  // Token ids beyond the tiny vocabulary are dropped (a config holding them is invalid).
  for (std::optional<int64_t>* id : {&f.bos_token_id, &f.eos_token_id, &f.pad_token_id}) {
    if (id->has_value() && **id >= f.vocab_size) id->reset();
  }
  std::optional<ModelConfig> shrunk;
  try {
    shrunk.emplace(f);
  } catch (const std::exception& e) {
    FAIL() << p.file << " shrunk is invalid: " << e.what();
  }
  const ModelConfig& tiny = *shrunk;
  EXPECT_EQ(tiny.model_type(), p.family);
  EXPECT_EQ(tiny.qkv_bias(), p.family == ModelType::qwen2);
  EXPECT_EQ(tiny.head_dim(), 16);
  EXPECT_EQ(tiny.rope_theta(), p.rope_theta);
  EXPECT_TRUE(tiny.rope_scaling() == p.scaling) << kernels::describe_rope(tiny.rope_options());
  EXPECT_EQ(tiny.sliding_window(), p.window > 0 ? std::min<int64_t>(p.window, 8) : 0);
  EXPECT_EQ(tiny.torch_dtype(), p.dtype);
  EXPECT_EQ(tiny.tie_word_embeddings(), p.tied);

  const std::string json = config_to_json(tiny);
  std::optional<ModelConfig> read_back;
  try {
    read_back.emplace(config_from_json(json, p.file));
  } catch (const std::exception& e) {
    FAIL() << p.file << " shrunk does not read back: " << e.what() << "\n" << json;
  }
  EXPECT_EQ(*read_back, tiny) << json;
  EXPECT_EQ(read_back->model_type(), tiny.model_type()) << json;
  EXPECT_EQ(read_back->qkv_bias(), tiny.qkv_bias()) << json;
  EXPECT_EQ(read_back->sliding_window(), tiny.sliding_window()) << json;
  EXPECT_EQ(read_back->total_params(), tiny.total_params()) << json;
  // And the text is a fixed point: writing the read-back config gives the same JSON.
  EXPECT_EQ(config_to_json(*read_back), json);
}

INSTANTIATE_TEST_SUITE_P(Issue15, PublicConfig, ::testing::ValuesIn(published()), test_name);

}  // namespace
}  // namespace tsp::model
