// Tests of ModelWeights: deterministic, dtype-independent initialisation; names in weight_specs
// order; tied models without lm_head; lookup errors; zero and copy_from.
#include "tsp/model/model_weights.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "tsp/core/error.h"

namespace tsp::model {
namespace {

ModelConfig small_config(bool tied) {
  ModelConfigFields f;
  f.hidden_size = 32;
  f.intermediate_size = 64;
  f.num_hidden_layers = 2;
  f.num_attention_heads = 4;
  f.num_key_value_heads = 2;
  f.vocab_size = 37;
  f.tie_word_embeddings = tied;
  return ModelConfig(f);
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  return std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST(ModelWeights, InitializeIsDeterministicAndSeedDependent) {
  const ModelConfig c = small_config(false);
  const ModelWeights a = ModelWeights::initialize(c, DType::f32, 7);
  const ModelWeights b = ModelWeights::initialize(c, DType::f32, 7);
  const ModelWeights other = ModelWeights::initialize(c, DType::f32, 8);
  const auto na = a.named(), nb = b.named(), no = other.named();
  ASSERT_EQ(na.size(), nb.size());
  for (size_t i = 0; i < na.size(); ++i) {
    EXPECT_TRUE(bitwise_equal(na[i].second, nb[i].second)) << na[i].first;
    if (na[i].second.rank() == 2) {  // matrices are random, gains are all 1
      EXPECT_FALSE(bitwise_equal(na[i].second, no[i].second)) << na[i].first;
    }
  }
}

TEST(ModelWeights, InitializeStatistics) {
  const ModelWeights w = ModelWeights::initialize(small_config(false), DType::f32, 3);
  for (const auto& [name, t] : w.named()) {
    Tensor f = t.to_f32();
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < f.numel(); ++i) {
      sum += f.data<float>()[i];
      sq += static_cast<double>(f.data<float>()[i]) * f.data<float>()[i];
    }
    const double n = static_cast<double>(f.numel());
    if (t.rank() == 1) {
      EXPECT_EQ(sum, n) << name;  // norm gains are exactly 1
      EXPECT_EQ(sq, n) << name;
    } else {
      // N(0, 0.02): the sample std of n >= 512 draws is within ~6% of 0.02 (4 sigma).
      EXPECT_NEAR(std::sqrt(sq / n), 0.02, 0.02 * 4 / std::sqrt(2 * n)) << name;
      EXPECT_NEAR(sum / n, 0.0, 0.02 * 4 / std::sqrt(n)) << name;
    }
  }
}

TEST(ModelWeights, Bf16IsRoundedF32AndStreamsAreIndependent) {
  const ModelConfig untied = small_config(false), tied = small_config(true);
  const ModelWeights f = ModelWeights::initialize(untied, DType::f32, 11);
  const ModelWeights b = ModelWeights::initialize(untied, DType::bf16, 11);
  const auto nf = f.named(), nb = b.named();
  for (size_t i = 0; i < nf.size(); ++i) {
    EXPECT_EQ(nb[i].second.dtype(), DType::bf16);
    const Tensor rounded = Tensor::copy_of(nf[i].second, DType::bf16, MemCategory::workspace);
    EXPECT_TRUE(bitwise_equal(nb[i].second, rounded)) << nf[i].first;
  }
  // A tensor's values depend only on (seed, its spec index): the tied model (same specs minus the
  // trailing lm_head) has identical values for every shared name.
  const ModelWeights t = ModelWeights::initialize(tied, DType::f32, 11);
  for (const auto& [name, tensor] : t.named())
    EXPECT_TRUE(bitwise_equal(tensor, f.get(name))) << name;
}

TEST(ModelWeights, NamedFollowsWeightSpecsAndSharesStorage) {
  for (bool tied : {false, true}) {
    const ModelConfig c = small_config(tied);
    ModelWeights w(c, DType::f32, MemCategory::grads);
    const auto specs = weight_specs(c);
    const auto named = w.named();
    ASSERT_EQ(named.size(), specs.size());
    for (size_t i = 0; i < specs.size(); ++i) {
      EXPECT_EQ(named[i].first, specs[i].name);
      EXPECT_EQ(named[i].second.shape(), specs[i].shape) << specs[i].name;
      EXPECT_EQ(named[i].second.category(), MemCategory::grads);
      EXPECT_EQ(named[i].second.item_f32(0), 0.f);
    }
    // Role accessors and names are the same storage.
    w.layers()[1].up.fill(3.f);
    EXPECT_EQ(w.get("model.layers.1.mlp.up_proj.weight").item_f32(5), 3.f);
    w.get("model.norm.weight").fill(2.f);
    EXPECT_EQ(w.final_norm().item_f32(0), 2.f);
    if (tied) {
      EXPECT_EQ(w.lm_head().raw(), w.embed().raw());
      EXPECT_THROW(w.get("lm_head.weight"), InvalidArgument);
    } else {
      EXPECT_NE(w.lm_head().raw(), w.embed().raw());
      EXPECT_EQ(w.get("lm_head.weight").raw(), w.lm_head().raw());
    }
  }
}

TEST(ModelWeights, UnknownNameThrowsWithTheName) {
  const ModelWeights w(small_config(false), DType::f32, MemCategory::weights);
  try {
    (void)w.get("model.layers.9.mlp.up_proj.weight");
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.9.mlp.up_proj.weight"), std::string::npos);
  }
}

TEST(ModelWeights, ZeroAndCopyFromConvert) {
  const ModelConfig c = small_config(false);
  const ModelWeights src = ModelWeights::initialize(c, DType::f32, 5);
  ModelWeights dst(c, DType::bf16, MemCategory::weights);
  dst.copy_from(src);
  const ModelWeights ref = ModelWeights::initialize(c, DType::bf16, 5);
  for (size_t i = 0; i < dst.named().size(); ++i)
    EXPECT_TRUE(bitwise_equal(dst.named()[i].second, ref.named()[i].second)) << dst.named()[i].first;
  dst.zero();
  for (const auto& [name, t] : dst.named())
    for (int64_t i = 0; i < t.numel(); ++i) ASSERT_EQ(t.item_f32(i), 0.f) << name;
  ModelWeights other(small_config(true), DType::f32, MemCategory::weights);
  EXPECT_THROW(other.copy_from(src), InvalidArgument);
  EXPECT_THROW(ModelWeights(c, DType::i32, MemCategory::weights), DTypeError);
}

}  // namespace
}  // namespace tsp::model
