// ICU's unorm2 on UTF-16 copies of each valid UTF-8 run.
#include "tsp/data/tokenizer/unicode_normalize.h"

#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include <vector>

#include "tsp/core/check.h"
#include "tsp/data/tokenizer/utf8.h"

namespace tsp::data {

namespace {

const UNormalizer2* instance(NormalForm form) {
  UErrorCode err = U_ZERO_ERROR;
  const UNormalizer2* n = nullptr;
  switch (form) {
    case NormalForm::nfc: n = unorm2_getNFCInstance(&err); break;
    case NormalForm::nfd: n = unorm2_getNFDInstance(&err); break;
    case NormalForm::nfkc: n = unorm2_getNFKCInstance(&err); break;
    case NormalForm::nfkd: n = unorm2_getNFKDInstance(&err); break;
  }
  TSP_CHECK(U_SUCCESS(err) && n != nullptr, "ICU normalizer unavailable: ", u_errorName(err));
  return n;
}

void normalize_valid(std::string_view s, const UNormalizer2* n, std::string& out) {
  if (s.empty()) return;
  UErrorCode err = U_ZERO_ERROR;
  int32_t len16 = 0;
  u_strFromUTF8(nullptr, 0, &len16, s.data(), static_cast<int32_t>(s.size()), &err);
  err = U_ZERO_ERROR;
  std::vector<UChar> src(static_cast<size_t>(len16) + 1);
  u_strFromUTF8(src.data(), len16 + 1, nullptr, s.data(), static_cast<int32_t>(s.size()), &err);
  TSP_CHECK(U_SUCCESS(err), "unicode_normalize: UTF-8 conversion failed: ", u_errorName(err));
  int32_t cap = len16 * 4 + 16;  // NFKD of U+FDFA grows 18-fold; retried below if too small
  std::vector<UChar> dst;
  int32_t got = 0;
  for (int attempt = 0; attempt < 2; ++attempt) {
    err = U_ZERO_ERROR;
    dst.resize(static_cast<size_t>(cap));
    got = unorm2_normalize(n, src.data(), len16, dst.data(), cap, &err);
    if (err != U_BUFFER_OVERFLOW_ERROR) break;
    cap = got + 1;
  }
  TSP_CHECK(U_SUCCESS(err), "unicode_normalize failed: ", u_errorName(err));
  int32_t len8 = 0;
  err = U_ZERO_ERROR;
  u_strToUTF8(nullptr, 0, &len8, dst.data(), got, &err);
  err = U_ZERO_ERROR;
  const size_t at = out.size();
  out.resize(at + static_cast<size_t>(len8) + 1);
  u_strToUTF8(out.data() + at, len8 + 1, nullptr, dst.data(), got, &err);
  TSP_CHECK(U_SUCCESS(err), "unicode_normalize: UTF-16 conversion failed: ", u_errorName(err));
  out.resize(at + static_cast<size_t>(len8));
}

}  // namespace

std::string unicode_normalize(std::string_view text, NormalForm form) {
  const UNormalizer2* n = instance(form);
  std::string out;
  out.reserve(text.size());
  size_t run = 0;
  for (size_t i = 0; i < text.size();) {
    const size_t len = utf8::char_length(text, i);
    if (utf8::code_point(text, i) < 0) {
      normalize_valid(text.substr(run, i - run), n, out);
      out.push_back(text[i]);
      run = i + 1;
    }
    i += len;
  }
  normalize_valid(text.substr(run), n, out);
  return out;
}

}  // namespace tsp::data
