// Fuzz target: model::config_from_json (config.json of a checkpoint) on arbitrary text. A config
// it accepts must survive config_to_json -> config_from_json unchanged (else abort: a finding).
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "tsp/core/error.h"
#include "tsp/model/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const tsp::model::ModelConfig config = tsp::model::config_from_json(text, "fuzz config.json");
    const std::string json = tsp::model::config_to_json(config);
    if (tsp::model::config_to_json(tsp::model::config_from_json(json, "round trip")) != json) std::abort();
  } catch (const tsp::Error&) {
    // Malformed JSON (IoError) or invalid values (InvalidArgument): the documented refusals.
  }
  return 0;
}
