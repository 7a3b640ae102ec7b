// Fuzz target: the training-state reader (train/train_state.h: read_train_state_info, then
// load_sharded_train_state into a one-process optimizer of the seeds' tiny model) on arbitrary bytes.
#include <cstdint>

#include "fuzz_input_file.h"
#include "fuzz_models.h"
#include "tsp/core/error.h"
#include "tsp/model/model_weights.h"
#include "tsp/parallel/sharded_adamw.h"
#include "tsp/parallel/single_layout.h"
#include "tsp/train/sharded_train_state.h"

namespace {

// An optimizer of the tiny model per dtype, built once (the seeds hold both).
struct Optimizers {
  tsp::model::ModelWeights w32 = tsp::model::ModelWeights::initialize(tsp::fuzz::tiny_fuzz_config(), tsp::DType::f32, 1);
  tsp::model::ModelWeights w16 = tsp::model::ModelWeights::initialize(tsp::fuzz::tiny_fuzz_config(tsp::DType::bf16),
                                                                      tsp::DType::bf16, 1);
  tsp::parallel::ShardedAdamW f32{tsp::parallel::whole_shards(w32), {}};
  tsp::parallel::ShardedAdamW bf16{tsp::parallel::whole_shards(w16), {}};
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static tsp::fuzz::FuzzInputFile file(".safetensors");
  static Optimizers opt;
  const auto& path = file.write(data, size);
  try {
    const tsp::train::TrainStateInfo info = tsp::train::read_train_state_info(path);
    tsp::train::load_sharded_train_state(path, info.model_dtype == tsp::DType::bf16 ? opt.bf16 : opt.f32);
  } catch (const tsp::Error&) {
    // "corrupt or incompatible training state <path>: ...": the documented refusal.
  }
  return 0;
}
