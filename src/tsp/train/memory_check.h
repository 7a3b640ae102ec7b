// The startup memory check of `tsp train`: the planner's per-rank peak for the run's layout
// (plan::memory, the model checked against the allocator ledger) times the ranks sharing this
// host, against what the process may use (core/available_memory), before anything is allocated.
#pragma once

#include <cstdint>

#include "tsp/core/available_memory.h"
#include "tsp/model/model_config.h"
#include "tsp/plan/layout.h"
#include "tsp/plan/workload.h"
#include "tsp/train/run_config.h"

namespace tsp::train {

// The run as the planner sees it: one micro-batch of one replica (batch / (dp x grad_accum) rows
// of seq tokens, grad_accum micro-batches) in the run's dtype and recomputation, on its layout.
plan::Workload workload_of_run(const RunConfig& run);

// Predicted peak bytes of one rank of the run (the heaviest rank's total over all categories).
int64_t predicted_rank_peak_bytes(const model::ModelConfig& config, const RunConfig& run);

// Throws OutOfMemory "needs X GiB per rank (x R ranks on this host = Y GiB), Z GiB available
// (<source>); --skip-memory-check to try anyway" when ranks_on_host x the prediction exceeds
// `available`. No-op when nothing is known about the available memory.
void check_memory_fits(const model::ModelConfig& config, const RunConfig& run, int64_t ranks_on_host,
                       const AvailableMemory& available);

// For loading a checkpoint to evaluate: throws OutOfMemory "the weights alone need X GiB, Y GiB
// available (<source>)" when the weights in `dtype` exceed `available` (a lower bound of the
// need, so it never refuses a run that fits).
void check_weights_fit(const model::ModelConfig& config, DType dtype, const AvailableMemory& available);

}  // namespace tsp::train
