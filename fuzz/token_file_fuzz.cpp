// Fuzz target: data::TokenFileReader (pre-tokenised training data) on arbitrary bytes: the header
// checks, then reading every token (and a range) of a file it accepts.
#include <cstdint>

#include "fuzz_input_file.h"
#include "tsp/core/error.h"
#include "tsp/data/token_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static tsp::fuzz::FuzzInputFile file(".tok");
  const auto& path = file.write(data, size);
  try {
    const tsp::data::TokenFileReader reader(path);
    reader.read_all();  // the size was checked against 32 + count * width: bounded by the input
    reader.read(reader.size() / 2, reader.size() - reader.size() / 2);
  } catch (const tsp::Error&) {
    // The reader's documented refusal of a malformed file.
  }
  return 0;
}
