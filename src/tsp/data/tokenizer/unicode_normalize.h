// Unicode normalization forms (NFC, NFD, NFKC, NFKD) of UTF-8 text, through ICU (Debian
// libicu-dev): the NFC/NFKC/... normalizers of tokenizer.json (Qwen2 uses NFC).
#pragma once

#include <string>
#include <string_view>

namespace tsp::data {

enum class NormalForm { nfc, nfd, nfkc, nfkd };

// Invalid UTF-8 bytes are kept as they are; the valid runs between them are normalized.
std::string unicode_normalize(std::string_view text, NormalForm form);

}  // namespace tsp::data
