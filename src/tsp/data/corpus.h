// The demo corpus: real English text from Debian's `fortunes` package, read into one byte string
// in a deterministic order, and the unigram entropy that a trained model's loss must beat.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tsp::data {

inline constexpr std::string_view kDefaultFortuneDir = "/usr/share/games/fortunes";

struct FortuneCorpusOptions {
  std::filesystem::path dir{kDefaultFortuneDir};
  // Appended after every record (each record already ends with '\n'); "\n" leaves a blank line.
  std::string record_separator = "\n";
};

struct Corpus {
  std::string text;
  int64_t files = 0;    // fortune files read
  int64_t records = 0;  // non-empty records kept
};

// Reads every regular file directly in options.dir, in sorted file-name order, skipping "*.dat"
// (strfile indexes), "*.u8" (Debian's UTF-8 symlinks), symbolic links, hidden files and
// subdirectories (so "off/", the offensive set, is never read). Records are separated by lines
// holding only "%"; empty records are dropped. A missing directory throws IoError telling which
// package to install; a directory without fortune files throws IoError.
Corpus read_fortune_corpus(const FortuneCorpusOptions& options = {});

// Splits one fortune file's text into records (without the "%" lines), each ending in '\n'.
std::vector<std::string> split_fortune_records(std::string_view file_text);

struct UnigramEntropy {
  double bits = 0;        // bits per token (= bits per byte for the byte tokenizer)
  double nats = 0;        // nats per token: comparable with a cross-entropy loss
  int64_t tokens = 0;
  int64_t distinct = 0;   // number of different token ids seen
};

// Entropy of the empirical unigram distribution: -sum p log p. Negative ids -> InvalidArgument.
// An empty stream has entropy 0.
UnigramEntropy unigram_entropy(std::span<const int32_t> tokens);
UnigramEntropy unigram_entropy_of_bytes(std::string_view bytes);
// The same from counts per id (summed in the order given) over `total` tokens: for streaming counts.
UnigramEntropy unigram_entropy_from_counts(std::span<const int64_t> counts, int64_t total);

}  // namespace tsp::data
