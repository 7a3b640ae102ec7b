// BPE merges with a heap over adjacent pairs (as the tokenizers crate's Word::merge_all): O(n log n)
// per word, which matters for SentencePiece-style vocabularies whose "word" is a whole text span.
#include "tsp/data/tokenizer/bpe_model.h"

#include <cstdio>
#include <queue>

#include "tsp/core/check.h"
#include "tsp/data/tokenizer/utf8.h"

namespace tsp::data {

BpeModel::BpeModel(const BpeModelSpec& spec)
    : byte_fallback_(spec.byte_fallback), fuse_unk_(spec.fuse_unk), ignore_merges_(spec.ignore_merges) {
  int32_t max_id = -1;
  ids_.reserve(spec.vocab.size() * 2);
  for (const auto& [piece, id] : spec.vocab) {
    TSP_CHECK(id >= 0 && id <= kMaxTokenId, "tokenizer.json: vocabulary id ", id, " of '", piece,
              "' is outside 0..", kMaxTokenId);
    ids_[piece] = id;
    max_id = std::max(max_id, id);
  }
  pieces_.assign(static_cast<size_t>(max_id + 1), "");
  for (const auto& [piece, id] : spec.vocab) pieces_[static_cast<size_t>(id)] = piece;
  merges_.reserve(spec.merges.size() * 2);
  for (size_t r = 0; r < spec.merges.size(); ++r) {
    const auto& [a, b] = spec.merges[r];
    const auto ia = id_of(a), ib = id_of(b), ic = id_of(a + b);
    TSP_CHECK(ia && ib && ic, "tokenizer.json: merge ", r, " ('", a, "' '", b,
              "') names a piece missing from the vocabulary");
    merges_.insert_or_assign(key(*ia, *ib), std::pair<int32_t, int32_t>(static_cast<int32_t>(r), *ic));  // a repeated pair: the later rank, as the reference implementations
  }
  if (spec.unk_token) {
    const auto u = id_of(*spec.unk_token);
    TSP_CHECK(u.has_value(), "tokenizer.json: unk_token '", *spec.unk_token, "' is not in the vocabulary");
    unk_id_ = *u;
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    byte_ids_[b] = id_of(name).value_or(-1);
  }
}

std::optional<int32_t> BpeModel::id_of(std::string_view piece) const {
  const auto it = ids_.find(std::string(piece));
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (const auto id = id_of(word)) {
      out.push_back(*id);
      return;
    }
  }
  // Initial symbols: one per character; unknown characters become byte pieces or unk.
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    bool alive;
  };
  std::vector<Symbol> sym;
  sym.reserve(word.size());
  bool last_unk = false;
  for (size_t i = 0; i < word.size();) {
    const size_t n = utf8::char_length(word, i);
    const auto id = id_of(word.substr(i, n));
    if (id) {
      sym.push_back({*id, 0, 0, true});
      last_unk = false;
    } else {
      bool bytes_ok = byte_fallback_;
      for (size_t k = 0; bytes_ok && k < n; ++k) bytes_ok = byte_ids_[static_cast<unsigned char>(word[i + k])] >= 0;
      if (bytes_ok) {
        for (size_t k = 0; k < n; ++k) sym.push_back({byte_ids_[static_cast<unsigned char>(word[i + k])], 0, 0, true});
        last_unk = false;
      } else {
        TSP_CHECK(unk_id_ >= 0, "tokenizer: the character at byte ", i, " of '", word,
                  "' is not in the vocabulary, and the model has no unk_token or byte fallback");
        if (!(fuse_unk_ && last_unk)) sym.push_back({unk_id_, 0, 0, true});
        last_unk = true;
      }
    }
    i += n;
  }
  const int32_t n = static_cast<int32_t>(sym.size());
  for (int32_t i = 0; i < n; ++i) {
    sym[i].prev = i - 1;
    sym[i].next = i + 1 < n ? i + 1 : -1;
  }
  struct Cand {
    int32_t rank, pos, new_id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  const auto push_pair = [&](int32_t pos) {
    if (pos < 0 || sym[pos].next < 0) return;
    const auto it = merges_.find(key(sym[pos].id, sym[sym[pos].next].id));
    if (it != merges_.end()) heap.push({it->second.first, pos, it->second.second});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push_pair(i);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    Symbol& left = sym[c.pos];
    if (!left.alive || left.next < 0) continue;
    // A stale entry: the pair at pos is no longer the one this merge was queued for.
    const auto it = merges_.find(key(left.id, sym[left.next].id));
    if (it == merges_.end() || it->second.second != c.new_id || it->second.first != c.rank) continue;
    Symbol& right = sym[left.next];
    left.id = c.new_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) sym[right.next].prev = c.pos;
    push_pair(left.prev);
    push_pair(c.pos);
  }
  for (int32_t i = 0; i >= 0 && i < n; i = sym[i].next) out.push_back(sym[i].id);
}

}  // namespace tsp::data
