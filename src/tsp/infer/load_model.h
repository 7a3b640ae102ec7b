// Loading a model for inference: every weight of a Hugging Face Llama checkpoint directory (a tsp
// checkpoint or a plain HF one), in the checkpoint's storage dtype.
#pragma once

#include <filesystem>

#include "tsp/model/model_weights.h"

namespace tsp::infer {

// Weights under MemCategory::weights in config.torch_dtype (f32 or bf16). Errors, all IoError:
// "checkpoint directory DIR does not exist" (also when DIR is a file), and those of
// model::HfCheckpoint (missing config.json or weights, corrupt or truncated files, tensors of the
// wrong shape), which name the file and the tensor.
model::ModelWeights load_model(const std::filesystem::path& dir);

}  // namespace tsp::infer
