// Loading the tokenizer of `tsp data prepare` and hashing tokenizer and shard files (XXH64).
#include "tsp/data/prepare/tokenizer_identity.h"

#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <vector>

#include "tsp/core/check.h"
#include "tsp/core/file_io.h"
#include "tsp/data/byte_tokenizer.h"
#include "tsp/data/tokenizer/hf_tokenizer.h"
#include "tsp/data/tokenizer/model_dir_tokenizer.h"
#include "tsp/data/tokenizer/sentencepiece_tokenizer.h"

namespace tsp::data {

namespace {

namespace fs = std::filesystem;

std::string hex16(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::optional<int32_t> piece_id(const Tokenizer& t, std::string_view piece) {
  if (const auto* h = dynamic_cast<const HfTokenizer*>(&t)) return h->id_of(piece);
  if (const auto* s = dynamic_cast<const SentencePieceTokenizer*>(&t)) return s->id_of(piece);
  return std::nullopt;
}

int32_t eos_of(const Tokenizer& t, const std::string& source) {
  if (!t.eos_ids().empty()) return t.eos_ids().front();
  for (const char* piece : {"</s>", "<|endoftext|>", "<eos>", "<|end_of_text|>"})
    if (const auto id = piece_id(t, piece)) return *id;
  TSP_THROW(InvalidArgument, "tokenizer ", source, " names no EOS token (no eos_token in tokenizer_config.json, no "
            "</s> or <|endoftext|> in its vocabulary): prepare puts EOS between documents");
}

}  // namespace

std::string xxh64_hex(std::string_view bytes) { return hex16(XXH64(bytes.data(), bytes.size(), 0)); }

std::string xxh64_file_hex(const std::string& path) {
  OpenFile f = open_regular_file(path, "file");
  XXH64_state_t* state = XXH64_createState();
  TSP_CHECK(state != nullptr, "XXH64_createState: out of memory");
  XXH64_reset(state, 0);
  std::vector<unsigned char> buf(4 << 20);
  for (uint64_t at = 0; at < f.size;) {
    const uint64_t n = std::min<uint64_t>(buf.size(), f.size - at);
    try {
      pread_exact(f.fd.get(), buf.data(), n, at, path);
    } catch (...) {
      XXH64_freeState(state);
      throw;
    }
    XXH64_update(state, buf.data(), n);
    at += n;
  }
  const uint64_t h = XXH64_digest(state);
  XXH64_freeState(state);
  return hex16(h);
}

LoadedTokenizer load_tokenizer_for_prepare(const std::string& spec) {
  LoadedTokenizer out;
  TokenizerIdentity& id = out.identity;
  if (spec.empty() || spec == "byte") {
    out.tokenizer = make_byte_tokenizer();
    id = {.kind = "byte", .source = "byte", .xxh64 = xxh64_hex("byte"), .vocab_size = ByteTokenizer::kNumIds,
          .eos_id = ByteTokenizer::kEosId};
    return out;
  }
  std::error_code ec;
  TSP_CHECK_T(IoError, fs::exists(spec, ec), "--tokenizer ", spec, " does not exist");
  fs::path file;
  if (fs::is_directory(spec)) {
    out.tokenizer = load_tokenizer_dir(spec);
    file = fs::exists(fs::path(spec) / "tokenizer.json") ? fs::path(spec) / "tokenizer.json"
                                                          : fs::path(spec) / "tokenizer.model";
  } else {
    file = spec;
    const fs::path dir = file.parent_path().empty() ? fs::path(".") : file.parent_path();
    const bool is_json = file.extension() == ".json";
    // A standard name that its directory would load anyway: with the directory's configuration.
    const bool dir_loads_it = file.filename() == "tokenizer.json" ||
                              (file.filename() == "tokenizer.model" && !fs::exists(dir / "tokenizer.json"));
    if (dir_loads_it) {
      out.tokenizer = load_tokenizer_dir(dir);
    } else if (is_json) {
      out.tokenizer = std::make_unique<HfTokenizer>(read_whole_file(file, "tokenizer.json"), file.string());
    } else {
      out.tokenizer = std::make_unique<SentencePieceTokenizer>(file, SentencePieceOptions{});
    }
  }
  id.kind = file.extension() == ".json" ? "tokenizer.json" : "sentencepiece";
  id.source = fs::absolute(file).lexically_normal().string();
  id.xxh64 = xxh64_file_hex(file.string());
  id.vocab_size = out.tokenizer->vocab_size();
  id.eos_id = eos_of(*out.tokenizer, file.string());
  TSP_CHECK(id.eos_id >= 0 && id.eos_id < id.vocab_size, "tokenizer ", file.string(), ": EOS id ", id.eos_id,
            " is outside its vocabulary of ", id.vocab_size);
  return out;
}

}  // namespace tsp::data
