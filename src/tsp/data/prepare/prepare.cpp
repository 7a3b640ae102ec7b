// The prepare pipeline: the calling thread reads pieces in order into ~1 MiB batches, up to
// `threads` batches encode at once (std::async), and results are written strictly in batch order:
// pieces are cut by the reader alone, so neither threads nor batch size change a byte.
#include "tsp/data/prepare/prepare.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <deque>
#include <future>
#include <memory>
#include <optional>
#include <set>
#include <thread>

#include "tsp/core/check.h"
#include "tsp/core/file_io.h"
#include "tsp/data/token_file.h"

namespace tsp::data {

namespace {

namespace fs = std::filesystem;

// A split's shards: train-00000.tok, train-00001.tok, ... each of at most shard_tokens tokens.
class ShardStream {
 public:
  ShardStream(fs::path dir, std::string prefix, uint64_t shard_tokens, int64_t vocab)
      : dir_(std::move(dir)), prefix_(std::move(prefix)), shard_tokens_(shard_tokens), vocab_(vocab) {}

  void append(std::span<const int32_t> tokens) {
    while (!tokens.empty()) {
      if (!writer_) {
        char name[64];
        std::snprintf(name, sizeof name, "%s-%05zu.tok", prefix_.c_str(), shards_.size());
        writer_ = std::make_unique<TokenFileStreamWriter>(dir_ / name, TokenFileWriteOptions{.vocab_size = vocab_});
      }
      const size_t n = static_cast<size_t>(std::min<uint64_t>(tokens.size(), shard_tokens_ - writer_->size()));
      writer_->append(tokens.first(n));
      tokens = tokens.subspan(n);
      total_ += n;
      if (writer_->size() == shard_tokens_) close();
    }
  }

  // The shards finished so far (an abandoned run removes them).
  const std::vector<ShardEntry>& finished() const { return shards_; }
  // Finishes the open shard; returns every shard with its hash.
  std::vector<ShardEntry> finish() {
    if (writer_) close();
    return shards_;
  }
  uint64_t total() const { return total_; }

 private:
  void close() {
    const fs::path path = writer_->path();
    const uint64_t n = writer_->size();
    writer_->finish();
    writer_.reset();
    shards_.push_back({.file = path.filename().string(), .tokens = n, .xxh64 = xxh64_file_hex(path.string())});
  }

  fs::path dir_;
  std::string prefix_;
  uint64_t shard_tokens_;
  int64_t vocab_;
  std::unique_ptr<TokenFileStreamWriter> writer_;
  std::vector<ShardEntry> shards_;
  uint64_t total_ = 0;
};

struct Batch {
  std::vector<DocumentPiece> pieces;
  std::vector<char> val;  // per piece: goes to the validation split
  size_t bytes = 0;
};

struct EncodedBatch {
  Batch batch;
  std::vector<std::vector<int32_t>> ids;  // per piece
};

bool is_prepare_output_name(const std::string& name) {
  // What prepare writes: manifest.json, train-NNNNN.tok, val-NNNNN.tok and their temporaries.
  if (name == kShardManifestName) return true;
  const auto shard = [](const std::string& s) {
    for (const char* prefix : {"train-", "val-"}) {
      const std::string p = prefix;
      if (s.rfind(p, 0) == 0 && s.size() > p.size() + 4 && s.substr(s.size() - 4) == ".tok") {
        const std::string digits = s.substr(p.size(), s.size() - p.size() - 4);
        if (!digits.empty() && digits.find_first_not_of("0123456789") == std::string::npos) return true;
      }
    }
    return false;
  };
  if (shard(name)) return true;
  // core/atomic_file.h temporaries: ".<name>.tmp.XXXXXX"
  if (name.size() > 1 && name[0] == '.') {
    const size_t at = name.find(".tmp.");
    if (at != std::string::npos) return shard(name.substr(1, at - 1)) || name.substr(1, at - 1) == kShardManifestName;
  }
  return false;
}

}  // namespace

bool is_val_document(int64_t index, double fraction) {
  if (fraction <= 0) return false;
  return std::floor(static_cast<double>(index + 1) * fraction) > std::floor(static_cast<double>(index) * fraction);
}

void check_output_dir(const fs::path& out_dir, bool overwrite) {
  std::error_code ec;
  if (!fs::exists(out_dir, ec)) return;
  TSP_CHECK(fs::is_directory(out_dir, ec), "--out ", out_dir.string(), " exists and is not a directory");
  bool has_manifest = false;
  for (const fs::directory_entry& e : fs::directory_iterator(out_dir)) {
    const std::string name = e.path().filename().string();
    TSP_CHECK(is_prepare_output_name(name) && e.is_regular_file(), "--out ", out_dir.string(),
              " holds files tsp data prepare did not write (", name, "): give an empty or new directory");
    has_manifest = has_manifest || name == kShardManifestName;
  }
  if (fs::is_empty(out_dir)) return;
  if (!has_manifest) {
    TSP_CHECK(overwrite, "--out ", out_dir.string(), " holds token shards without manifest.json (an interrupted "
              "tsp data prepare): give --overwrite to replace them");
    return;
  }
  read_manifest(out_dir / kShardManifestName);  // a manifest we can read: one of ours
  TSP_CHECK(overwrite, "--out ", out_dir.string(),
            " holds the output of an earlier tsp data prepare: give --overwrite to replace it");
}

PrepareResult prepare_token_shards(const PrepareOptions& o, std::ostream* progress_out, bool progress_terminal) {
  const auto t0 = std::chrono::steady_clock::now();
  TSP_CHECK(!o.inputs.empty(), "tsp data prepare: no inputs");
  TSP_CHECK(o.shard_tokens > 0, "--shard-tokens must be positive");
  TSP_CHECK(o.val_fraction >= 0 && o.val_fraction < 1, "--val-fraction ", o.val_fraction, " outside [0, 1)");
  TSP_CHECK(o.val_inputs.empty() || o.val_fraction == 0, "give --val FILES or --val-fraction, not both");
  check_output_dir(o.out_dir, o.overwrite);

  // Everything is listed and the tokenizer loaded before the first byte is written.
  std::vector<SourceFile> sources = list_sources(o.inputs, o.input);
  std::vector<SourceFile> val_sources;
  if (!o.val_inputs.empty()) val_sources = list_sources(o.val_inputs, o.input);
  // An earlier output inside an input directory is not an input.
  const fs::path out_abs = fs::weakly_canonical(fs::absolute(o.out_dir));
  for (auto* list : {&sources, &val_sources})
    std::erase_if(*list, [&](const SourceFile& s) {
      return s.path != "-" && fs::weakly_canonical(fs::absolute(s.path)).parent_path() == out_abs;
    });
  TSP_CHECK(!sources.empty(), "no input files outside --out ", o.out_dir.string());
  const auto stdin_uses = [](const std::vector<SourceFile>& v) {
    return std::count_if(v.begin(), v.end(), [](const SourceFile& s) { return s.path == "-"; });
  };
  TSP_CHECK(stdin_uses(sources) + stdin_uses(val_sources) <= 1, "input '-' (stdin) given more than once");
  const LoadedTokenizer loaded = load_tokenizer_for_prepare(o.tokenizer);
  const Tokenizer& tokenizer = *loaded.tokenizer;
  const int32_t eos = loaded.identity.eos_id;
  const int64_t vocab = loaded.identity.vocab_size;

  // Replace an earlier output: its manifest goes first, so the directory never pairs an old
  // manifest with new shards; its shards beyond the new ones go last.
  std::set<std::string> old_files;
  if (fs::exists(o.out_dir)) {
    for (const fs::directory_entry& e : fs::directory_iterator(o.out_dir))
      old_files.insert(e.path().filename().string());
    fs::remove(o.out_dir / kShardManifestName);
  }
  fs::create_directories(o.out_dir);

  uint64_t total_bytes = 0;
  for (const auto* list : {&sources, &val_sources})
    for (const SourceFile& s : *list) total_bytes += s.bytes;
  std::optional<ProgressReporter> progress;
  if (progress_out != nullptr) progress.emplace(*progress_out, progress_terminal, total_bytes, "prepare");

  const int threads = o.threads > 0 ? o.threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  ShardStream train(o.out_dir, "train", o.shard_tokens, vocab), val(o.out_dir, "val", o.shard_tokens, vocab);
  int64_t documents = 0;     // completed documents written
  int64_t train_docs = 0;    // documents of `inputs` read (the val_fraction index)
  uint64_t bytes_done = 0;   // of finished sources
  uint64_t bytes_read = 0;

  std::deque<std::future<EncodedBatch>> in_flight;
  const auto write_oldest = [&] {
    EncodedBatch e = in_flight.front().get();
    in_flight.pop_front();
    const std::array<int32_t, 1> eos_token = {eos};
    for (size_t i = 0; i < e.ids.size(); ++i) {
      ShardStream& s = e.batch.val[i] ? val : train;
      s.append(e.ids[i]);
      if (e.batch.pieces[i].last) {
        s.append(eos_token);
        ++documents;
      }
    }
    if (progress) progress->update(bytes_read, train.total() + val.total());
  };
  Batch batch;
  const auto submit = [&] {
    if (batch.pieces.empty()) return;
    if (in_flight.size() >= static_cast<size_t>(threads)) write_oldest();
    in_flight.push_back(std::async(std::launch::async, [&tokenizer, b = std::move(batch)]() mutable {
      EncodedBatch e;
      e.ids.reserve(b.pieces.size());
      for (const DocumentPiece& p : b.pieces) e.ids.push_back(tokenizer.encode(p.text, false));
      e.batch = std::move(b);
      return e;
    }));
    batch = Batch{};
  };

  PrepareResult result;
  // A failed run removes the shards it renamed into place: no partial output looks complete.
  struct RemoveOnFailure {
    const fs::path& dir;
    const ShardStream *train, *val;
    bool armed = true;
    ~RemoveOnFailure() {
      if (!armed) return;
      std::error_code ec;
      for (const ShardStream* s : {train, val})
        for (const ShardEntry& e : s->finished()) fs::remove(dir / e.file, ec);
    }
  } remove_on_failure{o.out_dir, &train, &val};
  for (const bool val_split : {false, true}) {
    for (const SourceFile& src : val_split ? val_sources : sources) {
      DocumentReader reader(src, o.input);
      DocumentPiece piece;
      while (reader.next(piece)) {
        const bool to_val = val_split || is_val_document(train_docs, o.val_fraction);
        if (piece.last && !val_split) ++train_docs;
        batch.bytes += piece.text.size();
        batch.pieces.push_back(std::move(piece));
        batch.val.push_back(to_val ? 1 : 0);
        bytes_read = bytes_done + reader.bytes_read();
        if (batch.bytes >= o.batch_bytes) submit();
      }
      bytes_done += reader.bytes_read();
      bytes_read = bytes_done;
      result.manifest.sources.push_back({.path = src.path, .bytes = reader.bytes_read()});
    }
  }
  submit();
  while (!in_flight.empty()) write_oldest();
  TSP_CHECK(documents > 0, "the inputs hold no documents (empty files or JSONL records with empty text)");

  ShardManifest& m = result.manifest;
  m.tokenizer = loaded.identity;
  m.vocab_size = vocab;
  m.train = train.finish();
  m.val = val.finish();
  m.documents = documents;
  m.eos_between_documents = true;
  write_manifest(o.out_dir / kShardManifestName, m);
  remove_on_failure.armed = false;
  // Shards of the replaced output that the new one does not have.
  std::set<std::string> kept = {kShardManifestName};
  for (const auto* list : {&m.train, &m.val})
    for (const ShardEntry& s : *list) kept.insert(s.file);
  for (const std::string& name : old_files)
    if (!kept.count(name)) fs::remove(o.out_dir / name);

  result.bytes = bytes_done;
  result.train_tokens = train.total();
  result.val_tokens = val.total();
  result.threads = threads;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (progress) progress->finish(result.bytes, result.train_tokens + result.val_tokens);
  return result;
}

}  // namespace tsp::data
