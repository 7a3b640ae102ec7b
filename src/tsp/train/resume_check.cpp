// Resume compatibility: model config field by field, data fingerprint, fixed run settings.
#include "tsp/train/resume_check.h"

#include <set>

#include <nlohmann/json.hpp>

#include "tsp/core/check.h"

namespace tsp::train {

using nlohmann::json;

std::string data_fingerprint(const std::vector<int32_t>& tokens) {
  return std::to_string(tokens.size()) + " tokens, xxh3 " +
         detail::checksum_hex(xxh3_64(tokens.data(), tokens.size() * sizeof(int32_t)));
}

std::vector<std::string> resume_differences(const TrainStateInfo& saved, const RunConfig& now,
                                            const model::ModelConfig& config, const std::string& fingerprint) {
  std::vector<std::string> diffs;
  const json was = saved.model_config.empty() ? json::object() : json::parse(saved.model_config);
  const json is = json::parse(model::config_to_json(config));
  std::set<std::string> keys;
  for (const auto& [k, _] : was.items()) keys.insert(k);
  for (const auto& [k, _] : is.items()) keys.insert(k);
  for (const std::string& k : keys) {
    const json a = was.contains(k) ? was[k] : json(), b = is.contains(k) ? is[k] : json();
    if (a != b) diffs.push_back("config.json " + k + ": " + (a.is_null() ? "absent" : a.dump()) + " (checkpoint) vs " +
                                (b.is_null() ? "absent" : b.dump()) + " (now)");
  }
  if (saved.data_fingerprint != fingerprint) {
    diffs.push_back("--data " + saved.run.data + " [" + saved.data_fingerprint + "] (checkpoint) vs " + now.data + " [" +
                    fingerprint + "] (now): other tokens");
  }
  for (std::string& d : data_and_math_differences(saved.run, now)) diffs.push_back(std::move(d));
  return diffs;
}

void check_resume_matches(const std::filesystem::path& dir, const TrainStateInfo& saved, const RunConfig& now,
                          const model::ModelConfig& config, const std::string& fingerprint) {
  const std::vector<std::string> diffs = resume_differences(saved, now, config, fingerprint);
  if (diffs.empty()) return;
  std::string all;
  for (const auto& d : diffs) all += (all.empty() ? "" : "; ") + d;
  TSP_THROW(InvalidArgument, "cannot resume from ", dir.string(), ": settings differ: ", all,
            " (docs/training.md lists what a resume may change)");
}

std::filesystem::path checked_train_state(const std::filesystem::path& dir,
                                          const model::ModelConfig& checkpoint_config, const RunConfig& now,
                                          const model::ModelConfig& config, const std::string& fingerprint) {
  const std::filesystem::path state_path = dir / kTrainStateFileName;
  if (!std::filesystem::exists(state_path)) {
    TSP_THROW(IoError, "cannot resume from ", dir.string(), ": it has no ", kTrainStateFileName,
              " (a plain Hugging Face checkpoint: start from it with --init instead)");
  }
  const TrainStateInfo saved = read_train_state_info(state_path, /*allow_v1=*/false);
  check_resume_matches(dir, saved, now, config, fingerprint);
  TSP_CHECK(checkpoint_config == config, "cannot resume from ", dir.string(), ": its config.json (",
            checkpoint_config.summary(), ") differs from this run's model (", config.summary(), ")");
  return state_path;
}

}  // namespace tsp::train
