// safetensors files: a validating reader that loads one tensor (or a row range of it) by name
// with positioned reads, and an atomic writer. Format: docs/formats.md, huggingface.co/docs/safetensors.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tsp/core/atomic_file.h"
#include "tsp/core/file_io.h"
#include "tsp/core/tensor.h"

namespace tsp::model {

// "F32" <-> f32, "BF16" <-> bf16, "I32" <-> i32, "I64" <-> i64.
std::string_view safetensors_dtype_name(DType dtype);

// One entry of a safetensors header. Offsets are absolute positions in the file.
struct TensorInfo {
  std::string name;
  DType dtype = DType::f32;
  Shape shape;
  uint64_t file_begin = 0;
  uint64_t file_end = 0;
  uint64_t nbytes() const { return file_end - file_begin; }
};

struct RowRange {
  int64_t begin = 0;
  int64_t end = 0;  // exclusive
};

// Opens and validates a file: the whole header is checked at construction, data is read on
// demand with pread (nothing is mapped or loaded eagerly). Every problem throws IoError naming
// the file: shorter than 8 bytes, header length beyond the file or above 100 MB, header not a
// JSON object, unknown dtype, bad shape (negative, or the product of its non-zero extents times
// the dtype size above 2^63 - 1), data_offsets out of range, overlapping, leaving holes or not
// matching dtype x shape, __metadata__ not string -> string. Thread safe for reads.
class SafetensorsReader {
 public:
  explicit SafetensorsReader(std::filesystem::path path);  // movable, not copyable

  const std::filesystem::path& path() const { return path_; }
  // Tensors in file (offset) order.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  // Throws IoError naming the file and the tensor if absent.
  const TensorInfo& info(const std::string& name) const;

  // Whole tensor (a scalar included), contiguous, in its stored dtype, allocated under `category`.
  Tensor read(const std::string& name, MemCategory category) const;
  // Rows [rows.begin, rows.end) along dimension 0 of a tensor of rank >= 1: shape
  // [rows.end - rows.begin, rest...]. Reads only those bytes. A range outside [0, shape[0]] or a
  // rank-0 tensor (which has no rows) -> InvalidArgument.
  Tensor read_rows(const std::string& name, RowRange rows, MemCategory category) const;
  // Into an existing tensor of the same shape (any strides; rank 0 included). f32 <-> bf16 and
  // f16 -> f32 / bf16
  // convert; integer dtypes must match (else DTypeError; wrong shape: ShapeError). A contiguous
  // destination of the stored dtype is read into directly, without a temporary.
  void read_into(const std::string& name, const Tensor& dst) const;
  // read_rows into an existing tensor of shape [rows.end - rows.begin, rest...], as read_into.
  void read_rows_into(const std::string& name, RowRange rows, const Tensor& dst) const;

 private:
  void read_bytes(uint64_t offset, void* dst, uint64_t bytes) const;
  // Validates `rows` against `info` and returns the shape of that row block.
  Shape rows_shape(const TensorInfo& info, RowRange rows) const;
  // Reads want.numel() elements stored contiguously from `file_offset` into `dst` (shape `want`).
  void read_region(const TensorInfo& info, uint64_t file_offset, const Shape& want, const std::string& what,
                   const Tensor& dst) const;
  std::filesystem::path path_;
  UniqueFd fd_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

struct NamedTensor {
  std::string name;
  Tensor tensor;  // any strides; written in row-major order
};

struct SafetensorsWriteOptions {
  std::map<std::string, std::string> metadata = {};  // "__metadata__"; HF expects {"format": "pt"}
};

// Writes tensors (data in the given order) atomically: temporary file in the same directory,
// fsync, rename. On any failure the previous file at `path` is unchanged and no partial file
// remains. Duplicate or empty names, undefined tensors -> InvalidArgument before anything is
// written. The JSON header is padded with spaces to a multiple of 8 bytes.
void write_safetensors(const std::filesystem::path& path, const std::vector<NamedTensor>& tensors,
                       const SafetensorsWriteOptions& options = {});

// The bytes write_safetensors writes (same validation, InvalidArgument naming `what`), in memory:
// for files saved together with others, e.g. HfCheckpointWriteOptions::extra_files.
std::string safetensors_bytes(const std::vector<NamedTensor>& tensors, const SafetensorsWriteOptions& options = {},
                              std::string_view what = "<memory>");

// ---------------------------------------------------------------------------------------------
// Streamed writing: the header is built from names, dtypes and shapes alone, so a writer that
// produces the tensors one at a time (a sharded run assembling each tensor from its ranks' pieces)
// never holds more than one of them.

// One tensor of a header: everything but the data.
struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::f32;
  Shape shape;
};

// The first bytes write_safetensors writes for tensors with these names, dtypes and shapes in
// this order: the 8-byte little-endian header length, then the padded JSON header. Duplicate or
// empty names -> InvalidArgument naming `what`, as the writer.
std::string safetensors_header_bytes(const std::vector<SafetensorsEntry>& entries,
                                     const SafetensorsWriteOptions& options = {},
                                     std::string_view what = "<memory>");

// Writes a safetensors file tensor by tensor: the header at construction, then each entry's data
// in entry order (write_next), then commit(). The file is byte-identical to write_safetensors of
// the same tensors and goes through the same atomic protocol: destroyed without commit(), the
// previous file at `path` is unchanged and no temporary remains.
class SafetensorsStreamWriter {
 public:
  // Validates the entries (as safetensors_header_bytes) before creating anything; IoError when
  // the temporary cannot be created.
  SafetensorsStreamWriter(std::filesystem::path path, std::vector<SafetensorsEntry> entries,
                          const SafetensorsWriteOptions& options = {});

  // The data of the next entry: same dtype and shape (any strides, written row-major);
  // InvalidArgument / ShapeError / DTypeError otherwise, or when every entry is written.
  void write_next(const Tensor& tensor);
  // Every entry must have been written (InvalidArgument otherwise); then fsync + rename.
  void commit();

  size_t entries_written() const { return next_; }
  const std::filesystem::path& path() const { return out_.target(); }

 private:
  std::vector<SafetensorsEntry> entries_;
  size_t next_ = 0;
  AtomicFileWriter out_;
};

}  // namespace tsp::model
