// The one check of a batch of token ids and targets before a step allocates anything: used by the
// single-rank model and by every layout, so a bad batch gets the same message everywhere.
#pragma once

#include <cstdint>

#include "tsp/core/tensor.h"
#include "tsp/model/model_config.h"

namespace tsp::model {

// A target that counts for nothing (padding, a document boundary): the loss skips it.
inline constexpr int32_t kIgnoreIndex = -100;

// Checks a [B, S_cols] batch of token ids and targets (the same non-empty shape, contiguous i32,
// ids in [0, V), targets in [0, V) or kIgnoreIndex) of sequences of length `seq` (<= 0: S_cols,
// the batch holds whole sequences; otherwise a rank's columns of longer sequences), with
// seq <= max_position_embeddings. Throws ShapeError / DTypeError / LayoutError / InvalidArgument
// naming `who`, the first problem and, for an id, its [row, column]. Allocates nothing.
void check_token_batch(const ModelConfig& config, const Tensor& tokens, const Tensor& targets,
                       const char* who, int64_t seq = 0);

}  // namespace tsp::model
