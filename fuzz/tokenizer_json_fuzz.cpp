// Fuzz target: data::HfTokenizer (a model directory's tokenizer.json) on arbitrary text. A tokenizer
// it accepts must encode a fixed mixed-script text to ids inside its vocabulary and decode them
// (else abort: a finding); its own refusals are tsp::Error.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "tsp/core/error.h"
#include "tsp/data/tokenizer/hf_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const tsp::data::HfTokenizer t(text, "fuzz tokenizer.json");
    constexpr std::string_view sample = "Hello  world\n\t<s>caf\xc3\xa9 \xe4\xb8\xad 12345 \xf0\x9f\xa4\x96\xff";
    try {
      for (const bool special : {true, false}) {
        const std::vector<int32_t> ids = t.encode(sample, special);
        for (int32_t id : ids)
          if (id < 0 || id >= t.vocab_size()) std::abort();
        (void)t.decode(ids, false);
        (void)t.decode(ids, true);
      }
    } catch (const tsp::InvalidArgument&) {
      // A vocabulary without unk and byte fallback refuses characters it lacks: documented.
    }
  } catch (const tsp::Error&) {
    // Malformed JSON or unsupported components: the documented refusals.
  }
  return 0;
}
