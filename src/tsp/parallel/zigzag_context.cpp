// The step context of the sequence-sharded layouts (zigzag_context.h).

#include "tsp/parallel/zigzag_context.h"

namespace tsp::parallel {

ZigzagContext::ZigzagContext(const model::ModelConfig& config, DType dtype, int64_t batch,
                             const Zigzag& zigzag, CommClock* clock, const char* who)
    : model::BlockContext(config, dtype, batch, zigzag.seq(),
                          (check_step(dtype, batch, who), zigzag.local_positions()), who),
      zigzag_(zigzag),
      gathered_pos_(zigzag.gathered_positions()),
      clock_(clock) {}

}  // namespace tsp::parallel
