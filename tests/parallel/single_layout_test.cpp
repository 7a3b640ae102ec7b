// The degree-1 layout: the plain model behind the Layout interface. Its loss and gradients are the
// Transformer's bit for bit and its shards are the whole tensors (views, in weight_specs order).
#include "tsp/parallel/single_layout.h"

#include <gtest/gtest.h>

#include <cstring>

#include "parallel/layout_test_util.h"
#include "tsp/comm/self/self_backend.h"

namespace tsp::parallel {
namespace {

model::ModelConfig tiny_config() {
  model::ModelConfigFields f;
  f.hidden_size = 32;
  f.intermediate_size = 64;
  f.num_hidden_layers = 2;
  f.num_attention_heads = 4;
  f.num_key_value_heads = 2;
  f.vocab_size = 40;
  f.max_position_embeddings = 64;
  return model::ModelConfig(f);
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST(SingleLayout, EqualsTheTransformerBitForBit) {
  comm::Communicator self = comm::self_communicator();
  const model::ModelConfig config = tiny_config();
  for (DType dtype : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dtype));
    const model::TransformerOptions options{.dtype = dtype, .recompute = dtype == DType::bf16};
    SingleLayout layout(self, config, options, /*seed=*/7);
    const model::ModelWeights w = model::ModelWeights::initialize(config, dtype, 7);
    model::ModelWeights g(config, DType::f32, MemCategory::grads);
    model::Transformer model(config, options);
    const testing::Batch b = testing::random_batch(2, 16, config.vocab_size(), 3);
    layout.zero_grads();
    const model::LossSum got = layout.forward_backward(b.tokens, b.targets, 0.25f);
    const model::LossSum want = model.forward_backward(w, b.tokens, b.targets, g, 0.25f);
    EXPECT_EQ(got.loss_sum, want.loss_sum);
    EXPECT_EQ(got.n_valid, want.n_valid);
    EXPECT_EQ(layout.forward(b.tokens, b.targets).loss_sum, model.forward(w, b.tokens, b.targets).loss_sum);
    const auto wn = w.named(), gn = g.named();
    ASSERT_EQ(layout.weights().size(), wn.size());
    for (size_t i = 0; i < wn.size(); ++i) {
      const ParamShard& ws = layout.weights()[i];
      const ParamShard& gs = layout.grads()[i];
      EXPECT_EQ(ws.name, wn[i].first);
      EXPECT_EQ(ws.kind, ShardKind::replicated);
      EXPECT_TRUE(ws.full_shape == wn[i].second.shape()) << ws.name;
      EXPECT_TRUE(same_bytes(ws.local, wn[i].second)) << ws.name;
      EXPECT_TRUE(same_bytes(gs.local, gn[i].second)) << gs.name;
      // Views of the model's own tensors, not copies.
      EXPECT_EQ(ws.local.raw(), layout.model_weights().get(ws.name).raw()) << ws.name;
      EXPECT_EQ(gs.local.raw(), layout.model_grads().get(gs.name).raw()) << gs.name;
    }
    layout.reduce_grads();  // nothing to reduce: gradients unchanged
    EXPECT_TRUE(same_bytes(layout.grads()[0].local, gn[0].second));
    EXPECT_EQ(layout.comm_wait_seconds(), 0.0);
    EXPECT_EQ(layout.predicted_activation_peak_bytes(2, 16),
              model::predicted_activation_peak_bytes(config, options, 2, 16));
  }
}

TEST(SingleLayout, WholeShardsCoverEveryTensorOnce) {
  const model::ModelConfig config = tiny_config();
  const model::ModelWeights w = model::ModelWeights::initialize(config, DType::f32, 1);
  const std::vector<ParamShard> shards = whole_shards(w);
  EXPECT_EQ(local_elements(shards), config.total_params());
  for (const ParamShard& s : shards) EXPECT_TRUE(s.local_shape() == s.full_shape) << s.name;
}

}  // namespace
}  // namespace tsp::parallel
