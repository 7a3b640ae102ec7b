// Learning-rate schedule: linear warmup to the peak, then cosine decay to a floor.
#pragma once

#include <cstdint>

namespace tsp::train {

struct LrSchedule {
  double peak_lr = 1e-3;
  double min_lr = 0;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
};

// Learning rate of optimizer step `step` (1-based: the first update is step 1):
//   step <= warmup:            peak * step / warmup
//   warmup < step <= total:    min + (peak - min) * (1 + cos(pi * p)) / 2,
//                              p = (step - warmup) / (total - warmup)
//   step > total:              min
// so the warmup ends exactly at the peak and the last step of the run uses min_lr.
double lr_at(const LrSchedule& schedule, int64_t step);

}  // namespace tsp::train
