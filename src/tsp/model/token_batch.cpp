// The one check of a batch of token ids and targets (token_batch.h).

#include "tsp/model/token_batch.h"

#include <string>

#include "tsp/core/check.h"

namespace tsp::model {

void check_token_batch(const ModelConfig& config, const Tensor& tokens, const Tensor& targets,
                       const char* who, int64_t seq) {
  const auto describe = [](const Tensor& t) {
    return t.defined() ? t.describe() : std::string("undefined");
  };
  TSP_CHECK_SHAPE(tokens.defined() && tokens.rank() == 2 && tokens.dim(0) > 0 && tokens.dim(1) > 0,
                  who, ": tokens must be a non-empty [B, S], got ", describe(tokens));
  TSP_CHECK_SHAPE(targets.defined() && targets.shape() == tokens.shape(), who,
                  ": targets must have the tokens' shape ", tokens.shape(), ", got ",
                  describe(targets));
  TSP_CHECK_DTYPE(tokens.dtype() == DType::i32 && targets.dtype() == DType::i32, who,
                  ": tokens and targets must be i32, got ", tokens.dtype(), " and ", targets.dtype());
  TSP_CHECK_T(LayoutError, tokens.is_contiguous() && targets.is_contiguous(), who,
              ": tokens and targets must be contiguous, got ", tokens.describe(), " and ",
              targets.describe());
  const int64_t cols = tokens.dim(1);
  const int64_t S = seq > 0 ? seq : cols;
  TSP_CHECK(S <= config.max_position_embeddings(), who, ": sequence length ", S,
            " exceeds max_position_embeddings ", config.max_position_embeddings());
  const int64_t V = config.vocab_size();
  const int32_t* tok = tokens.data<int32_t>();
  const int32_t* tgt = targets.data<int32_t>();
  for (int64_t i = 0; i < tokens.numel(); ++i) {
    TSP_CHECK(tok[i] >= 0 && tok[i] < V, who, ": token id ", tok[i], " at [", i / cols, ", ",
              i % cols, "] is outside the vocabulary [0, ", V, ")");
    TSP_CHECK(tgt[i] == kIgnoreIndex || (tgt[i] >= 0 && tgt[i] < V), who, ": target id ", tgt[i],
              " at [", i / cols, ", ", i % cols, "] is outside the vocabulary [0, ", V,
              ") and is not the ignore index ", kIgnoreIndex);
  }
}

}  // namespace tsp::model
