// The startup memory check: the run maps onto the planner's workload and layout, the prediction
// times the ranks on the host is compared with the available memory, and the refusal names both.
#include "tsp/train/memory_check.h"

#include <gtest/gtest.h>

#include "tsp/core/error.h"
#include "tsp/plan/memory_model.h"

namespace tsp::train {
namespace {

TEST(MemoryCheck, RunMapsOntoThePlannersWorkloadAndLayout) {
  RunConfig run;
  run.batch = 16;
  run.grad_accum = 2;
  run.dp = 2;
  run.layout = "tp+sp";
  run.tp = 2;
  run.sp = 4;
  run.dtype = "bf16";
  run.recompute = true;
  const plan::Workload w = workload_of_run(run);
  EXPECT_EQ(w.batch, 4);  // 16 / (dp 2 x grad_accum 2)
  EXPECT_EQ(w.micro_batches, 2);
  EXPECT_EQ(w.seq, run.seq);
  EXPECT_EQ(w.precision.name, "bf16");
  EXPECT_EQ(w.recompute, plan::Recompute::full);
  EXPECT_EQ(run.layout_spec().name(), tp_sp_layout(2, 4, 2).name());
  run.layout = "fsdp-sp";
  run.tp = 1;
  EXPECT_EQ(run.layout_spec().name(), fsdp_sp_layout(4, 2).name());
  EXPECT_EQ(RunConfig{}.layout_spec().name(), dp_layout(1).name());
}

TEST(MemoryCheck, RefusesWhenTheRanksOnTheHostNeedMoreThanIsAvailable) {
  const model::ModelConfig config = model::preset("tiny");
  const RunConfig run;
  const int64_t need = predicted_rank_peak_bytes(config, run);
  EXPECT_EQ(need, plan::memory(config, workload_of_run(run), dp_layout(1)).total());
  ASSERT_GT(need, 0);
  EXPECT_NO_THROW(check_memory_fits(config, run, 1, {.bytes = need, .source = "MemAvailable"}));
  EXPECT_NO_THROW(check_memory_fits(config, run, 4, {.bytes = 4 * need, .source = "MemAvailable"}));
  EXPECT_NO_THROW(check_memory_fits(config, run, 64, AvailableMemory{}));  // nothing known: no check
  try {
    check_memory_fits(config, run, 4, {.bytes = 4 * need - 1, .source = "cgroup memory.max - memory.current"});
    ADD_FAILURE() << "4 ranks fit into less than 4 x their need";
  } catch (const OutOfMemory& e) {
    const std::string m = e.what();
    for (const char* want : {"per rank (x 4 ranks on this host = ", "available (cgroup memory.max - memory.current)",
                             "--skip-memory-check to try anyway", "--batch 16 --seq 128"})
      EXPECT_NE(m.find(want), std::string::npos) << want << "\n" << m;
  }
}

TEST(MemoryCheck, EvalRefusesWeightsBeyondTheAvailableMemory) {
  const model::ModelConfig config = model::preset("tiny");
  const int64_t f32 = config.total_params() * 4;
  EXPECT_NO_THROW(check_weights_fit(config, DType::f32, {.bytes = f32, .source = "MemAvailable"}));
  EXPECT_NO_THROW(check_weights_fit(config, DType::bf16, {.bytes = f32 / 2, .source = "MemAvailable"}));
  try {
    check_weights_fit(config, DType::f32, {.bytes = f32 - 1, .source = "MemAvailable"});
    ADD_FAILURE() << "weights larger than the available memory accepted";
  } catch (const OutOfMemory& e) {
    EXPECT_NE(std::string(e.what()).find("alone need 0."), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("available (MemAvailable)"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tsp::train
