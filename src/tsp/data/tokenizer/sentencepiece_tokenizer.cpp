// libsentencepiece behind the Tokenizer interface. Control tokens (<s>, </s>) decode to nothing in
// SentencePiece itself; with skip_special = false they are written out by their piece text.
#include "tsp/data/tokenizer/sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include "tsp/core/check.h"

namespace tsp::data {

struct SentencePieceTokenizer::Impl {
  sentencepiece::SentencePieceProcessor sp;
  SentencePieceOptions options;
  std::string path;
};

SentencePieceTokenizer::SentencePieceTokenizer(const std::filesystem::path& model_file, SentencePieceOptions options)
    : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
  impl_->path = model_file.string();
  const auto status = impl_->sp.Load(model_file.string());
  if (!status.ok()) TSP_THROW(InvalidArgument, "cannot load SentencePiece model ", model_file.string(), ": ", status.ToString());
}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

std::vector<int32_t> SentencePieceTokenizer::encode(std::string_view text, bool add_special) const {
  std::vector<int> pieces;
  const auto status = impl_->sp.Encode(text, &pieces);
  TSP_CHECK(status.ok(), "SentencePiece encode failed: ", status.ToString());
  std::vector<int32_t> ids;
  ids.reserve(pieces.size() + 2);
  if (add_special && impl_->options.add_bos && impl_->sp.bos_id() >= 0) ids.push_back(impl_->sp.bos_id());
  ids.insert(ids.end(), pieces.begin(), pieces.end());
  if (add_special && impl_->options.add_eos && impl_->sp.eos_id() >= 0) ids.push_back(impl_->sp.eos_id());
  return ids;
}

std::string SentencePieceTokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  const int n = impl_->sp.GetPieceSize();
  std::string out;
  std::vector<int> run;  // consecutive ordinary ids, decoded together (spaces and byte pieces join)
  const auto flush = [&] {
    if (run.empty()) return;
    std::string text;
    const auto status = impl_->sp.Decode(run, &text);
    TSP_CHECK(status.ok(), "SentencePiece decode failed: ", status.ToString());
    // A run after earlier text keeps its leading space (SentencePiece drops it at the start only).
    if (!out.empty() && impl_->sp.IdToPiece(run.front()).rfind("\xE2\x96\x81", 0) == 0) out += ' ';
    out += text;
    run.clear();
  };
  for (size_t i = 0; i < ids.size(); ++i) {
    TSP_CHECK(ids[i] >= 0 && ids[i] < n, "SentencePiece: token id ", ids[i], " at position ", i,
              " is outside the vocabulary (0..", n - 1, ")");
    if (is_special(ids[i])) {
      flush();
      if (!skip_special) out += impl_->sp.IdToPiece(ids[i]);
    } else {
      run.push_back(ids[i]);
    }
  }
  flush();
  return out;
}

int64_t SentencePieceTokenizer::vocab_size() const { return impl_->sp.GetPieceSize(); }

bool SentencePieceTokenizer::is_special(int32_t id) const {
  return impl_->sp.IsControl(id);
}

std::string SentencePieceTokenizer::describe() const { return "tokenizer.model (SentencePiece)"; }

std::optional<int32_t> SentencePieceTokenizer::id_of(std::string_view piece) const {
  const int id = impl_->sp.PieceToId(piece);
  if (id == impl_->sp.unk_id() && piece != impl_->sp.IdToPiece(id)) return std::nullopt;
  return id;
}

}  // namespace tsp::data
