// safetensors reader (header validation, positioned reads of whole tensors or row ranges) and
// atomic writer. Data is little-endian on disk; this engine only runs on little-endian hosts.
#include "tsp/model/safetensors.h"

#include <algorithm>
#include <bit>
#include <set>

#include <nlohmann/json.hpp>

#include "tsp/core/atomic_file.h"
#include "tsp/core/check.h"
#include "tsp/core/file_io.h"

static_assert(std::endian::native == std::endian::little,
              "safetensors I/O copies raw bytes and assumes a little-endian host");

namespace tsp::model {

using nlohmann::json;

namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the reference implementation's limit

bool parse_dtype_name(std::string_view s, DType* out) {
  if (s == "F32") *out = DType::f32;
  else if (s == "BF16") *out = DType::bf16;
  else if (s == "F16") *out = DType::f16;
  else if (s == "I32") *out = DType::i32;
  else if (s == "I64") *out = DType::i64;
  else return false;
  return true;
}

}  // namespace

std::string_view safetensors_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "F32";
    case DType::bf16: return "BF16";
    case DType::i32: return "I32";
    case DType::i64: return "I64";
    case DType::f16: return "F16";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------
// Reader

SafetensorsReader::SafetensorsReader(std::filesystem::path path) : path_(std::move(path)) {
  const std::string file = path_.string();
  OpenFile opened = open_regular_file(path_, "safetensors file");
  fd_ = std::move(opened.fd);  // a member: closed even if the constructor throws below
  const uint64_t file_size = opened.size;
  if (file_size < 8)
    TSP_THROW(IoError, "safetensors file ", file, " has ", file_size,
              " bytes, fewer than the 8-byte header length field");
  uint64_t header_len = 0;
  read_bytes(0, &header_len, 8);
  if (header_len == 0) TSP_THROW(IoError, "safetensors file ", file, ": header length is 0");
  if (header_len > kMaxHeaderBytes)
    TSP_THROW(IoError, "safetensors file ", file, ": header length ", header_len,
              " exceeds the 100 MB limit (corrupt file?)");
  if (header_len > file_size - 8)
    TSP_THROW(IoError, "safetensors file ", file, ": header length ", header_len,
              " exceeds the file size ", file_size, " minus 8 (truncated file?)");
  std::string header(header_len, '\0');
  read_bytes(8, header.data(), header_len);
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = file_size - data_start;

  const json j = json::parse(header, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) TSP_THROW(IoError, "safetensors file ", file, ": header is not valid JSON");
  if (!j.is_object())
    TSP_THROW(IoError, "safetensors file ", file, ": header must be a JSON object, got ", j.type_name());

  struct Entry {
    TensorInfo info;
    uint64_t begin, end;  // relative to the data section
  };
  std::vector<Entry> entries;
  for (const auto& item : j.items()) {
    // Named references, not a structured binding: the lambda below captures `name`, which
    // clang < 16 refuses for a binding (the clang build of `make fuzz`).
    const std::string& name = item.key();
    const json& value = item.value();
    if (name == "__metadata__") {
      if (!value.is_object())
        TSP_THROW(IoError, "safetensors file ", file, ": __metadata__ must be an object");
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string())
          TSP_THROW(IoError, "safetensors file ", file, ": __metadata__[\"", k,
                    "\"] must be a string, got ", v.dump());
        metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    auto bad = [&](auto... what) {
      TSP_THROW(IoError, "safetensors file ", file, ": tensor \"", name, "\": ", what...);
    };
    if (!value.is_object()) bad("entry must be an object, got ", value.dump());
    if (!value.contains("dtype") || !value["dtype"].is_string()) bad("missing or non-string \"dtype\"");
    if (!value.contains("shape") || !value["shape"].is_array()) bad("missing or non-array \"shape\"");
    if (!value.contains("data_offsets") || !value["data_offsets"].is_array() ||
        value["data_offsets"].size() != 2)
      bad("\"data_offsets\" must be an array [begin, end]");
    Entry e;
    e.info.name = name;
    const std::string dtype = value["dtype"].get<std::string>();
    if (!parse_dtype_name(dtype, &e.info.dtype))
      bad("unsupported dtype \"", dtype, "\" (supported: F32, BF16, F16, I32, I64)");
    const json& shape = value["shape"];
    if (shape.size() > static_cast<size_t>(kMaxRank))
      bad("rank ", shape.size(), " exceeds the engine's maximum rank ", kMaxRank);
    // The engine does its index and stride arithmetic in int64: the product of the non-zero
    // extents times the element size must fit, so that every prefix product (numel of leading
    // dimensions), every suffix product (contiguous strides) and every byte offset does. A zero
    // extent makes numel 0 but does not excuse the others: [2^62, 3, 0] is rejected.
    int64_t nonzero_bytes = static_cast<int64_t>(dtype_size(e.info.dtype));
    bool has_zero = false;
    for (const json& d : shape) {
      if (!d.is_number_unsigned()) bad("shape entry ", d.dump(), " is not a non-negative integer");
      const uint64_t extent = d.get<uint64_t>();
      if (extent > static_cast<uint64_t>(INT64_MAX))
        bad("shape ", shape.dump(), " overflows int64 (extent ", extent, ")");
      if (extent == 0) {
        has_zero = true;
      } else if (__builtin_mul_overflow(nonzero_bytes, static_cast<int64_t>(extent), &nonzero_bytes)) {
        bad("shape ", shape.dump(), " of dtype ", dtype, " overflows int64 (its non-zero extents times ",
            dtype_size(e.info.dtype), " bytes exceed 2^63 - 1)");
      }
      e.info.shape.push_back(static_cast<int64_t>(extent));
    }
    const uint64_t expected_bytes = has_zero ? 0 : static_cast<uint64_t>(nonzero_bytes);
    const json& off = value["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      bad("data_offsets ", off.dump(), " must be non-negative integers");
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    if (e.begin > e.end) bad("data_offsets ", off.dump(), " has begin > end");
    if (e.end > data_size)
      bad("data_offsets ", off.dump(), " exceed the data section of ", data_size,
          " bytes (truncated file?)");
    if (e.end - e.begin != expected_bytes)
      bad("data_offsets ", off.dump(), " span ", e.end - e.begin, " bytes but dtype ", dtype,
          " x shape ", shape.dump(), " needs ", expected_bytes);
    e.info.file_begin = data_start + e.begin;
    e.info.file_end = data_start + e.end;
    entries.push_back(std::move(e));
  }

  // The data section must be covered exactly once, without holes (as the reference requires).
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t covered = 0;
  const std::string* previous = nullptr;
  for (const Entry& e : entries) {
    if (e.begin < covered)
      TSP_THROW(IoError, "safetensors file ", file, ": tensor \"", e.info.name, "\" bytes [", e.begin,
                ", ", e.end, ") overlap tensor \"", previous ? *previous : std::string(),
                "\" ending at ", covered);
    if (e.begin > covered)
      TSP_THROW(IoError, "safetensors file ", file, ": data bytes [", covered, ", ", e.begin,
                ") belong to no tensor (hole before \"", e.info.name, "\")");
    covered = e.end;
    previous = &e.info.name;
  }
  if (covered != data_size)
    TSP_THROW(IoError, "safetensors file ", file, ": data section has ", data_size,
              " bytes but the tensors cover ", covered, " (trailing garbage or wrong offsets)");

  tensors_.reserve(entries.size());
  for (Entry& e : entries) {
    index_[e.info.name] = tensors_.size();
    tensors_.push_back(std::move(e.info));
  }
}

const TensorInfo& SafetensorsReader::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end())
    TSP_THROW(IoError, "safetensors file ", path_.string(), " has no tensor \"", name, "\" (it holds ",
              tensors_.size(), " tensors)");
  return tensors_[it->second];
}

void SafetensorsReader::read_bytes(uint64_t offset, void* dst, uint64_t bytes) const {
  pread_exact(fd_.get(), dst, bytes, offset, path_);
}

Shape SafetensorsReader::rows_shape(const TensorInfo& ti, RowRange rows) const {
  TSP_CHECK(ti.shape.rank() >= 1, "row range [", rows.begin, ", ", rows.end, ") of scalar tensor \"",
            ti.name, "\" in ", path_.string(), ": a rank-0 tensor has no rows (use read or read_into)");
  TSP_CHECK(rows.begin >= 0 && rows.begin <= rows.end && rows.end <= ti.shape[0], "row range [", rows.begin,
            ", ", rows.end, ") out of range for tensor \"", ti.name, "\" of shape ", ti.shape, " in ",
            path_.string());
  Shape shape = ti.shape;
  shape[0] = rows.end - rows.begin;
  return shape;
}

Tensor SafetensorsReader::read(const std::string& name, MemCategory category) const {
  const TensorInfo& ti = info(name);
  Tensor t = Tensor::empty(ti.shape, ti.dtype, category);
  read_bytes(ti.file_begin, t.raw(), ti.nbytes());
  return t;
}

Tensor SafetensorsReader::read_rows(const std::string& name, RowRange rows, MemCategory category) const {
  const TensorInfo& ti = info(name);
  Tensor t = Tensor::empty(rows_shape(ti, rows), ti.dtype, category);
  read_rows_into(name, rows, t);
  return t;
}

void SafetensorsReader::read_into(const std::string& name, const Tensor& dst) const {
  const TensorInfo& ti = info(name);
  read_region(ti, ti.file_begin, ti.shape, "", dst);
}

void SafetensorsReader::read_rows_into(const std::string& name, RowRange rows, const Tensor& dst) const {
  const TensorInfo& ti = info(name);
  const Shape want = rows_shape(ti, rows);
  // Rows of a tensor with a zero extent hold no bytes; otherwise nbytes() / shape[0] is exact.
  const uint64_t row_bytes = ti.shape[0] == 0 ? 0 : ti.nbytes() / static_cast<uint64_t>(ti.shape[0]);
  read_region(ti, ti.file_begin + static_cast<uint64_t>(rows.begin) * row_bytes, want,
              ::tsp::detail::concat(" rows [", rows.begin, ", ", rows.end, ")"), dst);
}

void SafetensorsReader::read_region(const TensorInfo& ti, uint64_t file_offset, const Shape& want,
                                    const std::string& what, const Tensor& dst) const {
  TSP_CHECK_SHAPE(dst.defined() && dst.shape() == want, "reading tensor \"", ti.name, "\" ", ti.shape, what,
                  " of ", path_.string(), " into ", dst.describe(), ": expected shape ", want);
  TSP_CHECK_DTYPE(is_integer_dtype(ti.dtype) == is_integer_dtype(dst.dtype()) &&
                      (!is_integer_dtype(ti.dtype) || ti.dtype == dst.dtype()),
                  "tensor \"", ti.name, "\" in ", path_.string(), " is ", ti.dtype, " and cannot be read into ",
                  dst.dtype());
  if (dst.dtype() == ti.dtype && dst.is_contiguous()) {  // straight into the destination
    read_bytes(file_offset, dst.raw(), dst.nbytes());
    return;
  }
  Tensor tmp = Tensor::empty(want, ti.dtype, MemCategory::workspace);
  read_bytes(file_offset, tmp.raw(), tmp.nbytes());
  Tensor d = dst;
  d.copy_from(tmp);
}

// ---------------------------------------------------------------------------------------------
// Writer

namespace {

// Refuses empty, reserved and duplicate names (`seen` collects the names so far).
void check_tensor_name(const std::string& name, std::set<std::string>& seen, std::string_view what) {
  TSP_CHECK(!name.empty() && name != "__metadata__", "invalid tensor name \"", name, "\" for ", what);
  TSP_CHECK(seen.insert(name).second, "duplicate tensor name \"", name, "\" for ", what);
}

// The padded JSON header text of checked entries (data in entry order).
std::string header_text(const std::vector<SafetensorsEntry>& entries, const SafetensorsWriteOptions& options) {
  json header = json::object();
  if (!options.metadata.empty()) {
    json meta = json::object();
    for (const auto& [k, v] : options.metadata) meta[k] = v;
    header["__metadata__"] = meta;
  }
  uint64_t offset = 0;
  for (const SafetensorsEntry& e : entries) {
    json shape = json::array();
    for (int64_t d : e.shape) shape.push_back(d);
    const uint64_t bytes = static_cast<uint64_t>(e.shape.numel()) * dtype_size(e.dtype);
    header[e.name] = {{"dtype", safetensors_dtype_name(e.dtype)},
                      {"shape", shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // align the data section to 8 bytes
  return text;
}

// Validates the tensors and returns the padded JSON header text.
std::string safetensors_header(const std::vector<NamedTensor>& tensors, const SafetensorsWriteOptions& options,
                               std::string_view what) {
  std::set<std::string> seen;
  std::vector<SafetensorsEntry> entries;
  entries.reserve(tensors.size());
  for (const NamedTensor& nt : tensors) {
    check_tensor_name(nt.name, seen, what);
    TSP_CHECK(nt.tensor.defined(), "tensor \"", nt.name, "\" for ", what, " is undefined");
    entries.push_back({nt.name, nt.tensor.dtype(), nt.tensor.shape()});
  }
  return header_text(entries, options);
}

// Calls sink(data, bytes) for the length prefix, the header and each tensor's row-major data.
template <class Sink>
void emit_safetensors(const std::string& header_text, const std::vector<NamedTensor>& tensors, Sink&& sink) {
  const uint64_t header_len = header_text.size();
  sink(&header_len, 8);
  sink(header_text.data(), header_text.size());
  for (const NamedTensor& nt : tensors) {
    if (nt.tensor.nbytes() == 0) continue;
    if (nt.tensor.is_contiguous()) {
      sink(nt.tensor.raw(), nt.tensor.nbytes());
    } else {
      const Tensor c = Tensor::copy_of(nt.tensor, nt.tensor.dtype(), MemCategory::workspace);
      sink(c.raw(), c.nbytes());
    }
  }
}

}  // namespace

void write_safetensors(const std::filesystem::path& path, const std::vector<NamedTensor>& tensors,
                       const SafetensorsWriteOptions& options) {
  const std::string text = safetensors_header(tensors, options, path.string());
  AtomicFileWriter out(path);
  emit_safetensors(text, tensors, [&](const void* p, size_t n) { out.write(p, n); });
  out.commit();
}

std::string safetensors_bytes(const std::vector<NamedTensor>& tensors, const SafetensorsWriteOptions& options,
                              std::string_view what) {
  const std::string text = safetensors_header(tensors, options, what);
  std::string bytes;
  emit_safetensors(text, tensors, [&](const void* p, size_t n) { bytes.append(static_cast<const char*>(p), n); });
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// Streamed writer

std::string safetensors_header_bytes(const std::vector<SafetensorsEntry>& entries,
                                     const SafetensorsWriteOptions& options, std::string_view what) {
  std::set<std::string> seen;
  for (const SafetensorsEntry& e : entries) check_tensor_name(e.name, seen, what);
  const std::string text = header_text(entries, options);
  const uint64_t header_len = text.size();
  std::string bytes(reinterpret_cast<const char*>(&header_len), 8);
  bytes += text;
  return bytes;
}

namespace {

// The entries, once the header they make has been validated (before any file is created).
std::vector<SafetensorsEntry> checked_entries(std::vector<SafetensorsEntry> entries,
                                              const SafetensorsWriteOptions& options,
                                              const std::filesystem::path& path) {
  safetensors_header_bytes(entries, options, path.string());
  return entries;
}

}  // namespace

SafetensorsStreamWriter::SafetensorsStreamWriter(std::filesystem::path path, std::vector<SafetensorsEntry> entries,
                                                 const SafetensorsWriteOptions& options)
    : entries_(checked_entries(std::move(entries), options, path)), out_(path) {
  out_.write(safetensors_header_bytes(entries_, options, path.string()));
}

void SafetensorsStreamWriter::write_next(const Tensor& tensor) {
  TSP_CHECK(next_ < entries_.size(), "safetensors stream ", out_.target().string(), ": all ", entries_.size(),
            " tensors are already written");
  const SafetensorsEntry& e = entries_[next_];
  TSP_CHECK(tensor.defined(), "safetensors stream ", out_.target().string(), ": tensor \"", e.name,
            "\" is undefined");
  TSP_CHECK_DTYPE(tensor.dtype() == e.dtype, "safetensors stream ", out_.target().string(), ": tensor \"",
                  e.name, "\" was declared ", e.dtype, ", got ", tensor.describe());
  TSP_CHECK_SHAPE(tensor.shape() == e.shape, "safetensors stream ", out_.target().string(), ": tensor \"",
                  e.name, "\" was declared ", e.shape, ", got ", tensor.describe());
  if (tensor.nbytes() > 0) {
    if (tensor.is_contiguous()) {
      out_.write(tensor.raw(), tensor.nbytes());
    } else {
      const Tensor c = Tensor::copy_of(tensor, tensor.dtype(), MemCategory::workspace);
      out_.write(c.raw(), c.nbytes());
    }
  }
  ++next_;
}

void SafetensorsStreamWriter::commit() {
  TSP_CHECK(next_ == entries_.size(), "safetensors stream ", out_.target().string(), ": ", next_, " of ",
            entries_.size(), " tensors written; cannot commit");
  out_.commit();
}

}  // namespace tsp::model
