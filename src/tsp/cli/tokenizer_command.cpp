// `tsp tokenizer encode|decode|train`: argument handling and the stdin/stdout formats.
#include "tsp/cli/tokenizer_command.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <iterator>
#include <sstream>

#include "tsp/cli/int_range.h"
#include "tsp/core/check.h"
#include "tsp/data/tokenizer/model_dir_tokenizer.h"
#include "tsp/data/tokenizer/sentencepiece_trainer.h"

namespace tsp::cli {

namespace {

using json = nlohmann::json;

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::string tok;
  const auto flush = [&] {
    if (tok.empty()) return;
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(tok, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    TSP_CHECK(used == tok.size() && v >= INT32_MIN && v <= INT32_MAX, "tsp tokenizer decode: '", tok,
              "' is not a token id");
    ids.push_back(static_cast<int32_t>(v));
    tok.clear();
  };
  for (char c : s) {
    if (c == ' ' || c == ',' || c == '\n' || c == '\t' || c == '\r' || c == '[' || c == ']') flush();
    else tok += c;
  }
  flush();
  return ids;
}

int run_train(const TokenizerArgs& a, std::ostream& out) {
  data::SentencePieceTrainOptions o;
  o.inputs = a.inputs;
  o.input.format = a.format == "text" ? data::InputFormat::text
                   : a.format == "jsonl" ? data::InputFormat::jsonl
                                         : data::InputFormat::automatic;
  o.input.field = a.field;
  o.input.unit = data::parse_document_unit(a.doc_sep);
  o.type = a.type;
  o.vocab_size = a.vocab_size;
  o.max_sentences = a.max_sentences;
  o.threads = static_cast<int>(a.threads);
  o.seed = static_cast<uint32_t>(a.seed);
  o.out_dir = a.out;
  const data::SentencePieceTrainResult r = data::train_sentencepiece(o);
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.1f s", r.seconds);
  out << "trained a SentencePiece " << a.type << " vocabulary of " << a.vocab_size << " pieces on " << r.sentences
      << " lines (" << r.bytes << " bytes) in " << secs << ": " << r.model.string() << std::endl;
  return 0;
}

void print_ids(const std::vector<int32_t>& ids, std::ostream& out) {
  for (size_t i = 0; i < ids.size(); ++i) out << (i ? " " : "") << ids[i];
  out << "\n";
}

}  // namespace

CLI::App* add_tokenizer_command(CLI::App& app, TokenizerArgs& a) {
  CLI::App* cmd = app.add_subcommand("tokenizer", "encode or decode text with a model directory's tokenizer, or "
                                                  "train a SentencePiece vocabulary");
  cmd->require_subcommand(1);
  CLI::App* enc = cmd->add_subcommand("encode", "text (stdin or --text) to token ids on stdout");
  CLI::App* dec = cmd->add_subcommand("decode", "token ids (stdin or --ids) to text on stdout");
  for (CLI::App* c : {enc, dec}) {
    c->add_option("--tokenizer", a.tokenizer,
                  "directory with tokenizer.json or tokenizer.model (and tokenizer_config.json), or 'byte'")
        ->required();
    c->add_flag("--jsonl", a.jsonl,
                enc == c ? "stdin holds one JSON string per line; prints one JSON array of ids per line"
                         : "stdin holds one JSON array of ids per line; prints one JSON string per line");
  }
  enc->add_option("--text", a.text, "the text to encode (default: all of stdin)");
  enc->add_flag("--no-special", a.no_special, "leave out the tokenizer's BOS/EOS template");
  dec->add_option("--ids", a.ids, "the ids, separated by spaces or commas (default: all of stdin)");
  dec->add_flag("--skip-special", a.skip_special, "special tokens (BOS, EOS, ...) produce no text");
  enc->callback([&a] { a.encode = true; });

  CLI::App* tr = cmd->add_subcommand(
      "train", "train a SentencePiece vocabulary (BPE or unigram, byte fallback) on text; writes OUT/tokenizer.model "
               "and OUT/tokenizer_config.json (docs/data.md)");
  tr->add_option("inputs", a.inputs, "input files, directories or '-' (stdin), read as tsp data prepare reads them")
      ->required();
  tr->add_option("--out", a.out, "output directory (created; its tokenizer files are replaced)")->required();
  tr->add_option("--type", a.type, "bpe or unigram")->check(CLI::IsMember({"bpe", "unigram"}))->capture_default_str();
  tr->add_option("--vocab-size", a.vocab_size, "pieces in the vocabulary (with <unk> <s> </s> and 256 byte pieces)")
      ->check(int_range(260, 1 << 20))
      ->capture_default_str();
  tr->add_option("--max-sentences", a.max_sentences,
                 "lines the trainer keeps, a seeded sample of them when there are more (0: all)")
      ->check(int_range(0, INT64_MAX))
      ->capture_default_str();
  tr->add_option("--threads", a.threads, "trainer threads (1: reproducible byte for byte, see docs/data.md)")
      ->check(int_range(1, 1024))
      ->capture_default_str();
  tr->add_option("--seed", a.seed, "seed of the trainer's sampling")
      ->check(int_range(0, 4294967294))
      ->capture_default_str();
  tr->add_option("--format", a.format, "auto (.jsonl/.ndjson are JSONL), text or jsonl")
      ->check(CLI::IsMember({"auto", "text", "jsonl"}))
      ->capture_default_str();
  tr->add_option("--field", a.field, "JSONL: the string field holding each document")->capture_default_str();
  tr->add_option("--doc-sep", a.doc_sep, "text: file, blankline or percent (training sees lines either way)")
      ->check(CLI::IsMember({"file", "blankline", "percent"}))
      ->capture_default_str();
  tr->callback([&a] { a.train = true; });
  return cmd;
}

int run_tokenizer(TokenizerArgs& a, std::istream& in, std::ostream& out) {
  if (a.train) return run_train(a, out);
  const std::unique_ptr<data::Tokenizer> t =
      a.tokenizer == "byte" ? data::make_byte_tokenizer() : data::load_tokenizer_dir(a.tokenizer);
  const bool add_special = !a.no_special;
  if (a.jsonl) {
    std::string line;
    for (int64_t n = 1; std::getline(in, line); ++n) {
      json j;
      try {
        j = json::parse(line);
      } catch (const json::exception& e) {
        TSP_THROW(InvalidArgument, "tsp tokenizer: stdin line ", n, " is not JSON: ", e.what());
      }
      if (a.encode) {
        TSP_CHECK(j.is_string(), "tsp tokenizer encode --jsonl: line ", n, " is not a JSON string");
        out << json(t->encode(j.get<std::string>(), add_special)).dump() << "\n";
      } else {
        TSP_CHECK(j.is_array(), "tsp tokenizer decode --jsonl: line ", n, " is not a JSON array");
        const std::vector<int32_t> ids = j.get<std::vector<int32_t>>();
        out << json(t->decode(ids, a.skip_special)).dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
      }
    }
    return 0;
  }
  if (a.encode) {
    const std::string text = !a.text.empty() ? a.text : std::string(std::istreambuf_iterator<char>(in), {});
    print_ids(t->encode(text, add_special), out);
  } else {
    const std::string s = !a.ids.empty() ? a.ids : std::string(std::istreambuf_iterator<char>(in), {});
    out << t->decode(parse_ids(s), a.skip_special);
  }
  out.flush();
  return 0;
}

}  // namespace tsp::cli
