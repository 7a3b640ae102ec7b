// Tests of the HF weight name list: names, [out, in] shapes, order, tied vs. untied heads.
#include "tsp/model/weight_names.h"

#include <gtest/gtest.h>

#include <set>

#include "tsp/core/error.h"

namespace tsp::model {
namespace {

ModelConfig gqa_config(bool tied) {
  ModelConfigFields f;
  f.hidden_size = 32;
  f.intermediate_size = 96;
  f.num_hidden_layers = 3;
  f.num_attention_heads = 4;
  f.num_key_value_heads = 2;
  f.vocab_size = 50;
  f.tie_word_embeddings = tied;
  return ModelConfig(f);
}

TEST(WeightNames, UntiedListHasEveryHfName) {
  const std::vector<WeightSpec> specs = weight_specs(gqa_config(false));
  ASSERT_EQ(specs.size(), 1u + 9u * 3u + 1u + 1u);
  EXPECT_EQ(specs.front().name, "model.embed_tokens.weight");
  EXPECT_EQ(specs.front().shape, (Shape{50, 32}));
  EXPECT_EQ(specs[1].name, "model.layers.0.input_layernorm.weight");
  EXPECT_EQ(specs[1].shape, Shape{32});
  const std::vector<std::pair<std::string, Shape>> layer1 = {
      {"model.layers.1.input_layernorm.weight", Shape{32}},
      {"model.layers.1.self_attn.q_proj.weight", Shape{32, 32}},
      {"model.layers.1.self_attn.k_proj.weight", Shape{16, 32}},  // H_kv * d = 2 * 8
      {"model.layers.1.self_attn.v_proj.weight", Shape{16, 32}},
      {"model.layers.1.self_attn.o_proj.weight", Shape{32, 32}},
      {"model.layers.1.post_attention_layernorm.weight", Shape{32}},
      {"model.layers.1.mlp.gate_proj.weight", Shape{96, 32}},
      {"model.layers.1.mlp.up_proj.weight", Shape{96, 32}},
      {"model.layers.1.mlp.down_proj.weight", Shape{32, 96}},
  };
  for (size_t i = 0; i < layer1.size(); ++i) {
    const WeightSpec& s = specs[1 + 9 + i];
    EXPECT_EQ(s.name, layer1[i].first);
    EXPECT_EQ(s.shape, layer1[i].second) << s.name;
    EXPECT_EQ(s.layer, 1);
  }
  EXPECT_EQ(specs[specs.size() - 2].name, "model.norm.weight");
  EXPECT_EQ(specs.back().name, "lm_head.weight");
  EXPECT_EQ(specs.back().shape, (Shape{50, 32}));
  EXPECT_EQ(specs.back().layer, -1);
  std::set<std::string> unique;
  for (const WeightSpec& s : specs) unique.insert(s.name);
  EXPECT_EQ(unique.size(), specs.size());
}

// Qwen2: each layer lists its q, k, v biases after v_proj ([H d], [H_kv d], [H_kv d]), 1-D and
// neither norm gains nor layer-less; the total is config.total_params().
TEST(WeightNames, Qwen2ListsTheQkvBiases) {
  ModelConfigFields f = gqa_config(true).fields();
  f.model_type = ModelType::qwen2;
  const ModelConfig c(f);
  const std::vector<WeightSpec> specs = weight_specs(c);
  ASSERT_EQ(specs.size(), 1u + 12u * 3u + 1u);
  const std::vector<std::pair<std::string, Shape>> biases = {
      {"model.layers.2.self_attn.q_proj.bias", Shape{32}},
      {"model.layers.2.self_attn.k_proj.bias", Shape{16}},
      {"model.layers.2.self_attn.v_proj.bias", Shape{16}},
      {"model.layers.2.self_attn.o_proj.weight", Shape{32, 32}},
  };
  for (size_t i = 0; i < biases.size(); ++i) {
    const WeightSpec& s = specs[1 + 2 * 12 + 4 + i];
    EXPECT_EQ(s.name, biases[i].first);
    EXPECT_EQ(s.shape, biases[i].second) << s.name;
    EXPECT_EQ(s.layer, 2);
    EXPECT_EQ(is_bias_weight(s.kind), i < 3) << s.name;
    EXPECT_FALSE(is_norm_weight(s.kind)) << s.name;
  }
  EXPECT_EQ(total_weight_elements(specs), c.total_params());
  EXPECT_EQ(weight_name(WeightKind::k_bias, 7), "model.layers.7.self_attn.k_proj.bias");
}

TEST(WeightNames, TiedHasNoLmHead) {
  const std::vector<WeightSpec> specs = weight_specs(gqa_config(true));
  ASSERT_EQ(specs.size(), 1u + 9u * 3u + 1u);
  EXPECT_EQ(specs.back().name, "model.norm.weight");
  for (const WeightSpec& s : specs) EXPECT_NE(s.kind, WeightKind::lm_head);
  EXPECT_EQ(total_weight_elements(specs), gqa_config(true).total_params());
}

TEST(WeightNames, NameArgumentsAreChecked) {
  EXPECT_EQ(weight_name(WeightKind::down_proj, 12), "model.layers.12.mlp.down_proj.weight");
  EXPECT_EQ(weight_name(WeightKind::lm_head), "lm_head.weight");
  EXPECT_THROW(weight_name(WeightKind::q_proj), InvalidArgument);
  EXPECT_THROW(weight_name(WeightKind::final_norm, 0), InvalidArgument);
  EXPECT_TRUE(is_norm_weight(WeightKind::final_norm));
  EXPECT_FALSE(is_norm_weight(WeightKind::o_proj));
}

}  // namespace
}  // namespace tsp::model
