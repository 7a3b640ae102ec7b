// RoPE scaling (linear, llama3, yarn) from both config forms: what config.json fields are read,
// what is refused by name, and the kernel's tables against the double reference's own formulas
// at positions up to 128K.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "io_test_util.h"
#include "tsp/core/error.h"
#include "tsp/kernels/rope.h"
#include "tsp/model/model_config.h"
#include "tsp/model/reference/reference_model.h"

namespace tsp::model {
namespace {

using kernels::RopeScalingType;
using testing::message_of;

// Llama-3.1-8B's config.json as published (transformers 4.43 form: rope_theta + rope_scaling).
const char* kLlama31 = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu", "hidden_size": 4096,
  "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 131072,
  "mlp_bias": false, "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32,
  "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0", "use_cache": true, "vocab_size": 128256})";

// Llama-3.2-1B as transformers >= 5 writes it: rope_parameters holds theta and the scaling.
const char* kLlama32V5 = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 128000,
  "dtype": "bfloat16", "eos_token_id": [128001, 128008, 128009], "head_dim": 64,
  "hidden_act": "silu", "hidden_size": 2048, "intermediate_size": 8192,
  "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_parameters": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                      "original_max_position_embeddings": 8192, "rope_theta": 500000.0,
                      "rope_type": "llama3"},
  "tie_word_embeddings": true, "transformers_version": "5.0.0", "use_cache": true,
  "vocab_size": 128256})";

// SmolLM2-135M in the transformers >= 5 form: no top-level rope_theta at all.
const char* kSmolLm2V5 = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 0,
  "dtype": "bfloat16", "eos_token_id": 0, "hidden_act": "silu", "hidden_size": 576,
  "intermediate_size": 1536, "max_position_embeddings": 8192, "mlp_bias": false,
  "model_type": "llama", "num_attention_heads": 9, "num_hidden_layers": 30,
  "num_key_value_heads": 3, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_parameters": {"rope_theta": 100000, "rope_type": "default"},
  "tie_word_embeddings": true, "transformers_version": "5.0.0", "vocab_size": 49152})";

const std::string kBase =
    R"("hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 10, "max_position_embeddings": 4096)";

ModelConfig with(const std::string& extra) { return config_from_json("{" + kBase + ", " + extra + "}", "x.json"); }

TEST(RopeScalingConfig, Llama31ReadsLlama3Scaling) {
  const ModelConfig c = config_from_json(kLlama31, "Llama-3.1-8B/config.json");
  EXPECT_DOUBLE_EQ(c.rope_theta(), 500000.0);
  const kernels::RopeScaling& r = c.rope_scaling();
  EXPECT_EQ(r.type, RopeScalingType::llama3);
  EXPECT_DOUBLE_EQ(r.factor, 8.0);
  EXPECT_DOUBLE_EQ(r.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(r.high_freq_factor, 4.0);
  EXPECT_EQ(r.original_max_position_embeddings, 8192);
  EXPECT_NE(c.summary().find("llama3(factor=8"), std::string::npos) << c.summary();
}

TEST(RopeScalingConfig, TransformersFiveFormTakesThetaAndScalingFromRopeParameters) {
  // Before rope_parameters was read, these fell back to theta = 10000 without scaling, silently.
  const ModelConfig smol = config_from_json(kSmolLm2V5, "SmolLM2-135M/config.json");
  EXPECT_DOUBLE_EQ(smol.rope_theta(), 100000.0);
  EXPECT_EQ(smol.rope_scaling().type, RopeScalingType::none);
  const ModelConfig l32 = config_from_json(kLlama32V5, "Llama-3.2-1B/config.json");
  EXPECT_DOUBLE_EQ(l32.rope_theta(), 500000.0);
  EXPECT_EQ(l32.rope_scaling().type, RopeScalingType::llama3);
  EXPECT_DOUBLE_EQ(l32.rope_scaling().factor, 32.0);
  EXPECT_EQ(l32.rope_scaling().original_max_position_embeddings, 8192);
}

TEST(RopeScalingConfig, LegacyTypeKeyLinearAndYarnDefaults) {
  const ModelConfig lin = with(R"("rope_scaling": {"type": "linear", "factor": 2.0})");
  EXPECT_EQ(lin.rope_scaling().type, RopeScalingType::linear);
  EXPECT_DOUBLE_EQ(lin.rope_scaling().factor, 2.0);
  // yarn without original_max_position_embeddings: max_position_embeddings (transformers 5).
  const ModelConfig y = with(R"("rope_scaling": {"rope_type": "yarn", "factor": 4.0})");
  EXPECT_EQ(y.rope_scaling().type, RopeScalingType::yarn);
  EXPECT_EQ(y.rope_scaling().original_max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(kernels::rope_amplitude(y.rope_options()), 0.1 * std::log(4.0) + 1.0);
  // yarn without factor: max_position_embeddings / original_max_position_embeddings.
  const ModelConfig y2 = with(R"("rope_scaling": {"rope_type": "yarn", "original_max_position_embeddings": 1024})");
  EXPECT_DOUBLE_EQ(y2.rope_scaling().factor, 4.0);
  // DeepSeek's mscale form of the amplitude.
  const ModelConfig y3 = with(R"("rope_scaling": {"rope_type": "yarn", "factor": 40, "mscale": 0.707, "mscale_all_dim": 0.707, "original_max_position_embeddings": 64})");
  EXPECT_DOUBLE_EQ(kernels::rope_amplitude(y3.rope_options()), 1.0);
  // "default" scaling and null rope_scaling are no scaling.
  EXPECT_EQ(with(R"("rope_scaling": null)").rope_scaling().type, RopeScalingType::none);
  EXPECT_EQ(with(R"("rope_scaling": {"rope_type": "default"})").rope_scaling().type, RopeScalingType::none);
}

TEST(RopeScalingConfig, UnimplementedFormsAreRefusedByName) {
  auto refused = [](const std::string& extra, const std::string& needle) {
    const std::string m = message_of<InvalidArgument>([&] { with(extra); });
    EXPECT_NE(m.find(needle), std::string::npos) << extra << " -> " << m;
  };
  refused(R"("rope_scaling": {"type": "dynamic", "factor": 2.0})", "\"dynamic\"");
  refused(R"("rope_scaling": {"rope_type": "longrope", "factor": 2.0})", "\"longrope\"");
  refused(R"("rope_parameters": {"rope_type": "su", "rope_theta": 10000})", "\"su\"");
  refused(R"("rope_scaling": {"rope_type": "linear", "factor": 2.0, "extrapolation": 3})",
          "rope_scaling.extrapolation");
  refused(R"("rope_scaling": {"rope_type": "linear"})", "needs \"factor\"");
  refused(R"("rope_scaling": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 1, "high_freq_factor": 4})",
          "original_max_position_embeddings");
  refused(R"("rope_scaling": {"factor": 2.0})", "no rope_type");
  refused(R"("partial_rotary_factor": 0.5)", "partial_rotary_factor 0.5");
  refused(R"("rope_parameters": {"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.25})",
          "partial_rotary_factor");
  refused(R"("rope_scaling": {"rope_type": "linear", "factor": 0.5})", "factor must be >= 1");
}

// Where the two forms and their fields meet: nothing is picked silently.
TEST(RopeScalingConfig, AmbiguousOrPartialFormsAreResolvedAsTransformersFiveOrRefused) {
  // Both forms: the same description is fine, two different ones are refused.
  const std::string lin = R"({"rope_type": "linear", "factor": 2.0})";
  EXPECT_EQ(with(R"("rope_parameters": )" + lin + R"(, "rope_scaling": )" + lin).rope_scaling().factor, 2.0);
  std::string m = message_of<InvalidArgument>([&] {
    with(R"("rope_parameters": )" + lin + R"(, "rope_scaling": {"rope_type": "linear", "factor": 4.0})");
  });
  EXPECT_NE(m.find("differ"), std::string::npos) << m;
  // No rope_type: "default" (transformers 5), with or without theta; with scaling keys: refused.
  const ModelConfig theta_only = with(R"("rope_parameters": {"rope_theta": 1000000})");
  EXPECT_DOUBLE_EQ(theta_only.rope_theta(), 1e6);
  EXPECT_EQ(theta_only.rope_scaling().type, RopeScalingType::none);
  EXPECT_EQ(with(R"("rope_parameters": {})").rope_scaling().type, RopeScalingType::none);
  m = message_of<InvalidArgument>([&] { with(R"("rope_parameters": {"factor": 4.0})"); });
  EXPECT_NE(m.find("no rope_type"), std::string::npos) << m;
  // original_max_position_embeddings: an integer, also written as 8192.0; from the top level when
  // the RoPE object lacks it; a fraction, or two different values, refused.
  const std::string l3 = R"("rope_type": "llama3", "factor": 8, "low_freq_factor": 1, "high_freq_factor": 4)";
  EXPECT_EQ(with(R"("rope_scaling": {)" + l3 + R"(, "original_max_position_embeddings": 8192.0})")
                .rope_scaling().original_max_position_embeddings, 8192);
  EXPECT_EQ(with(R"("original_max_position_embeddings": 2048, "rope_scaling": {)" + l3 + "}")
                .rope_scaling().original_max_position_embeddings, 2048);
  EXPECT_EQ(with(R"("rope_scaling": {"rope_type": "yarn", "factor": 4, "original_max_position_embeddings": 1024.0})")
                .rope_scaling().original_max_position_embeddings, 1024);
  m = message_of<InvalidArgument>([&] {
    with(R"("rope_scaling": {)" + l3 + R"(, "original_max_position_embeddings": 8192.5})");
  });
  EXPECT_NE(m.find("positive integer"), std::string::npos) << m;
  m = message_of<InvalidArgument>([&] {
    with(R"("original_max_position_embeddings": 4096, "rope_scaling": {)" + l3 +
         R"(, "original_max_position_embeddings": 8192})");
  });
  EXPECT_NE(m.find("differs from the top-level"), std::string::npos) << m;
  // An explicit attention factor must be a factor.
  m = message_of<InvalidArgument>([&] {
    with(R"("rope_scaling": {"rope_type": "yarn", "factor": 4, "attention_factor": 0})");
  });
  EXPECT_NE(m.find("attention_factor must be > 0"), std::string::npos) << m;
}

TEST(RopeScalingConfig, JsonRoundTripKeepsTheScaling) {
  for (const char* text : {kLlama31, kLlama32V5, kSmolLm2V5}) {
    const ModelConfig c = config_from_json(text, "in.json");
    const ModelConfig back = config_from_json(config_to_json(c), "out.json");
    EXPECT_TRUE(back == c) << config_to_json(c);
  }
  const ModelConfig y = with(R"("rope_scaling": {"rope_type": "yarn", "factor": 4, "beta_fast": 16, "attention_factor": 1.2, "truncate": false})");
  EXPECT_TRUE(config_from_json(config_to_json(y), "out.json") == y) << config_to_json(y);
  // A different scaling is a different model (resume and checkpoint checks compare configs).
  EXPECT_FALSE(with(R"("rope_scaling": {"rope_type": "linear", "factor": 2})") ==
               with(R"("rope_scaling": {"rope_type": "linear", "factor": 4})"));
}

// The kernel's table (cos, sin of pos * inv_freq, times the amplitude, rounded to f32) against the
// reference's formulas, written separately from HF's code. Both compute in double: inv_freq
// agrees to a few ulps (relative 2^-50), so at pos < 2^17 the angles agree to < 2^-33 rad; the f32
// rounding of the table adds <= 2^-24 |amplitude| (half an ulp of a value below 2 is 2^-24 or less).
// A missing or wrong scaling moves some angle by O(1) at these positions.
void expect_table_matches_reference(const ModelConfig& c, const char* name) {
  const std::vector<int32_t> positions = {0, 1, 2, 7, 100, 4095, 8191, 8192, 16383, 32768,
                                          65535, 100000, 131071};
  Tensor pos = Tensor::empty({static_cast<int64_t>(positions.size())}, DType::i32, MemCategory::workspace);
  for (size_t i = 0; i < positions.size(); ++i) pos.data<int32_t>()[i] = positions[i];
  const kernels::RopeTable table(pos, c.head_dim(), c.rope_options());
  const reference::ReferenceRope ref = reference::reference_rope(c);
  ASSERT_EQ(static_cast<int64_t>(ref.inv_freq.size()), c.head_dim() / 2);
  const double bound = ref.amplitude * (std::ldexp(1.0, -24) + std::ldexp(1.0, -33));
  double worst = 0;
  for (size_t t = 0; t < positions.size(); ++t) {
    for (int64_t i = 0; i < c.head_dim() / 2; ++i) {
      const double angle = positions[t] * ref.inv_freq[static_cast<size_t>(i)];
      const double ec = std::fabs(table.cos_row(static_cast<int64_t>(t))[i] - ref.amplitude * std::cos(angle));
      const double es = std::fabs(table.sin_row(static_cast<int64_t>(t))[i] - ref.amplitude * std::sin(angle));
      worst = std::max({worst, ec, es});
      ASSERT_LE(ec, bound) << name << " pos " << positions[t] << " i " << i;
      ASSERT_LE(es, bound) << name << " pos " << positions[t] << " i " << i;
    }
  }
  std::printf("%s: worst |table - reference| %.3g (bound %.3g)\n", name, worst, bound);
}

TEST(RopeScalingTable, EveryTypeMatchesTheReferenceUpTo128K) {
  expect_table_matches_reference(config_from_json(kLlama31, "llama31"), "llama3 (Llama-3.1-8B)");
  expect_table_matches_reference(config_from_json(kLlama32V5, "llama32"), "llama3 (Llama-3.2-1B)");
  expect_table_matches_reference(config_from_json(kSmolLm2V5, "smollm2"), "default (SmolLM2)");
  expect_table_matches_reference(with(R"("rope_theta": 10000, "rope_scaling": {"rope_type": "linear", "factor": 4})"), "linear");
  expect_table_matches_reference(
      with(R"("rope_theta": 1000000, "rope_scaling": {"rope_type": "yarn", "factor": 4, "original_max_position_embeddings": 32768})"),
      "yarn (Qwen2.5 style)");
  expect_table_matches_reference(
      with(R"("rope_scaling": {"rope_type": "yarn", "factor": 40, "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707, "original_max_position_embeddings": 64, "truncate": false})"),
      "yarn (mscale, untruncated)");
}

// Properties of the published schemes that neither implementation's code states directly.
TEST(RopeScalingTable, Llama3KeepsHighFrequenciesAndDividesLowOnes) {
  const ModelConfig c = config_from_json(kLlama31, "llama31");
  kernels::RopeOptions plain = c.rope_options();
  plain.scaling = {};
  const std::vector<double> base = kernels::rope_inv_freq(128, plain);
  const std::vector<double> scaled = kernels::rope_inv_freq(128, c.rope_options());
  int kept = 0, divided = 0, blended = 0;
  for (size_t i = 0; i < base.size(); ++i) {
    const double wavelen = 2 * 3.141592653589793 / base[i];
    if (wavelen < 8192.0 / 4) {
      EXPECT_EQ(scaled[i], base[i]) << i;
      ++kept;
    } else if (wavelen > 8192.0) {
      EXPECT_DOUBLE_EQ(scaled[i], base[i] / 8) << i;
      ++divided;
    } else {
      EXPECT_LT(scaled[i], base[i]) << i;
      EXPECT_GT(scaled[i], base[i] / 8) << i;
      ++blended;
    }
    if (i > 0) {
      EXPECT_LT(scaled[i], scaled[i - 1]) << "frequencies must stay decreasing at " << i;
    }
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(divided, 0);
  EXPECT_GT(blended, 0);
}

// yarn's published shape: dimensions below the correction range keep their frequency, those above
// it are divided by the factor, those inside lie between (and decrease); cos/sin carry 0.1 ln(s)+1.
TEST(RopeScalingTable, YarnKeepsFastDimensionsAndInterpolatesSlowOnes) {
  const ModelConfig c = with(
      R"("rope_theta": 1000000, "rope_scaling": {"rope_type": "yarn", "factor": 4, "original_max_position_embeddings": 32768})");
  kernels::RopeOptions plain = c.rope_options();
  plain.scaling = {};
  const int64_t d = 128;
  const std::vector<double> base = kernels::rope_inv_freq(d, plain);
  const std::vector<double> scaled = kernels::rope_inv_freq(d, c.rope_options());
  // A dimension turning more than beta_fast = 32 times over the original context is kept, fewer
  // than beta_slow = 1 times interpolated (with a margin of one dimension for the rounding).
  int kept = 0, divided = 0, between = 0;
  for (size_t i = 0; i < base.size(); ++i) {
    const double turns = 32768.0 * base[i] / (2 * 3.141592653589793);
    if (turns > 32 * 1.25) {
      EXPECT_EQ(scaled[i], base[i]) << i;
      ++kept;
    } else if (turns < 1 / 1.25) {
      EXPECT_DOUBLE_EQ(scaled[i], base[i] / 4) << i;
      ++divided;
    } else {
      EXPECT_LE(scaled[i], base[i]) << i;
      EXPECT_GE(scaled[i], base[i] / 4) << i;
      ++between;
    }
    if (i > 0) {
      EXPECT_LT(scaled[i], scaled[i - 1]) << i;
    }
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(divided, 0);
  EXPECT_GT(between, 0);
  EXPECT_DOUBLE_EQ(kernels::rope_amplitude(c.rope_options()), 0.1 * std::log(4.0) + 1);
}

TEST(RopeScalingTable, LinearIsPositionDividedByFactor) {
  const ModelConfig c = with(R"("rope_scaling": {"rope_type": "linear", "factor": 4})");
  const ModelConfig plain = with(R"("rope_scaling": null)");
  Tensor p4 = Tensor::empty({1}, DType::i32, MemCategory::workspace);
  Tensor p1 = Tensor::empty({1}, DType::i32, MemCategory::workspace);
  p4.data<int32_t>()[0] = 4000;
  p1.data<int32_t>()[0] = 1000;
  const kernels::RopeTable scaled(p4, c.head_dim(), c.rope_options());
  const kernels::RopeTable unscaled(p1, plain.head_dim(), plain.rope_options());
  for (int64_t i = 0; i < c.head_dim() / 2; ++i) {
    EXPECT_NEAR(scaled.cos_row(0)[i], unscaled.cos_row(0)[i], 1e-6) << i;
    EXPECT_NEAR(scaled.sin_row(0)[i], unscaled.sin_row(0)[i], 1e-6) << i;
  }
}

}  // namespace
}  // namespace tsp::model
