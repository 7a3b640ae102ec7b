// The one schedule of a training step over micro-batches: one-forward-one-backward (1F1B) through
// this rank's pipeline stage. Without a pipeline it is each micro-batch's forward then backward,
// in order, so a layout has one forward_backward whatever its pp degree.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "tsp/model/step_executor.h"
#include "tsp/parallel/comm_clock.h"
#include "tsp/parallel/pipeline_stage.h"

namespace tsp::parallel {

// Micro-batch i's step strategy. Built when the micro-batch's forward starts, destroyed after its
// backward: at most min(P - stage, M) are alive at once, which is what the planner counts.
using StepFactory = std::function<std::unique_ptr<model::StepStrategy>(int64_t micro_batch)>;

// 1F1B (PipeDream-Flush, Megatron's non-interleaved schedule) on stage s of P over M micro-batches:
// min(P - s - 1, M) warm-up forwards, then alternating forward and backward, then the remaining
// backwards. Activations go to the next stage and gradients come back through pipeline_stage.h.
// Gradients of grad_scale * loss are accumulated by the strategies. Returns the loss of every
// micro-batch on the last stage (zero on the others). Collective over stage.pp.
// The time blocked in the stage-to-stage transfers is added to `clock` (CommSite::pipeline).
model::LossSum run_pipeline_forward_backward(const PipelineStage& stage, int64_t micro_batches,
                                             const StepFactory& make_step, bool recompute,
                                             float grad_scale, CommClock* clock = nullptr);

// Forward only (evaluation) of one batch through the stages: receive x, run the stage, send it on.
// Returns the loss on the last stage (zero on the others). Collective over stage.pp.
model::LossSum run_pipeline_forward(const PipelineStage& stage, model::StepStrategy& step,
                                    CommClock* clock = nullptr);

}  // namespace tsp::parallel
