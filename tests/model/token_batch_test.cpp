// The one token-batch check (model/token_batch.h): every layout's forward and the single-rank
// model call it, so its cases are pinned here once.
#include "tsp/model/token_batch.h"

#include <gtest/gtest.h>

#include <string>

#include "tsp/core/error.h"
#include "tsp/model/model_config.h"

namespace tsp::model {
namespace {

// [rows, cols] i32 filled with ids 0, 1, 2, ... modulo V.
Tensor ids(int64_t rows, int64_t cols, int64_t V) {
  Tensor t = Tensor::empty({rows, cols}, DType::i32, MemCategory::workspace);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<int32_t>()[i] = static_cast<int32_t>(i % V);
  return t;
}

template <typename E, typename F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "(no exception)";
}

TEST(TokenBatch, AcceptsIdsTargetsAndTheIgnoreIndex) {
  const ModelConfig c = preset("tiny");  // V = 320, max positions 1024
  const Tensor tok = ids(2, 8, c.vocab_size());
  Tensor tgt = ids(2, 8, c.vocab_size());
  tgt.data<int32_t>()[3] = kIgnoreIndex;
  EXPECT_NO_THROW(check_token_batch(c, tok, tgt, "t"));
}

TEST(TokenBatch, NamesTheCallerTheProblemAndThePosition) {
  const ModelConfig c = preset("tiny");
  Tensor tok = ids(2, 8, c.vocab_size());
  const Tensor tgt = ids(2, 8, c.vocab_size());
  tok.data<int32_t>()[11] = 320;
  const std::string m = message_of<InvalidArgument>([&] { check_token_batch(c, tok, tgt, "who"); });
  EXPECT_NE(m.find("who: token id 320 at [1, 3] is outside the vocabulary [0, 320)"),
            std::string::npos) << m;
  tok.data<int32_t>()[11] = 0;
  Tensor bad_tgt = ids(2, 8, c.vocab_size());
  bad_tgt.data<int32_t>()[0] = -1;
  EXPECT_NE(message_of<InvalidArgument>([&] { check_token_batch(c, tok, bad_tgt, "who"); })
                .find("target id -1 at [0, 0]"),
            std::string::npos);
  EXPECT_NE(message_of<ShapeError>([&] { check_token_batch(c, tok, ids(2, 4, 320), "who"); })
                .find("targets must have the tokens' shape"),
            std::string::npos);
  EXPECT_THROW(check_token_batch(c, Tensor(), tgt, "who"), ShapeError);
  const Tensor wide = Tensor::copy_of(tok, DType::i64, MemCategory::workspace);
  EXPECT_THROW(check_token_batch(c, wide, tgt, "who"), DTypeError);
  EXPECT_THROW(check_token_batch(c, tok.transpose(0, 1), tgt.transpose(0, 1), "who"), LayoutError);
}

// A rank's columns of longer sequences: the positions limit applies to the whole sequence.
TEST(TokenBatch, MaxPositionsApplyToTheWholeSequenceNotARanksColumns) {
  const ModelConfig c = preset("tiny");
  const Tensor tok = ids(1, 256, c.vocab_size());
  EXPECT_NO_THROW(check_token_batch(c, tok, tok, "tsp", 1024));
  const std::string m =
      message_of<InvalidArgument>([&] { check_token_batch(c, tok, tok, "tsp", 2048); });
  EXPECT_NE(m.find("tsp: sequence length 2048 exceeds max_position_embeddings 1024"),
            std::string::npos) << m;
}

}  // namespace
}  // namespace tsp::model
