// Token embedding lookup from a (possibly vocabulary-sharded) table, and its scatter-add backward.
// Table rows [row_offset, row_offset + rows) are local; ids outside are an error or skipped.
#pragma once

#include <cstdint>

#include "tsp/core/tensor.h"

namespace tsp::kernels {

enum class OutOfRangeIds {
  error,  // any id outside [row_offset, row_offset + rows) throws InvalidArgument (nothing written)
  skip,   // such tokens get a zero output row and contribute no gradient (another rank owns them)
};

struct EmbeddingOptions {
  int64_t row_offset = 0;  // global id of the table's first row (vocabulary shard start)
  OutOfRangeIds out_of_range = OutOfRangeIds::error;
};

// ids: [N] i32|i64 (any stride); table: [rows, h] f32|bf16 (unit inner stride);
// out: [N, h] f32|bf16 (unit inner stride), OVERWRITTEN: out[i] = table[ids[i] - row_offset].
void embedding_forward(const Tensor& ids, const Tensor& table, const Tensor& out,
                       const EmbeddingOptions& options = {});

// dtable: [rows, h] f32, ACCUMULATED: dtable[ids[i] - row_offset] += dout[i] for every local id
// (repeated ids add up). dout: [N, h] f32|bf16. Deterministic: tokens are added in index order.
void embedding_backward(const Tensor& ids, const Tensor& dout, const Tensor& dtable,
                        const EmbeddingOptions& options = {});

}  // namespace tsp::kernels
