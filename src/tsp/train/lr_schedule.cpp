#include "tsp/train/lr_schedule.h"

#include <cmath>
#include <numbers>

#include "tsp/core/check.h"

namespace tsp::train {

double lr_at(const LrSchedule& s, int64_t step) {
  TSP_CHECK_GE(step, int64_t{1}, "lr_at: steps are 1-based");
  if (step <= s.warmup_steps) {
    return s.peak_lr * static_cast<double>(step) / static_cast<double>(s.warmup_steps);
  }
  if (step > s.total_steps) return s.min_lr;
  const double p = static_cast<double>(step - s.warmup_steps) /
                   static_cast<double>(s.total_steps - s.warmup_steps);
  return s.min_lr + (s.peak_lr - s.min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * p));
}

}  // namespace tsp::train
