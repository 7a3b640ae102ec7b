// Fuzz target: model::SafetensorsReader (checkpoints, training state) on arbitrary bytes. A file
// it accepts must then read every tensor whole and by rows without anything but tsp::Error.
#include <cstdint>

#include "fuzz_input_file.h"
#include "tsp/core/error.h"
#include "tsp/model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static tsp::fuzz::FuzzInputFile file(".safetensors");
  const auto& path = file.write(data, size);
  try {
    const tsp::model::SafetensorsReader reader(path);
    for (const tsp::model::TensorInfo& t : reader.tensors()) {
      // Validated against the file size at open, so these allocations are bounded by the input.
      const tsp::Tensor whole = reader.read(t.name, tsp::MemCategory::workspace);
      if (t.shape.rank() >= 1 && t.shape[0] > 0) {
        reader.read_rows(t.name, {t.shape[0] / 2, t.shape[0]}, tsp::MemCategory::workspace);
      }
      if (whole.dtype() == tsp::DType::f32 || whole.dtype() == tsp::DType::bf16) {
        const tsp::Tensor other = tsp::Tensor::empty(
            t.shape, whole.dtype() == tsp::DType::f32 ? tsp::DType::bf16 : tsp::DType::f32,
            tsp::MemCategory::workspace);
        reader.read_into(t.name, other);  // the converting path
      }
    }
  } catch (const tsp::Error&) {
    // The reader's documented refusal of a malformed file.
  }
  return 0;
}
