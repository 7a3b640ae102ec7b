// What a resume must find unchanged: the model config saved in the training state against the
// checkpoint's config.json, the data (by content), and the run settings that decide which tokens
// each step sees and how the update computes. docs/training.md ("Resuming").
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "tsp/model/model_config.h"
#include "tsp/train/run_config.h"
#include "tsp/train/train_state.h"

namespace tsp::train {

// "<n> tokens, xxh3 <16 hex digits>" of the whole token stream (before the train/val split).
std::string data_fingerprint(const std::vector<int32_t>& tokens);

// One line per difference between what the state `saved` records and this run: every config.json
// field of `config` that differs from the saved model config ("config.json rope_theta: 10000
// (checkpoint) vs 500000 (now)"), the data fingerprint ("--data ..."), and
// data_and_math_differences of the run settings. Empty: the resume may proceed.
std::vector<std::string> resume_differences(const TrainStateInfo& saved, const RunConfig& now,
                                            const model::ModelConfig& config, const std::string& fingerprint);

// Throws InvalidArgument "cannot resume from <dir>: <difference>; <difference>" when there are any.
void check_resume_matches(const std::filesystem::path& dir, const TrainStateInfo& saved, const RunConfig& now,
                          const model::ModelConfig& config, const std::string& fingerprint);

// Every check of a resume from checkpoint `dir` (config.json read as `checkpoint_config`), for
// any layout and degree: it has a training state (else IoError: a plain
// Hugging Face checkpoint is a start for --init), what the state records matches this run
// (check_resume_matches), and its config.json is this run's model. Returns the state file's path.
std::filesystem::path checked_train_state(const std::filesystem::path& dir,
                                          const model::ModelConfig& checkpoint_config, const RunConfig& now,
                                          const model::ModelConfig& config, const std::string& fingerprint);

}  // namespace tsp::train
