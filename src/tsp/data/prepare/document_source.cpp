// Listing inputs and reading their documents, line by line through getline(3).
#include "tsp/data/prepare/document_source.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "tsp/core/check.h"
#include "tsp/core/file_io.h"

namespace tsp::data {

namespace {

namespace fs = std::filesystem;

bool is_jsonl_name(const fs::path& p) {
  const std::string ext = p.extension().string();
  return ext == ".jsonl" || ext == ".ndjson";
}

bool hidden(const fs::path& p) {
  const std::string name = p.filename().string();
  return !name.empty() && name[0] == '.';
}

bool blank(const std::string& line) {
  return std::all_of(line.begin(), line.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
}

// "%" alone on its line (with its newline, "\r\n" too): the fortune files' record separator.
bool percent_line(const std::string& line) {
  return line == "%" || line == "%\n" || line == "%\r\n";
}

// The longest prefix of s (at most n bytes) that does not end inside a UTF-8 character.
size_t utf8_cut(const std::string& s, size_t n) {
  if (n >= s.size()) return s.size();
  size_t cut = n;
  // Step back over continuation bytes (10xxxxxx), at most 3.
  for (int k = 0; k < 3 && cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80; ++k) --cut;
  return cut > 0 ? cut : n;
}

}  // namespace

DocumentUnit parse_document_unit(const std::string& name) {
  if (name == "file") return DocumentUnit::file;
  if (name == "blankline") return DocumentUnit::blankline;
  if (name == "percent") return DocumentUnit::percent;
  TSP_THROW(InvalidArgument, "document separator '", name, "': expected file, blankline or percent");
}

std::vector<SourceFile> list_sources(const std::vector<std::string>& inputs, const InputOptions& options) {
  std::vector<SourceFile> out;
  bool stdin_seen = false;
  const auto add = [&](const fs::path& p) {
    SourceFile s;
    s.path = p.string();
    s.jsonl = options.format == InputFormat::jsonl || (options.format == InputFormat::automatic && is_jsonl_name(p));
    OpenFile f = open_regular_file(p, "input file");  // unreadable or not a regular file: IoError
    s.bytes = f.size;
    out.push_back(std::move(s));
  };
  for (const std::string& in : inputs) {
    if (in == "-") {
      TSP_CHECK(!stdin_seen, "input '-' (stdin) given more than once");
      stdin_seen = true;
      out.push_back({.path = "-", .jsonl = options.format == InputFormat::jsonl, .bytes = 0});
      continue;
    }
    std::error_code ec;
    const fs::file_status st = fs::status(in, ec);
    TSP_CHECK_T(IoError, !ec && fs::exists(st), "input ", in, " does not exist");
    if (!fs::is_directory(st)) {
      add(in);
      continue;
    }
    std::vector<fs::path> files;
    fs::recursive_directory_iterator it(in, fs::directory_options::none, ec), end;
    TSP_CHECK_T(IoError, !ec, "cannot list input directory ", in, ": ", ec.message());
    for (; it != end; it.increment(ec)) {
      TSP_CHECK_T(IoError, !ec, "cannot list input directory ", in, ": ", ec.message());
      if (hidden(it->path())) {
        if (it->is_directory()) it.disable_recursion_pending();
        continue;
      }
      if (it->is_regular_file()) files.push_back(it->path());
    }
    std::sort(files.begin(), files.end());
    for (const fs::path& p : files) add(p);
  }
  TSP_CHECK(!out.empty(), "no input files (directories given hold no regular files)");
  return out;
}

DocumentReader::DocumentReader(const SourceFile& source, const InputOptions& options)
    : source_(source), options_(options) {
  if (source_.path == "-") {
    file_ = stdin;
  } else {
    file_ = std::fopen(source_.path.c_str(), "rb");
    TSP_CHECK_T(IoError, file_ != nullptr, "cannot open input ", source_.path, ": ", errno_text(errno));
    owns_file_ = true;
  }
}

DocumentReader::~DocumentReader() {
  if (owns_file_) std::fclose(file_);
  std::free(line_buf_);
}

bool DocumentReader::read_line(std::string& line) {
  if (eof_) return false;
  errno = 0;
  const ssize_t n = ::getline(&line_buf_, &line_cap_, file_);
  if (n < 0) {
    TSP_CHECK_T(IoError, !std::ferror(file_), "cannot read input ", source_.path == "-" ? "stdin" : source_.path, ": ",
                errno_text(errno));
    eof_ = true;
    return false;
  }
  ++line_no_;
  bytes_read_ += static_cast<uint64_t>(n);
  line.assign(line_buf_, static_cast<size_t>(n));
  return true;
}

bool DocumentReader::next(DocumentPiece& piece) {
  return source_.jsonl ? next_jsonl(piece) : next_text(piece);
}

bool DocumentReader::next_text(DocumentPiece& piece) {
  const bool by_block = options_.unit != DocumentUnit::file;
  const auto separates = [&](const std::string& l) {
    return options_.unit == DocumentUnit::blankline ? blank(l) : percent_line(l);
  };
  std::string line;
  // pending_ holds text carried over from an over-long line; a piece ends after a newline at or
  // beyond kPieceBytes, at a separator line (blankline, percent units) or at the end of the file.
  while (pending_.size() < kPieceBytes && read_line(line)) {
    if (by_block && separates(line)) {
      if (pending_.empty() && !in_document_) continue;  // blank lines between or before documents
      piece.text = std::move(pending_);
      pending_.clear();
      piece.last = true;
      in_document_ = false;
      return true;
    }
    pending_ += line;
  }
  if (pending_.size() >= kPieceBytes) {
    // Cut after the last newline below kMaxPieceBytes, else (one huge line) at a character boundary.
    size_t cut = pending_.size();
    if (cut > kMaxPieceBytes) {
      const size_t nl = pending_.rfind('\n', kMaxPieceBytes - 1);
      cut = nl != std::string::npos && nl + 1 >= kPieceBytes ? nl + 1 : utf8_cut(pending_, kMaxPieceBytes);
    }
    piece.text = pending_.substr(0, cut);
    pending_.erase(0, cut);
    piece.last = false;
    in_document_ = true;
    return true;
  }
  // End of the file: what is left closes the open document (an empty remainder still ends it).
  if (pending_.empty() && !in_document_) return false;
  piece.text = std::move(pending_);
  pending_.clear();
  piece.last = true;
  in_document_ = false;
  return true;
}

bool DocumentReader::next_jsonl(DocumentPiece& piece) {
  std::string line;
  while (read_line(line)) {
    if (blank(line)) continue;
    const std::string where =
        (source_.path == "-" ? std::string("stdin") : source_.path) + ":" + std::to_string(line_no_);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      TSP_THROW(InvalidArgument, where, ": not valid JSON (", e.what(), ")");
    }
    TSP_CHECK(j.is_object(), where, ": a JSON ", j.type_name(), ", expected an object with a string field \"",
              options_.field, "\"");
    const auto it = j.find(options_.field);
    TSP_CHECK(it != j.end(), where, ": no field \"", options_.field, "\" (use --field to name the text field)");
    TSP_CHECK(it->is_string(), where, ": field \"", options_.field, "\" is a JSON ", it->type_name(), ", not a string");
    piece.text = it->get<std::string>();
    if (piece.text.empty()) continue;
    piece.last = true;
    return true;
  }
  return false;
}

}  // namespace tsp::data
