// The documents of `tsp data prepare` and `tsp tokenizer train`: text files, directories (recursive,
// sorted by path), JSONL files and stdin, read in order as pieces of about 64 KiB.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace tsp::data {

enum class InputFormat { automatic, text, jsonl };  // automatic: .jsonl/.ndjson are JSONL, the rest text
// Text inputs: one file is one document, or blocks separated by blank lines, or by lines holding
// only "%" (the fortune/strfile format of Debian's fortunes packages).
enum class DocumentUnit { file, blankline, percent };
// "file", "blankline" or "percent" (the --doc-sep values); anything else -> InvalidArgument.
DocumentUnit parse_document_unit(const std::string& name);

struct InputOptions {
  InputFormat format = InputFormat::automatic;
  std::string field = "text";  // JSONL: the string field holding a document
  DocumentUnit unit = DocumentUnit::file;
};

struct SourceFile {
  std::string path;    // "-": stdin
  bool jsonl = false;  // read as JSONL
  uint64_t bytes = 0;  // size on disk at listing (0 for stdin: unknown)
};

// Inputs to files: a directory is walked recursively, its regular files (hidden names and
// everything under hidden directories skipped) in sorted path order; a file or "-" stands for
// itself. A missing or unreadable input throws IoError naming it, before any work; "-" at most once.
std::vector<SourceFile> list_sources(const std::vector<std::string>& inputs, const InputOptions& options);

// A piece of a document: documents larger than kPieceBytes are cut after a newline (text files)
// so that they encode in parallel and in bounded memory; `last` marks a document's final piece.
struct DocumentPiece {
  std::string text;
  bool last = true;
};

// Text pieces end after the first newline at or beyond this many bytes (a line without one is cut
// at kMaxPieceBytes, at a UTF-8 character boundary). 64 KiB: SentencePiece encodes a 1 MiB string
// 2x slower per byte than 64 KiB ones (measured with spm_encode); each cut costs at most the
// merges across one newline.
inline constexpr size_t kPieceBytes = size_t{64} << 10;
inline constexpr size_t kMaxPieceBytes = size_t{16} << 20;

// Reads the pieces of one source in order. Text (DocumentUnit::file): the file is one document (an
// empty file none); DocumentUnit::blankline: blocks of lines separated by lines that are empty or
// whitespace only, which are dropped; DocumentUnit::percent: blocks separated by lines holding only
// "%" (dropped; empty blocks are no documents). JSONL: every non-blank line is a JSON object whose `field`
// is a string: one document (an empty string is none). A line that is not JSON, not an object, or
// lacks the field throws InvalidArgument "FILE:LINE: ...".
class DocumentReader {
 public:
  DocumentReader(const SourceFile& source, const InputOptions& options);
  ~DocumentReader();
  DocumentReader(const DocumentReader&) = delete;
  DocumentReader& operator=(const DocumentReader&) = delete;

  bool next(DocumentPiece& piece);  // false at the end of the source
  uint64_t bytes_read() const { return bytes_read_; }

 private:
  bool read_line(std::string& line);  // with its '\n' (the last line may lack it); false at EOF
  bool next_text(DocumentPiece& piece);
  bool next_jsonl(DocumentPiece& piece);

  SourceFile source_;
  InputOptions options_;
  std::FILE* file_ = nullptr;
  bool owns_file_ = false;
  char* line_buf_ = nullptr;
  size_t line_cap_ = 0;
  int64_t line_no_ = 0;
  uint64_t bytes_read_ = 0;
  bool eof_ = false;
  bool in_document_ = false;  // a document's pieces have been returned, its last not yet
  std::string pending_;       // the start of the next piece
};

}  // namespace tsp::data
