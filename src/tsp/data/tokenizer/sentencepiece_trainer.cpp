// libsentencepiece's trainer fed through its SentenceIterator interface, the model proto returned
// in memory and written with the tokenizer_config.json that model_dir_tokenizer.h reads.
#include "tsp/data/tokenizer/sentencepiece_trainer.h"

#include <sentencepiece_trainer.h>

#include <chrono>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "tsp/core/atomic_file.h"
#include "tsp/core/check.h"
#include "tsp/core/file_io.h"
#include "tsp/core/output_file.h"

// Exported by libsentencepiece (0.1.97) but declared only in its private common.h: the level below
// which its LOG() lines are dropped (2: errors only). The trainer otherwise logs every iteration.
namespace sentencepiece::logging {
void SetMinLogLevel(int level);
int GetMinLogLevel();
}  // namespace sentencepiece::logging

namespace tsp::data {

namespace {

constexpr size_t kMaxSentenceBytes = 16384;

// Lines of the documents of every source, in order, blank ones skipped.
class DocumentLines final : public sentencepiece::SentenceIterator {
 public:
  DocumentLines(std::vector<SourceFile> sources, const InputOptions& options)
      : sources_(std::move(sources)), options_(options) {
    advance();
  }
  bool done() const override { return done_; }
  void Next() override { advance(); }
  const std::string& value() const override { return line_; }
  sentencepiece::util::Status status() const override { return status_; }
  int64_t sentences() const { return sentences_; }
  uint64_t bytes() const { return bytes_; }
  const std::string& error() const { return error_; }

 private:
  void advance() {
    try {
      while (true) {
        if (take_line()) return;
        if (reader_ && reader_->next(piece_)) {
          text_ = std::move(piece_.text);
          pos_ = 0;
          continue;
        }
        if (reader_) bytes_ += reader_->bytes_read();
        reader_.reset();
        if (next_source_ == sources_.size()) {
          done_ = true;
          return;
        }
        reader_ = std::make_unique<DocumentReader>(sources_[next_source_++], options_);
      }
    } catch (const std::exception& e) {
      // The trainer only sees a status; the message is rethrown by train_sentencepiece.
      error_ = e.what();
      status_ = sentencepiece::util::Status(sentencepiece::util::StatusCode::kInternal, error_);
      done_ = true;
    }
  }
  // The next non-blank line of text_ into line_.
  bool take_line() {
    while (pos_ < text_.size()) {
      size_t end = text_.find('\n', pos_);
      if (end == std::string::npos) end = text_.size();
      std::string_view line(text_.data() + pos_, end - pos_);
      pos_ = end + 1;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
      if (line.size() > kMaxSentenceBytes) line = line.substr(0, kMaxSentenceBytes);
      line_.assign(line);
      ++sentences_;
      return true;
    }
    return false;
  }

  std::vector<SourceFile> sources_;
  InputOptions options_;
  size_t next_source_ = 0;
  std::unique_ptr<DocumentReader> reader_;
  DocumentPiece piece_;
  std::string text_;
  size_t pos_ = 0;
  std::string line_;
  bool done_ = false;
  int64_t sentences_ = 0;
  uint64_t bytes_ = 0;
  std::string error_;
  sentencepiece::util::Status status_;
};

// Before training: --out may hold tokenizer files only when an earlier `tsp tokenizer train` wrote
// them (its tokenizer_config.json carries the generator marker); a user's tokenizer is never
// replaced, and a tokenizer.json there (which loaders prefer to tokenizer.model) is refused too.
void check_tokenizer_out_dir(const std::filesystem::path& out_dir) {
  namespace fs = std::filesystem;
  const fs::path config = out_dir / "tokenizer_config.json";
  bool ours = false;
  if (fs::is_regular_file(config)) ours = has_generator_marker(read_whole_file(config, "tokenizer config"));
  for (const char* name : {"tokenizer.model", "tokenizer.json", "tokenizer_config.json"}) {
    const bool replaceable = ours && std::string_view(name) != "tokenizer.json";
    TSP_CHECK(!fs::exists(out_dir / name) || replaceable, "--out ", out_dir.string(), " already holds ", name,
              " not written by tsp tokenizer train; refusing to replace it (choose a new directory)");
  }
}

}  // namespace

SentencePieceTrainResult train_sentencepiece(const SentencePieceTrainOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  TSP_CHECK(o.type == "bpe" || o.type == "unigram", "--type ", o.type, ": expected bpe or unigram");
  // 3 specials + 256 byte pieces + at least one learned piece.
  TSP_CHECK(o.vocab_size >= 260, "--vocab-size ", o.vocab_size, " is too small: byte fallback alone needs 259 ids");
  TSP_CHECK(o.threads >= 1, "--threads must be >= 1");
  TSP_CHECK(!std::filesystem::exists(o.out_dir) || std::filesystem::is_directory(o.out_dir), "--out ",
            o.out_dir.string(), " exists and is not a directory");
  check_tokenizer_out_dir(o.out_dir);
  DocumentLines lines(list_sources(o.inputs, o.input), o.input);

  const std::unordered_map<std::string, std::string> args = {
      {"model_type", o.type},
      {"vocab_size", std::to_string(o.vocab_size)},
      {"character_coverage", std::to_string(o.character_coverage)},
      {"byte_fallback", "true"},
      {"split_digits", "true"},
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"allow_whitespace_only_pieces", "true"},
      {"max_sentence_length", std::to_string(kMaxSentenceBytes)},
      {"input_sentence_size", std::to_string(o.max_sentences)},
      {"shuffle_input_sentence", "true"},
      {"num_threads", std::to_string(o.threads)},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      {"hard_vocab_limit", "true"},
  };
  // The seed of the library's sampling and shuffling (its own global generator).
  sentencepiece::SetRandomGeneratorSeed(o.seed);
  std::string model;
  const int log_level = sentencepiece::logging::GetMinLogLevel();
  sentencepiece::logging::SetMinLogLevel(2);
  const auto status = sentencepiece::SentencePieceTrainer::Train(args, &lines, &model);
  sentencepiece::logging::SetMinLogLevel(log_level);
  if (!lines.error().empty()) TSP_THROW(InvalidArgument, lines.error());
  TSP_CHECK(status.ok(), "SentencePiece training failed: ", status.ToString());
  TSP_CHECK(lines.sentences() > 0, "the inputs hold no text to train on");

  std::filesystem::create_directories(o.out_dir);
  SentencePieceTrainResult r;
  r.model = o.out_dir / "tokenizer.model";
  write_file_atomically(r.model, model);
  // What load_tokenizer_dir reads: BOS before every encoded prompt (as Llama), EOS id 2.
  const nlohmann::ordered_json config = {{"generator", "tsp tokenizer train"},
                                         {"add_bos_token", true},  {"add_eos_token", false},
                                         {"bos_token", "<s>"},      {"eos_token", "</s>"},
                                         {"unk_token", "<unk>"},    {"tokenizer_class", "LlamaTokenizer"},
                                         {"model_max_length", 1000000000}};
  write_file_atomically(o.out_dir / "tokenizer_config.json", config.dump(2) + "\n");
  r.sentences = lines.sentences();
  r.bytes = lines.bytes();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace tsp::data
