// load_model: the directory check that `tsp eval` also makes, then HfCheckpoint reads each tensor.
#include "tsp/infer/load_model.h"

#include "tsp/core/check.h"
#include "tsp/model/hf_checkpoint.h"

namespace tsp::infer {

model::ModelWeights load_model(const std::filesystem::path& dir) {
  if (!std::filesystem::is_directory(dir)) {
    TSP_THROW(IoError, "checkpoint directory ", dir.string(), " does not exist");
  }
  const model::HfCheckpoint ckpt(dir);
  const model::ModelConfig& config = ckpt.config();
  model::ModelWeights weights(config, config.compute_dtype(), MemCategory::weights);
  for (const auto& [name, t] : weights.named()) ckpt.read_into(name, t);
  return weights;
}

}  // namespace tsp::infer
