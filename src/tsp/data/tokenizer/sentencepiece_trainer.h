// Training a SentencePiece vocabulary (BPE or unigram) with libsentencepiece's trainer (Debian's
// libsentencepiece_train) on documents read as `tsp data prepare` reads them; writes a model
// directory's tokenizer files: tokenizer.model and tokenizer_config.json.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "tsp/data/prepare/document_source.h"

namespace tsp::data {

struct SentencePieceTrainOptions {
  std::vector<std::string> inputs;  // files, directories, JSONL, "-"
  InputOptions input;
  std::string type = "bpe";  // "bpe" or "unigram"
  int64_t vocab_size = 8000;
  // Sentences the trainer keeps (0: all). Above it libsentencepiece samples with its seeded
  // generator; tsp passes a fixed seed, so the sample is the same every run.
  int64_t max_sentences = 0;
  double character_coverage = 0.9995;
  int threads = 1;  // trainer threads (unigram's E-step); see docs/data.md on reproducibility
  uint32_t seed = 1234;
  std::filesystem::path out_dir;
};

struct SentencePieceTrainResult {
  std::filesystem::path model;  // out_dir/tokenizer.model
  int64_t sentences = 0;        // lines handed to the trainer
  uint64_t bytes = 0;
  double seconds = 0;
};

// Training sentences are the non-blank lines of every document (SentencePiece learns from
// sentences; lines longer than 16 KiB are cut there). Settings (as Llama's tokenizer): identity
// normalization, whitespace kept as written, digits split, byte fallback (every input encodes),
// <unk>=0 <s>=1 </s>=2. The library's messages are silenced; a failure throws InvalidArgument with
// its status. out_dir is created; existing tokenizer files there are replaced atomically.
SentencePieceTrainResult train_sentencepiece(const SentencePieceTrainOptions& options);

}  // namespace tsp::data
