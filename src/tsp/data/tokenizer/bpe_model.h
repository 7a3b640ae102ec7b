// BpeModel: the BPE model of tokenizer.json: a vocabulary, merges applied by rank (lowest first,
// leftmost among equals), optional <0xNN> byte fallback, unknown token and ignore_merges.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tsp::data {

// Largest id accepted from a tokenizer file: far above real vocabularies (Gemma: 256000), and it
// bounds the id -> piece table a hostile file could make us allocate.
inline constexpr int32_t kMaxTokenId = (1 << 24) - 1;

struct BpeModelSpec {
  std::vector<std::pair<std::string, int32_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::optional<std::string> unk_token;
  bool byte_fallback = false;  // characters outside the vocabulary become their bytes' <0xNN> pieces
  bool fuse_unk = false;       // consecutive unknown characters give one unk id
  bool ignore_merges = false;  // a word that is itself in the vocabulary is one token (Llama-3)
};

class BpeModel {
 public:
  // Throws InvalidArgument when a merge names a piece (or a result) missing from the vocabulary.
  explicit BpeModel(const BpeModelSpec& spec);

  // Appends the ids of one pre-tokenized word (UTF-8; invalid bytes are characters of their own).
  void tokenize(std::string_view word, std::vector<int32_t>& out) const;

  std::optional<int32_t> id_of(std::string_view piece) const;
  // Pieces by id ("" where the vocabulary has a gap).
  const std::vector<std::string>& pieces() const { return pieces_; }
  // id of "<0xNN>", or -1.
  int32_t byte_id(uint8_t b) const { return byte_ids_[b]; }

 private:
  struct PairHash {
    size_t operator()(uint64_t k) const { return std::hash<uint64_t>()(k * 0x9E3779B97F4A7C15ull); }
  };
  static uint64_t key(int32_t a, int32_t b) { return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b); }

  std::unordered_map<std::string, int32_t> ids_;
  std::vector<std::string> pieces_;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>, PairHash> merges_;  // (a,b) -> (rank, id)
  int32_t unk_id_ = -1;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  int32_t byte_ids_[256];
};

}  // namespace tsp::data
