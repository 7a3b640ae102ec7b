// Fortune-file corpus reader and unigram entropy.
// Deterministic: file order is the byte-wise sorted file name, independent of the directory order.
#include "tsp/data/corpus.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <vector>

#include "tsp/core/check.h"
#include "tsp/core/file_io.h"

namespace tsp::data {

namespace fs = std::filesystem;

std::vector<std::string> split_fortune_records(std::string_view text) {
  std::vector<std::string> records;
  std::string current;
  auto flush = [&] {
    if (current.find_first_not_of(" \t\r\n") != std::string::npos) records.push_back(current);
    current.clear();
  };
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line == "%") {
      flush();
    } else {
      current.append(line);
      current.push_back('\n');
    }
    pos = end + 1;
  }
  flush();
  return records;
}

Corpus read_fortune_corpus(const FortuneCorpusOptions& options) {
  const fs::path& dir = options.dir;
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    TSP_THROW(IoError, "fortune corpus directory ", dir.string(),
              " not found: install the Debian package 'fortunes' (apt-get install fortunes; "
              "'fortunes-min' has a smaller set) or point the corpus option at a directory of fortune files");
  std::vector<fs::path> files;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    const std::string name = p.filename().string();
    if (name.empty() || name[0] == '.') continue;
    if (p.extension() == ".dat" || p.extension() == ".u8") continue;
    const fs::file_status st = it->symlink_status(ec);
    if (ec || !fs::is_regular_file(st)) continue;  // skips off/, other directories and symlinks
    files.push_back(p);
  }
  if (ec) TSP_THROW(IoError, "cannot list fortune corpus directory ", dir.string(), ": ", ec.message());
  std::sort(files.begin(), files.end(),
            [](const fs::path& a, const fs::path& b) { return a.filename().string() < b.filename().string(); });
  if (files.empty())
    TSP_THROW(IoError, "fortune corpus directory ", dir.string(),
              " holds no fortune files (expected plain-text files with records separated by '%' lines)");

  Corpus corpus;
  for (const fs::path& p : files) {
    const std::string text = read_whole_file(p, "fortune file");
    ++corpus.files;
    for (const std::string& r : split_fortune_records(text)) {
      corpus.text += r;
      corpus.text += options.record_separator;
      ++corpus.records;
    }
  }
  if (corpus.records == 0)
    TSP_THROW(IoError, "fortune corpus directory ", dir.string(), ": ", corpus.files,
              " files but no non-empty records");
  return corpus;
}

UnigramEntropy unigram_entropy_from_counts(std::span<const int64_t> counts, int64_t total) {
  UnigramEntropy e;
  e.tokens = total;
  if (total == 0) return e;
  double nats = 0;
  for (int64_t c : counts) {
    if (c == 0) continue;
    ++e.distinct;
    const double p = static_cast<double>(c) / static_cast<double>(total);
    nats -= p * std::log(p);
  }
  e.nats = nats;
  e.bits = nats / std::log(2.0);
  return e;
}

UnigramEntropy unigram_entropy(std::span<const int32_t> tokens) {
  int32_t max_id = -1;
  for (size_t i = 0; i < tokens.size(); ++i) {
    TSP_CHECK(tokens[i] >= 0, "unigram_entropy: negative token id ", tokens[i], " at position ", i);
    max_id = std::max(max_id, tokens[i]);
  }
  std::vector<int64_t> counts;
  if (max_id < (1 << 24)) {
    counts.assign(static_cast<size_t>(max_id + 1), 0);
    for (int32_t t : tokens) ++counts[static_cast<size_t>(t)];
  } else {  // huge ids: count sparsely
    std::unordered_map<int32_t, int64_t> sparse;
    for (int32_t t : tokens) ++sparse[t];
    for (const auto& [id, c] : sparse) counts.push_back(c);
    std::sort(counts.begin(), counts.end());  // summation order independent of hashing
  }
  return unigram_entropy_from_counts(counts, static_cast<int64_t>(tokens.size()));
}

UnigramEntropy unigram_entropy_of_bytes(std::string_view bytes) {
  std::vector<int64_t> counts(256, 0);
  for (char c : bytes) ++counts[static_cast<unsigned char>(c)];
  return unigram_entropy_from_counts(counts, static_cast<int64_t>(bytes.size()));
}

}  // namespace tsp::data
