// 1F1B over the stage passes of model/step_executor.h, with the stage-to-stage transfers of
// pipeline_stage.h; the order of sends and receives pairs neighbours so no stage waits forever.
#include "tsp/parallel/pipeline_schedule.h"

#include <algorithm>
#include <deque>

#include "tsp/core/check.h"

namespace tsp::parallel {

namespace {

// A micro-batch between its forward and its backward.
struct InFlight {
  std::unique_ptr<model::StepStrategy> step;
  std::unique_ptr<model::StagePass> pass;
};

}  // namespace

model::LossSum run_pipeline_forward_backward(const PipelineStage& stage, int64_t micro_batches,
                                             const StepFactory& make_step, bool recompute,
                                             float grad_scale, CommClock* clock) {
  TSP_CHECK(micro_batches >= 1, "pipeline: needs at least one micro-batch, got ", micro_batches);
  const int64_t warmup = std::min<int64_t>(stage.stages() - stage.index() - 1, micro_batches);
  const int64_t steady = micro_batches - warmup;
  std::deque<InFlight> in_flight;  // oldest first; deque keeps references valid on push/pop
  model::LossSum loss;

  // Starts micro-batch i: builds its strategy and pass (nothing runs yet).
  auto start = [&](int64_t i) -> InFlight& {
    InFlight f;
    f.step = make_step(i);
    f.pass = std::make_unique<model::StagePass>(*f.step, stage.range, recompute, grad_scale);
    in_flight.push_back(std::move(f));
    return in_flight.back();
  };
  // The input of a started micro-batch on a stage that receives it.
  auto receive_input = [&](const InFlight& f) {
    if (stage.first()) return Tensor();
    ScopedCommWait wait(clock, CommSite::pipeline);
    return recv_forward(stage, f.step->residual_shape(), f.step->residual_dtype());
  };
  // Backward of the oldest micro-batch in flight; returns the gradient for the previous stage.
  auto finish_oldest = [&](Tensor dy) {
    InFlight f = std::move(in_flight.front());
    in_flight.pop_front();
    Tensor dx = f.pass->backward(std::move(dy));
    loss.loss_sum += f.pass->loss().loss_sum;
    loss.n_valid += f.pass->loss().n_valid;
    return dx;
  };

  for (int64_t i = 0; i < warmup; ++i) {
    InFlight& f = start(i);
    const Tensor y = f.pass->forward(receive_input(f));
    ScopedCommWait wait(clock, CommSite::pipeline);
    send_forward(stage, y);  // warm-up stages are never the last
  }
  Tensor x;
  if (steady > 0) x = receive_input(start(warmup));
  for (int64_t j = 0; j < steady; ++j) {
    const Tensor y = in_flight.back().pass->forward(std::move(x));
    Tensor dy;
    if (!stage.last()) {
      ScopedCommWait wait(clock, CommSite::pipeline);
      dy = send_forward_recv_backward(stage, y, in_flight.front().step->residual_shape());
    }
    const Tensor dx = finish_oldest(dy);
    if (j == steady - 1) {
      if (!stage.first()) {
        ScopedCommWait wait(clock, CommSite::pipeline);
        send_backward(stage, dx);
      }
      break;
    }
    InFlight& next = start(warmup + j + 1);
    if (!stage.first()) {
      ScopedCommWait wait(clock, CommSite::pipeline);
      x = send_backward_recv_forward(stage, dx, next.step->residual_shape(), next.step->residual_dtype());
    }
  }
  for (int64_t i = 0; i < warmup; ++i) {
    Tensor dy;
    {
      ScopedCommWait wait(clock, CommSite::pipeline);
      dy = recv_backward(stage, in_flight.front().step->residual_shape());
    }
    const Tensor dx = finish_oldest(dy);
    if (!stage.first()) {
      ScopedCommWait wait(clock, CommSite::pipeline);
      send_backward(stage, dx);
    }
  }
  TSP_ASSERT(in_flight.empty(), "pipeline: ", in_flight.size(), " micro-batches left in flight");
  return loss;
}

model::LossSum run_pipeline_forward(const PipelineStage& stage, model::StepStrategy& step, CommClock* clock) {
  Tensor x;
  if (!stage.first()) {
    ScopedCommWait wait(clock, CommSite::pipeline);
    x = recv_forward(stage, step.residual_shape(), step.residual_dtype());
  }
  model::LossSum loss;
  const Tensor y = model::run_stage_forward(step, stage.range, x, loss);
  if (!stage.last()) {
    ScopedCommWait wait(clock, CommSite::pipeline);
    send_forward(stage, y);
  }
  return loss;
}

}  // namespace tsp::parallel
