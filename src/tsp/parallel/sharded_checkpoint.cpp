// Sharded checkpoints: layout exchange and checks, assembly of one tensor at a time on rank 0,
// rank 0's file writing with its errors published to every rank, per-rank loading of pieces.
#include "tsp/parallel/sharded_checkpoint.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <optional>
#include <set>

#include "tsp/comm/collectives.h"
#include "tsp/core/atomic_file.h"
#include "tsp/core/checkpoint_dir.h"
#include "tsp/core/check.h"
#include "tsp/core/file_io.h"
#include "tsp/model/hf_checkpoint.h"
#include "tsp/model/weight_names.h"

namespace tsp::parallel {

namespace fs = std::filesystem;

namespace {

// ---------------------------------------------------------------------------------------------
// Rank 0's outcome, made known to every rank.

enum class ErrorKind : int64_t { none, io, invalid, shape, dtype, layout, comm, oom, internal, other };

struct ErrorText {
  ErrorKind kind = ErrorKind::none;
  std::string message;
};

ErrorText describe(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const ShapeError& x) {
    return {ErrorKind::shape, x.what()};
  } catch (const DTypeError& x) {
    return {ErrorKind::dtype, x.what()};
  } catch (const LayoutError& x) {
    return {ErrorKind::layout, x.what()};
  } catch (const InvalidArgument& x) {
    return {ErrorKind::invalid, x.what()};
  } catch (const IoError& x) {
    return {ErrorKind::io, x.what()};
  } catch (const CommError& x) {
    return {ErrorKind::comm, x.what()};
  } catch (const OutOfMemory& x) {
    return {ErrorKind::oom, x.what()};
  } catch (const InternalError& x) {
    return {ErrorKind::internal, x.what()};
  } catch (const std::exception& x) {
    return {ErrorKind::other, x.what()};
  } catch (...) {
    return {ErrorKind::other, "unknown exception"};
  }
}

[[noreturn]] void throw_as(const ErrorText& e) {
  switch (e.kind) {
    case ErrorKind::io: throw IoError(e.message);
    case ErrorKind::invalid: throw InvalidArgument(e.message);
    case ErrorKind::shape: throw ShapeError(e.message);
    case ErrorKind::dtype: throw DTypeError(e.message);
    case ErrorKind::layout: throw LayoutError(e.message);
    case ErrorKind::comm: throw CommError(e.message);
    case ErrorKind::oom: throw OutOfMemory(e.message);
    case ErrorKind::internal: throw InternalError(e.message);
    case ErrorKind::none:
    case ErrorKind::other: break;
  }
  throw Error(e.message);
}

// Runs rank 0's file-system steps, remembering the first failure (later steps are skipped, but
// rank 0 keeps taking part in the collectives), and publishes the outcome to every rank.
class RootStatus {
 public:
  explicit RootStatus(const comm::Communicator& group) : root_(group.rank() == 0) {}

  template <class F>
  void run(F&& step) {
    if (!root_ || error_) return;
    try {
      step();
    } catch (...) {
      error_ = std::current_exception();
    }
  }
  bool failed() const { return error_ != nullptr; }

  // Collective: a broadcast of (kind, length) and, after a failure, of the message. Then rank 0
  // rethrows its exception and every other rank throws one of the same type and message.
  void publish(comm::Communicator& group) {
    const ErrorText mine = error_ ? describe(error_) : ErrorText{};
    Tensor head = Tensor::empty(Shape{2}, DType::i64, MemCategory::comm);
    head.data<int64_t>()[0] = static_cast<int64_t>(mine.kind);
    head.data<int64_t>()[1] = static_cast<int64_t>(mine.message.size());
    comm::broadcast(group, head, 0);
    const auto kind = static_cast<ErrorKind>(head.data<int64_t>()[0]);
    if (kind == ErrorKind::none) return;
    const int64_t length = head.data<int64_t>()[1];
    Tensor text = Tensor::zeros(Shape{(length + 7) / 8}, DType::i64, MemCategory::comm);
    if (root_) std::memcpy(text.raw(), mine.message.data(), static_cast<size_t>(length));
    comm::broadcast(group, text, 0);
    if (root_) std::rethrow_exception(error_);
    throw_as({kind, std::string(static_cast<const char*>(text.raw()), static_cast<size_t>(length))});
  }

 private:
  bool root_;
  std::exception_ptr error_;
};

// Runs a local validation on every rank and makes its failure everyone's (one all-gather of a
// flag): the failing rank rethrows its own exception, the others an InvalidArgument naming it.
// Keeps a rank with bad arguments from leaving its peers waiting in the next collective.
template <class F>
void validate_everywhere(comm::Communicator& group, const std::string& what, F&& check) {
  std::exception_ptr error;
  try {
    check();
  } catch (...) {
    error = std::current_exception();
  }
  Tensor mine = Tensor::empty(Shape{1}, DType::i64, MemCategory::comm);
  mine.data<int64_t>()[0] = error ? 1 : 0;
  Tensor all = Tensor::empty(Shape{group.size()}, DType::i64, MemCategory::comm);
  comm::all_gather(group, mine, all);
  if (error) std::rethrow_exception(error);
  for (int r = 0; r < group.size(); ++r) {
    TSP_CHECK(all.data<int64_t>()[r] == 0, what, ": rank ", r, " of group '", group.name(),
              "' rejected its arguments (its own message says why)");
  }
}

// ---------------------------------------------------------------------------------------------
// The layout: which rank holds which piece of every tensor.

// The dimension a piece ranges over.
int piece_dim(ShardKind kind) { return kind == ShardKind::cols ? 1 : 0; }

// Throws unless the shard describes a usable piece of its tensor.
void check_piece(const ParamShard& s, const std::string& what) {
  TSP_CHECK(s.local.defined(), what, ": ", s.name, " has no local tensor");
  if (s.kind == ShardKind::cols) {
    TSP_CHECK_SHAPE(s.full_shape.rank() == 2, what, ": column shard ", s.name, " of a tensor of shape ",
                    s.full_shape, " (column shards need rank 2)");
  }
  if (s.kind != ShardKind::replicated) {
    TSP_CHECK_SHAPE(s.full_shape.rank() >= 1, what, ": row shard ", s.name, " of a scalar");
    const int64_t size = s.full_shape[piece_dim(s.kind)];
    TSP_CHECK(s.offset >= 0 && s.extent >= 0 && s.offset + s.extent <= size, what, ": ", s.name, " piece [",
              s.offset, ", ", s.offset + s.extent, ") outside [0, ", size, ")");
  }
  TSP_CHECK_SHAPE(s.local.shape() == s.local_shape(), what, ": ", s.name, " local ", s.local.describe(),
                  " does not have its shard's shape ", s.local_shape());
}

// FNV-1a 64 of the name and the full shape: compares two ranks' tensor lists in one number.
int64_t fingerprint(const ParamShard& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](const void* data, size_t bytes) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  };
  mix(s.name.data(), s.name.size());
  const int64_t rank = s.full_shape.rank();
  mix(&rank, sizeof rank);
  for (int64_t d : s.full_shape) mix(&d, sizeof d);
  return static_cast<int64_t>(h);
}

struct Piece {
  int rank = 0;
  int64_t offset = 0, extent = 0;
};

struct TensorPlan {
  ShardKind kind = ShardKind::replicated;
  DType dtype = DType::f32;
  std::vector<Piece> pieces;  // non-empty pieces in rank order (none for replicated tensors)
};

constexpr int64_t kRecordWords = 5;  // fingerprint, kind, offset, extent, dtype

std::string kind_name(ShardKind k) {
  return k == ShardKind::rows ? "rows" : k == ShardKind::cols ? "cols" : "replicated";
}

// Collective: every rank's (kind, offset, extent, dtype) of every tensor, checked identically on
// every rank (from the same gathered data), so an inconsistent layout throws everywhere.
std::vector<TensorPlan> exchange_layout(comm::Communicator& group, const std::vector<ParamShard>& tensors,
                                        const std::string& what) {
  validate_everywhere(group, what, [&] {
    for (const ParamShard& s : tensors) check_piece(s, what);
  });
  const int D = group.size();
  Tensor count = Tensor::empty(Shape{1}, DType::i64, MemCategory::comm);
  count.data<int64_t>()[0] = static_cast<int64_t>(tensors.size());
  Tensor counts = Tensor::empty(Shape{D}, DType::i64, MemCategory::comm);
  comm::all_gather(group, count, counts);
  for (int r = 0; r < D; ++r) {
    TSP_CHECK(counts.data<int64_t>()[r] == static_cast<int64_t>(tensors.size()), what, ": rank ", r, " holds ",
              counts.data<int64_t>()[r], " tensors, rank ", group.rank(), " ", tensors.size());
  }
  const int64_t n = static_cast<int64_t>(tensors.size());
  Tensor mine = Tensor::empty(Shape{n * kRecordWords}, DType::i64, MemCategory::comm);
  for (int64_t i = 0; i < n; ++i) {
    const ParamShard& s = tensors[static_cast<size_t>(i)];
    int64_t* rec = mine.data<int64_t>() + i * kRecordWords;
    rec[0] = fingerprint(s);
    rec[1] = static_cast<int64_t>(s.kind);
    rec[2] = s.offset;
    rec[3] = s.extent;
    rec[4] = static_cast<int64_t>(s.local.dtype());
  }
  Tensor all = Tensor::empty(Shape{D * n * kRecordWords}, DType::i64, MemCategory::comm);
  comm::all_gather(group, mine, all);

  std::vector<TensorPlan> plans(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const ParamShard& s = tensors[static_cast<size_t>(i)];
    auto rec = [&](int r) { return all.data<int64_t>() + (r * n + i) * kRecordWords; };
    TensorPlan& plan = plans[static_cast<size_t>(i)];
    // An empty row piece (a rank of another pipeline stage, replica_view) holds nothing: the
    // kind and dtype are those of the first rank that holds something.
    auto empty = [&](int r) { return static_cast<ShardKind>(rec(r)[1]) == ShardKind::rows && rec(r)[3] == 0; };
    int ref = 0;
    while (ref + 1 < D && empty(ref)) ++ref;
    plan.kind = static_cast<ShardKind>(rec(ref)[1]);
    plan.dtype = static_cast<DType>(rec(ref)[4]);
    for (int r = 0; r < D; ++r) {
      TSP_CHECK(rec(r)[0] == rec(0)[0], what, ": tensor ", i, " (", s.name, " ", s.full_shape, " here) has another ",
                "name or shape on rank ", r, " than on rank 0");
      if (empty(r)) continue;
      TSP_CHECK(rec(r)[1] == rec(ref)[1] && rec(r)[4] == rec(ref)[4], what, ": ", s.name, " is ",
                kind_name(static_cast<ShardKind>(rec(r)[1])), " ", static_cast<DType>(rec(r)[4]), " on rank ", r,
                " but ", kind_name(plan.kind), " ", plan.dtype, " on rank ", ref);
      if (plan.kind != ShardKind::replicated && rec(r)[3] > 0) plan.pieces.push_back({r, rec(r)[2], rec(r)[3]});
    }
    if (plan.kind == ShardKind::replicated) continue;
    std::vector<Piece> sorted = plan.pieces;
    std::stable_sort(sorted.begin(), sorted.end(), [](const Piece& a, const Piece& b) { return a.offset < b.offset; });
    int64_t covered = 0;
    for (const Piece& p : sorted) {
      TSP_CHECK(p.offset == covered, what, ": the pieces of ", s.name, " ", s.full_shape, " do not tile dimension ",
                piece_dim(plan.kind), ": rank ", p.rank, " holds [", p.offset, ", ", p.offset + p.extent,
                ") where [", covered, ", ...) is expected (a gap or an overlap)");
      covered += p.extent;
    }
    TSP_CHECK(covered == s.full_shape[piece_dim(plan.kind)], what, ": the pieces of ", s.name, " ", s.full_shape,
              " cover only [0, ", covered, ") of dimension ", piece_dim(plan.kind));
  }
  return plans;
}

// ---------------------------------------------------------------------------------------------
// Assembly on rank 0.

void send_piece(comm::Communicator& group, const ParamShard& s, const TensorPlan& plan) {
  if (plan.kind == ShardKind::replicated || s.extent == 0) return;
  const Tensor piece = s.local.is_contiguous() ? s.local : Tensor::copy_of(s.local, s.local.dtype(), MemCategory::comm);
  comm::send(group, piece, 0, kCheckpointGatherTag);
}

// Rank 0: the full tensor `s` from its own piece and the pieces received from the others.
Tensor receive_full(comm::Communicator& group, const ParamShard& s, const TensorPlan& plan) {
  Tensor full = Tensor::empty(s.full_shape, plan.dtype, MemCategory::comm);
  if (plan.kind == ShardKind::replicated) {
    full.copy_from(s.local);
    return full;
  }
  const int dim = piece_dim(plan.kind);
  for (const Piece& p : plan.pieces) {
    Tensor region = full.slice(dim, p.offset, p.extent);
    if (p.rank == 0) {
      region.copy_from(s.local);
    } else if (plan.kind == ShardKind::rows) {  // a row range of a contiguous tensor: contiguous
      comm::recv(group, region, p.rank, kCheckpointGatherTag);
    } else {  // columns arrive as [R, extent] and are re-interleaved into the rows
      Tensor piece = Tensor::empty(region.shape(), plan.dtype, MemCategory::comm);
      comm::recv(group, piece, p.rank, kCheckpointGatherTag);
      region.copy_from(piece);
    }
  }
  return full;
}

// Collective: visit(i, full) on rank 0 through `status` (a failure there stops the visits, not the
// transfers).
void assemble_each(comm::Communicator& group, const std::vector<ParamShard>& tensors,
                   const std::vector<TensorPlan>& plans, RootStatus& status,
                   const std::function<void(size_t, const Tensor&)>& visit) {
  for (size_t i = 0; i < tensors.size(); ++i) {
    const ParamShard& s = tensors[i];
    const TensorPlan& plan = plans[i];
    if (group.rank() != 0) {
      send_piece(group, s, plan);
      continue;
    }
    // Rank 0 holding the whole tensor contiguously (replicated, or a group of one) visits it as is.
    const bool whole = s.local.shape() == s.full_shape && s.local.is_contiguous() &&
                       (plan.kind == ShardKind::replicated || plan.pieces.size() == 1);
    if (whole) {
      status.run([&] { visit(i, s.local); });
      continue;
    }
    const Tensor full = receive_full(group, s, plan);
    status.run([&] { visit(i, full); });
  }
}

std::vector<model::SafetensorsEntry> entries_of(const std::vector<ParamShard>& tensors,
                                                const std::vector<TensorPlan>& plans) {
  std::vector<model::SafetensorsEntry> entries;
  for (size_t i = 0; i < tensors.size(); ++i) {
    entries.push_back({tensors[i].name, plans[i].dtype, tensors[i].full_shape});
  }
  return entries;
}

// Rank 0 streams one sharded file (its writer created, filled and committed through `status`).
void stream_file(comm::Communicator& group, const fs::path& path, const ShardedFile& file,
                 const std::vector<TensorPlan>& plans, RootStatus& status) {
  std::optional<model::SafetensorsStreamWriter> writer;
  status.run([&] {
    writer.emplace(path, entries_of(file.tensors, plans), model::SafetensorsWriteOptions{file.metadata});
  });
  assemble_each(group, file.tensors, plans, status, [&](size_t, const Tensor& full) { writer->write_next(full); });
  status.run([&] { writer->commit(); });
}

bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

bool is_checkpoint_file(const std::string& name) {
  return name == model::kConfigFileName || name == model::kSingleWeightsFileName ||
         name == model::kWeightsIndexFileName || name == kCheckpointMarkerFileName ||
         (name.starts_with("model-") && name.ends_with(".safetensors"));
}

// Local checks of save_sharded_hf_checkpoint's arguments (weights against the config, file names).
void check_checkpoint_arguments(const model::ModelConfig& config, const std::vector<ParamShard>& weights,
                                const std::map<std::string, std::string>& extra_files,
                                const std::map<std::string, ShardedFile>& sharded_files, const std::string& what) {
  const std::vector<model::WeightSpec> specs = model::weight_specs(config);
  TSP_CHECK_EQ(weights.size(), specs.size(), what, ": the weights must be the config's tensors in weight_specs order");
  for (size_t i = 0; i < specs.size(); ++i) {
    TSP_CHECK(weights[i].name == specs[i].name, what, ": weight ", i, " is ", weights[i].name, ", expected ",
              specs[i].name);
    TSP_CHECK_SHAPE(weights[i].full_shape == specs[i].shape, what, ": ", specs[i].name, " has shape ",
                    weights[i].full_shape, " but the config implies ", specs[i].shape);
    TSP_CHECK_DTYPE(weights[i].local.dtype() == DType::f32 || weights[i].local.dtype() == DType::bf16, what,
                    ": weight ", specs[i].name, " has dtype ", weights[i].local.dtype());
  }
  std::set<std::string> names;
  auto check_name = [&](const std::string& name) {
    TSP_CHECK(is_plain_file_name(name), what, ": extra file name \"", name, "\" is not a plain file name");
    TSP_CHECK(!is_checkpoint_file(name), what, ": extra file \"", name, "\" would collide with a checkpoint file");
    TSP_CHECK(names.insert(name).second, what, ": extra file \"", name, "\" given twice");
  };
  for (const auto& [name, _] : extra_files) check_name(name);
  for (const auto& [name, _] : sharded_files) check_name(name);
}

// ---------------------------------------------------------------------------------------------
// Loading.

constexpr int64_t kColumnReadBlockBytes = int64_t{4} << 20;

// `src`: an HfCheckpoint or a SafetensorsReader. `missing` says why an absent tensor is an error.
template <class Source>
void read_pieces(const Source& src, const std::vector<ParamShard>& shards, std::string_view prefix,
                 const std::string& where, const std::function<void(const std::string&)>& missing) {
  for (const ParamShard& s : shards) check_piece(s, where);
  for (const ParamShard& s : shards) {
    const std::string name = std::string(prefix) + s.name;
    if (!src.contains(name)) missing(name);
    const model::TensorInfo& ti = src.info(name);
    TSP_CHECK(ti.shape == s.full_shape, where, ": tensor \"", name, "\" is ", ti.shape, " in the file but ",
              s.full_shape, " in this model (a checkpoint of another model?)");
    switch (s.kind) {
      case ShardKind::replicated: src.read_into(name, s.local); break;
      case ShardKind::rows: src.read_rows_into(name, {s.offset, s.offset + s.extent}, s.local); break;
      case ShardKind::cols: {
        // Blocks of whole rows (bounded memory), of which this rank keeps its columns.
        const int64_t rows = s.full_shape[0];
        const int64_t row_bytes = std::max<int64_t>(1, s.full_shape[1] * static_cast<int64_t>(dtype_size(ti.dtype)));
        const int64_t block = std::max<int64_t>(1, kColumnReadBlockBytes / row_bytes);
        for (int64_t r0 = 0; r0 < rows; r0 += block) {
          const int64_t r1 = std::min(rows, r0 + block);
          const Tensor part = src.read_rows(name, {r0, r1}, MemCategory::workspace);
          s.local.slice(0, r0, r1 - r0).copy_from(part.slice(1, s.offset, s.extent));
        }
        break;
      }
    }
  }
}

}  // namespace

void for_each_assembled_tensor(comm::Communicator& group, const std::vector<ParamShard>& tensors,
                               const std::function<void(size_t index, const Tensor& full)>& visit) {
  const std::vector<TensorPlan> plans = exchange_layout(group, tensors, "for_each_assembled_tensor");
  RootStatus status(group);
  assemble_each(group, tensors, plans, status, visit);
  status.publish(group);
}

void save_sharded_safetensors(comm::Communicator& group, const fs::path& path, const ShardedFile& file) {
  const std::string what = "save_sharded_safetensors(" + path.string() + ")";
  const std::vector<TensorPlan> plans = exchange_layout(group, file.tensors, what);
  RootStatus status(group);
  stream_file(group, path, file, plans, status);
  status.publish(group);
}

void save_sharded_hf_checkpoint(comm::Communicator& group, const model::ModelConfig& config,
                                const std::vector<ParamShard>& weights, const fs::path& dir,
                                const std::map<std::string, std::string>& extra_files,
                                const std::map<std::string, ShardedFile>& sharded_files) {
  const std::string what = "save_sharded_hf_checkpoint(" + dir.string() + ")";
  validate_everywhere(group, what,
                      [&] { check_checkpoint_arguments(config, weights, extra_files, sharded_files, what); });
  const std::vector<TensorPlan> weight_plans = exchange_layout(group, weights, what);
  std::vector<std::vector<TensorPlan>> file_plans;
  for (const auto& [name, file] : sharded_files) {
    file_plans.push_back(exchange_layout(group, file.tensors, what + " " + name));
  }

  // Rank 0 prepares the fresh sibling directory; a refusal (not a checkpoint, unwritable parent)
  // reaches every rank before any tensor moves.
  RootStatus status(group);
  RemoveTreeOnExit cleanup;  // rank 0: on any failure the new files vanish
  fs::path target, fresh;
  status.run([&] {
    target = checkpoint_target(dir, what);
    check_replaceable(target, what);
    std::vector<std::string> files{model::kConfigFileName, model::kSingleWeightsFileName};
    for (const auto& [name, _] : extra_files) files.push_back(name);
    for (const auto& [name, _] : sharded_files) files.push_back(name);
    remove_stale_checkpoint_temporaries(target);
    fresh = make_checkpoint_temporary(target, files, what);
    cleanup.path = fresh;
  });
  status.publish(group);

  const ShardedFile weight_file{weights, {{"format", "pt"}}};  // HfCheckpointWriteOptions' metadata
  stream_file(group, fresh / model::kSingleWeightsFileName, weight_file, weight_plans, status);
  size_t f = 0;
  for (const auto& [name, file] : sharded_files) stream_file(group, fresh / name, file, file_plans[f++], status);
  status.run([&] {
    for (const auto& [name, bytes] : extra_files) write_file_atomically(fresh / name, bytes);
    model::save_config(config, fresh / model::kConfigFileName);
    replace_checkpoint_directory(fresh, target, /*allow_exchange=*/true);
    cleanup.path.clear();
    remove_stale_checkpoint_temporaries(target);
  });
  status.publish(group);
}

void load_shards_from_hf(const fs::path& dir, const std::vector<ParamShard>& shards) {
  const model::HfCheckpoint checkpoint(dir);
  const std::string where = "checkpoint " + dir.string();
  read_pieces(checkpoint, shards, {}, where, [&](const std::string& name) {
    TSP_THROW(InvalidArgument, where, " has no tensor \"", name, "\": it holds another model (",
              checkpoint.config().summary(), ", tie_word_embeddings=", checkpoint.config().tie_word_embeddings(), ")");
  });
}

void read_shards(const model::SafetensorsReader& file, const std::vector<ParamShard>& shards,
                 std::string_view name_prefix) {
  const std::string where = "safetensors file " + file.path().string();
  read_pieces(file, shards, name_prefix, where, [&](const std::string& name) {
    TSP_THROW(IoError, where, " has no tensor \"", name, "\"");
  });
}

}  // namespace tsp::parallel
