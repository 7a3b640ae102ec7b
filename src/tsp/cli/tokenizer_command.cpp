// `tsp tokenizer encode|decode`: argument handling and the stdin/stdout formats.
#include "tsp/cli/tokenizer_command.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <iterator>
#include <sstream>

#include "tsp/core/check.h"
#include "tsp/data/tokenizer/model_dir_tokenizer.h"

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

void print_ids(const std::vector<int32_t>& ids, std::ostream& out) {
  for (size_t i = 0; i < ids.size(); ++i) out << (i ? " " : "") << ids[i];
  out << "\n";
}

}  // namespace

CLI::App* add_tokenizer_command(CLI::App& app, TokenizerArgs& a) {
  CLI::App* cmd = app.add_subcommand("tokenizer", "encode or decode text with a model directory's tokenizer");
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
  return cmd;
}

int run_tokenizer(TokenizerArgs& a, std::istream& in, std::ostream& out) {
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
