// The step context of the sequence-sharded layouts (TSP, TP+SP, FSDP over SP): the block context
// over this rank's zigzag columns, plus the gathered positions and the clock of blocked waits.
#pragma once

#include <cstdint>

#include "tsp/core/tensor.h"
#include "tsp/model/decoder_block.h"
#include "tsp/model/model_config.h"
#include "tsp/parallel/comm_clock.h"
#include "tsp/parallel/zigzag.h"

namespace tsp::parallel {

// Each layout's context (TspContext, TpSpContext, FsdpSpContext) adds its communicators and shard
// sizes to this; the geometry, positions and RoPE table are built here once.
class ZigzagContext : public model::BlockContext {
 public:
  const Zigzag& zigzag() const { return zigzag_; }
  // [S] i32: every rank's local positions in rank order (the order of a K/V all-gather).
  const Tensor& gathered_positions() const { return gathered_pos_; }
  CommClock* clock() const { return clock_; }

 protected:
  // zigzag: this rank's partition of the sequence; validate the layout's sizes before building it
  // so that nothing is allocated for a run that cannot go. Waits are timed into `clock` when given.
  ZigzagContext(const model::ModelConfig& config, DType dtype, int64_t batch, const Zigzag& zigzag,
                CommClock* clock, const char* who);

 private:
  Zigzag zigzag_;
  Tensor gathered_pos_;
  CommClock* clock_;
};

}  // namespace tsp::parallel
