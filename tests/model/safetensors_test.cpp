// Tests of the safetensors reader and writer: round trips of every dtype (empty and scalar
// tensors included), single-tensor and row-range reads, a reference-format file, corrupt files.
#include "tsp/model/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "io_test_util.h"
#include "scratch_dir.h"
#include "test_util.h"
#include "tsp/core/error.h"

namespace tsp::model {
namespace {

using testing::FileSizeLimit;
using testing::io_error_of;
using testing::read_bytes;
using testing::same_bytes;
using testing::ScratchDir;
using testing::write_bytes;

Tensor iota_tensor(const Shape& shape, DType dtype, int64_t base = 0) {
  Tensor t = Tensor::empty(shape, dtype, MemCategory::workspace);
  for (int64_t i = 0; i < t.numel(); ++i) {
    switch (dtype) {
      case DType::f32: t.data<float>()[i] = static_cast<float>(base + i) * 0.5f; break;
      case DType::bf16: t.data<bf16>()[i] = bf16(static_cast<float>(base + i) * 0.25f); break;
      case DType::i32: t.data<int32_t>()[i] = static_cast<int32_t>(base + i) * -3; break;
      case DType::i64: t.data<int64_t>()[i] = (base + i) * 0x100000001ll; break;
      case DType::f16: t.data<f16>()[i] = f16(static_cast<float>(base + i) * 0.125f); break;
    }
  }
  return t;
}

// The file a header `json` and `data` bytes make, in the reference layout.
std::string craft(std::string_view json, std::string_view data) {
  std::string out(8, '\0');
  const uint64_t n = json.size();
  std::memcpy(out.data(), &n, 8);
  out += json;
  out += data;
  return out;
}

TEST(Safetensors, RoundTripAllDtypesEmptyAndScalar) {
  ScratchDir dir;
  const std::vector<NamedTensor> tensors = {
      {"w.f32", iota_tensor(Shape{3, 5}, DType::f32)},
      {"w.bf16", iota_tensor(Shape{2, 3, 4}, DType::bf16, 7)},
      {"ids.i32", iota_tensor(Shape{6}, DType::i32, 1)},
      {"pos.i64", iota_tensor(Shape{2, 2}, DType::i64, 5)},
      {"w.f16", iota_tensor(Shape{3, 2}, DType::f16, 9)},
      {"empty", iota_tensor(Shape{0, 4}, DType::f32)},
      {"scalar", iota_tensor(Shape{}, DType::f32, 3)},
      {"transposed", iota_tensor(Shape{4, 3}, DType::f32, 2).transpose(0, 1)},  // non-contiguous
  };
  const auto path = dir / "t.safetensors";
  write_safetensors(path, tensors, {.metadata = {{"format", "pt"}, {"step", "12"}}});
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"t.safetensors"});  // no temporary left

  const std::string bytes = read_bytes(path);
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  EXPECT_EQ(header_len % 8, 0u);

  const SafetensorsReader r(path);
  EXPECT_EQ(r.tensors().size(), tensors.size());
  EXPECT_EQ(r.metadata().at("format"), "pt");
  EXPECT_EQ(r.metadata().at("step"), "12");
  for (const NamedTensor& nt : tensors) {
    SCOPED_TRACE(nt.name);
    ASSERT_TRUE(r.contains(nt.name));
    EXPECT_EQ(r.info(nt.name).dtype, nt.tensor.dtype());
    const Tensor back = r.read(nt.name, MemCategory::weights);
    EXPECT_EQ(back.category(), MemCategory::weights);
    EXPECT_TRUE(same_bytes(back, nt.tensor)) << back.describe();
  }
  EXPECT_EQ(r.read("scalar", MemCategory::workspace).rank(), 0);
  EXPECT_EQ(r.read("empty", MemCategory::workspace).shape(), (Shape{0, 4}));
}

TEST(Safetensors, ReadsOneTensorAndRowRanges) {
  ScratchDir dir;
  const Tensor big = iota_tensor(Shape{10, 6}, DType::f32);
  const Tensor other = iota_tensor(Shape{1000}, DType::f32);
  write_safetensors(dir / "m.safetensors", {{"other", other}, {"big", big}, {"b16", big.to_f32()}});
  const SafetensorsReader r(dir / "m.safetensors");

  // Only the requested tensor is allocated (ledger bytes of an otherwise unused category).
  const int64_t before = MemoryLedger::process().stats(MemCategory::kv_cache).live_bytes;
  {
    const Tensor rows = r.read_rows("big", RowRange{3, 7}, MemCategory::kv_cache);
    EXPECT_EQ(MemoryLedger::process().stats(MemCategory::kv_cache).live_bytes - before, 4 * 6 * 4);
    EXPECT_EQ(rows.shape(), (Shape{4, 6}));
    EXPECT_TRUE(same_bytes(rows, big.slice(0, 3, 4)));
  }
  EXPECT_EQ(r.read_rows("big", RowRange{5, 5}, MemCategory::workspace).shape(), (Shape{0, 6}));
  EXPECT_THROW(r.read_rows("big", RowRange{8, 11}, MemCategory::workspace), InvalidArgument);
  EXPECT_THROW(r.read_rows("big", RowRange{4, 3}, MemCategory::workspace), InvalidArgument);

  // Into a strided bf16 view: converts and honours strides.
  Tensor dst = Tensor::zeros(Shape{4, 10}, DType::bf16, MemCategory::workspace);
  Tensor view = dst.slice(1, 2, 6);
  r.read_rows_into("big", RowRange{2, 6}, view);
  EXPECT_CLOSE(view, big.slice(0, 2, 4), 4e-3, 1e-3);
  EXPECT_EQ(dst.item_f32(0), 0.f);
  EXPECT_THROW(r.read_into("big", Tensor::empty(Shape{6, 10}, DType::f32, MemCategory::workspace)), ShapeError);
  EXPECT_THROW(r.read_into("big", Tensor::empty(Shape{10, 6}, DType::i32, MemCategory::workspace)), DTypeError);

  const std::string m = io_error_of([&] { r.info("nope"); });
  EXPECT_NE(m.find("m.safetensors"), std::string::npos) << m;
  EXPECT_NE(m.find("nope"), std::string::npos) << m;
}

// A file laid out the way the reference (Python) implementation writes it: compact JSON,
// __metadata__ first, header padded with spaces to 8 bytes.
TEST(Safetensors, ReadsReferenceLayout) {
  ScratchDir dir;
  std::string json =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"BF16","shape":[1,2],"data_offsets":[8,12]}})";
  json.append((8 - json.size() % 8) % 8, ' ');
  const float a[2] = {1.5f, -2.f};
  const uint16_t b[2] = {0x3f80, 0xc000};  // bf16 1.0, -2.0
  std::string data(reinterpret_cast<const char*>(a), 8);
  data.append(reinterpret_cast<const char*>(b), 4);
  write_bytes(dir / "ref.safetensors", craft(json, data));
  const SafetensorsReader r(dir / "ref.safetensors");
  EXPECT_EQ(r.read("a", MemCategory::workspace).item_f32(1), -2.f);
  const Tensor tb = r.read("b", MemCategory::workspace);
  EXPECT_EQ(tb.shape(), (Shape{1, 2}));
  EXPECT_EQ(tb.item_f32(0), 1.f);
  EXPECT_EQ(tb.item_f32(1), -2.f);
}

// Float16 checkpoints (Llama-2 is published so): F16 tensors in the reference layout are read as
// stored and widened exactly into f32, or rounded into bf16, by read_into.
TEST(Safetensors, ReadsF16IntoF32AndBf16) {
  ScratchDir dir;
  std::string json = R"({"h":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]}})";
  json.append((8 - json.size() % 8) % 8, ' ');
  // 1.0, -2.0, 65504 (largest finite), 2^-24 (smallest subnormal), 0.333251953125 (0x3555), -0
  const uint16_t h[6] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x3555, 0x8000};
  write_bytes(dir / "h.safetensors", craft(json, std::string(reinterpret_cast<const char*>(h), 12)));
  const SafetensorsReader r(dir / "h.safetensors");
  EXPECT_EQ(r.info("h").dtype, DType::f16);
  const float want[6] = {1.f, -2.f, 65504.f, 0x1p-24f, 0.333251953125f, -0.f};
  Tensor f = Tensor::empty({2, 3}, DType::f32, MemCategory::workspace);
  r.read_into("h", f);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(f.item_f32(i), want[i]) << i;
  EXPECT_TRUE(std::signbit(f.item_f32(5)));
  Tensor b = Tensor::empty({2, 3}, DType::bf16, MemCategory::workspace);
  r.read_into("h", b);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(b.item_f32(i), round_to_bf16(want[i])) << i;
  Tensor rows = Tensor::empty({1, 3}, DType::f32, MemCategory::workspace);
  r.read_rows_into("h", {1, 2}, rows);
  EXPECT_EQ(rows.item_f32(0), 0x1p-24f);
  EXPECT_EQ(rows.item_f32(1), 0.333251953125f);
}

TEST(Safetensors, CorruptFilesThrowIoErrorNamingTheFile) {
  ScratchDir dir;
  const auto good = dir / "good.safetensors";
  write_safetensors(good, {{"x", iota_tensor(Shape{4, 4}, DType::f32)}, {"y", iota_tensor(Shape{3}, DType::i64)}});
  const std::string bytes = read_bytes(good);
  const std::string ok_header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";

  struct Case {
    const char* name;
    std::string content;
    const char* expect;  // a fragment of the message
  };
  const std::vector<Case> cases = {
      {"truncated", bytes.substr(0, bytes.size() - 5), "truncated"},
      {"tiny", std::string("\x10\0\0", 3), "fewer than the 8-byte"},
      {"header_longer_than_file", craft("{}", "").replace(0, 8, std::string("\xff\xff\0\0\0\0\0\0", 8)),
       "exceeds the file size"},
      {"garbage_header", craft("{this is not json}", ""), "not valid JSON"},
      {"header_not_object", craft("[1, 2]    ", ""), "must be a JSON object"},
      {"unknown_dtype", craft(R"({"x":{"dtype":"F64","shape":[2],"data_offsets":[0,4]}})", "abcd"), "F64"},
      {"size_mismatch", craft(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", "abcdefgh"),
       "needs 12"},
      {"offsets_out_of_range", craft(ok_header, "abcd"), "exceed the data section"},
      {"overlap",
       craft(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
             "abcdefgh"),
       "overlap"},
      {"hole",
       craft(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", "abcdefgh"), "belong to no tensor"},
      {"trailing", craft(ok_header, "abcdefghXY"), "trailing"},
      {"begin_after_end", craft(R"({"x":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", "abcdefgh"),
       "begin > end"},
      {"negative_shape", craft(R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", "abcdefgh"),
       "non-negative"},
      {"bad_metadata", craft(R"({"__metadata__":{"a":1}})", ""), "__metadata__"},
      {"zero_header", std::string(8, '\0'), "header length is 0"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const auto path = dir / (std::string(c.name) + ".safetensors");
    write_bytes(path, c.content);
    const std::string m = io_error_of([&] { SafetensorsReader r(path); });
    EXPECT_NE(m.find(path.string()), std::string::npos) << m;
    EXPECT_NE(m.find(c.expect), std::string::npos) << m;
  }
  const std::string m = io_error_of([&] { SafetensorsReader r(dir / "absent.safetensors"); });
  EXPECT_NE(m.find("absent.safetensors"), std::string::npos) << m;
}

TEST(Safetensors, ReadIntoScalars) {
  ScratchDir dir;
  const Tensor scalar = iota_tensor(Shape{}, DType::f32, 3);  // 1.5
  const Tensor id = iota_tensor(Shape{}, DType::i64, 2);
  write_safetensors(dir / "s.safetensors", {{"scalar", scalar}, {"id", id}});
  const SafetensorsReader r(dir / "s.safetensors");

  Tensor same = Tensor::zeros(Shape{}, DType::f32, MemCategory::workspace);
  r.read_into("scalar", same);
  EXPECT_EQ(same.item_f32(0), 1.5f);
  Tensor converted = Tensor::zeros(Shape{}, DType::bf16, MemCategory::workspace);
  r.read_into("scalar", converted);
  EXPECT_EQ(converted.item_f32(0), 1.5f);  // exact in bf16
  Tensor i64 = Tensor::zeros(Shape{}, DType::i64, MemCategory::workspace);
  r.read_into("id", i64);
  EXPECT_TRUE(same_bytes(i64, id));

  EXPECT_THROW(r.read_into("scalar", Tensor::zeros(Shape{1}, DType::f32, MemCategory::workspace)), ShapeError);
  EXPECT_THROW(r.read_into("id", Tensor::zeros(Shape{}, DType::i32, MemCategory::workspace)), DTypeError);
  // A scalar has no rows: a clear InvalidArgument, not an out-of-range dimension.
  for (auto fn : {+[](const SafetensorsReader& rd) { rd.read_rows("scalar", RowRange{0, 1}, MemCategory::workspace); },
                  +[](const SafetensorsReader& rd) {
                    rd.read_rows_into("scalar", RowRange{0, 1},
                                      Tensor::zeros(Shape{}, DType::f32, MemCategory::workspace));
                  }}) {
    try {
      fn(r);
      ADD_FAILURE() << "read_rows of a scalar did not throw";
    } catch (const ShapeError& e) {
      ADD_FAILURE() << "expected a plain InvalidArgument, got ShapeError: " << e.what();
    } catch (const InvalidArgument& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("scalar"), std::string::npos) << m;
      EXPECT_NE(m.find("no rows"), std::string::npos) << m;
      EXPECT_NE(m.find("s.safetensors"), std::string::npos) << m;
    }
  }
}

TEST(Safetensors, ReadIntoContiguousSameDtypeReadsDirectly) {
  ScratchDir dir;
  const Tensor big = iota_tensor(Shape{10, 6}, DType::f32);
  const Tensor ids = iota_tensor(Shape{7}, DType::i32, 4);
  write_safetensors(dir / "m.safetensors", {{"big", big}, {"ids", ids}});
  const SafetensorsReader r(dir / "m.safetensors");
  MemoryLedger& ledger = MemoryLedger::process();

  Tensor dst = Tensor::zeros(Shape{10, 6}, DType::f32, MemCategory::weights);
  const int64_t workspace_live = ledger.stats(MemCategory::workspace).live_bytes;
  ledger.reset_peaks();
  r.read_into("big", dst);
  // The direct path allocates no temporary.
  EXPECT_EQ(ledger.stats(MemCategory::workspace).peak_bytes, workspace_live);
  EXPECT_TRUE(same_bytes(dst, big));

  // Rows into a contiguous row block of a larger tensor: only that block changes.
  Tensor host = Tensor::zeros(Shape{12, 6}, DType::f32, MemCategory::weights);
  Tensor block = host.slice(0, 5, 4);  // rows [5, 9): contiguous
  ASSERT_TRUE(block.is_contiguous());
  ledger.reset_peaks();
  r.read_rows_into("big", RowRange{2, 6}, block);
  EXPECT_EQ(ledger.stats(MemCategory::workspace).peak_bytes, workspace_live);
  EXPECT_TRUE(same_bytes(block, big.slice(0, 2, 4)));
  EXPECT_TRUE(same_bytes(host.slice(0, 0, 5), Tensor::zeros(Shape{5, 6}, DType::f32, MemCategory::workspace)));
  EXPECT_TRUE(same_bytes(host.slice(0, 9, 3), Tensor::zeros(Shape{3, 6}, DType::f32, MemCategory::workspace)));

  Tensor id_dst = Tensor::zeros(Shape{7}, DType::i32, MemCategory::weights);
  r.read_into("ids", id_dst);
  EXPECT_TRUE(same_bytes(id_dst, ids));
  // read_rows and read_rows_into agree.
  EXPECT_TRUE(same_bytes(r.read_rows("big", RowRange{2, 6}, MemCategory::workspace), block));
}

// Shapes whose element count fits uint64 (or is 0) but whose partial products overflow the
// engine's int64 index arithmetic are rejected at open, naming the file and the tensor.
TEST(Safetensors, ShapesOverflowingInt64AreRejected) {
  ScratchDir dir;
  const std::vector<std::pair<const char*, std::string>> cases = {
      {"prefix", R"({"huge":{"dtype":"F32","shape":[4611686018427387904,3,0],"data_offsets":[0,0]}})"},
      {"suffix", R"({"huge":{"dtype":"F32","shape":[0,4611686018427387904,3],"data_offsets":[0,0]}})"},
      {"bytes", R"({"huge":{"dtype":"I64","shape":[2305843009213693952,0],"data_offsets":[0,0]}})"},
      {"extent", R"({"huge":{"dtype":"F32","shape":[9223372036854775808,0],"data_offsets":[0,0]}})"},
  };
  for (const auto& [name, json] : cases) {
    SCOPED_TRACE(name);
    const auto path = dir / (std::string(name) + ".safetensors");
    write_bytes(path, craft(json, ""));
    const std::string m = io_error_of([&] { SafetensorsReader r(path); });
    EXPECT_NE(m.find(path.string()), std::string::npos) << m;
    EXPECT_NE(m.find("\"huge\""), std::string::npos) << m;
    EXPECT_NE(m.find("overflows"), std::string::npos) << m;
  }
  // Large but representable shapes with a zero extent stay valid.
  write_bytes(dir / "ok.safetensors",
              craft(R"({"wide":{"dtype":"F32","shape":[0,1099511627776],"data_offsets":[0,0]}})", ""));
  const SafetensorsReader r(dir / "ok.safetensors");
  EXPECT_EQ(r.info("wide").shape, (Shape{0, 1099511627776}));
  EXPECT_EQ(r.read("wide", MemCategory::workspace).numel(), 0);
}

// The safetensors writer goes through the atomic writer: a write that fails midway (file-size
// limit) leaves the previous file byte-for-byte intact and no temporary behind.
TEST(Safetensors, FailedWriteKeepsTheOldFile) {
  ScratchDir dir;
  const auto path = dir / "model.safetensors";
  Tensor small = Tensor::zeros(Shape{16}, DType::f32, MemCategory::workspace);
  write_safetensors(path, {{"w", small}});
  const std::string old_bytes = read_bytes(path);

  Tensor big = Tensor::zeros(Shape{64 * 1024}, DType::f32, MemCategory::workspace);  // 256 KiB
  std::string message;
  {
    FileSizeLimit limit(32 * 1024);
    if (!limit.ok()) GTEST_SKIP() << "cannot lower RLIMIT_FSIZE here";
    try {
      write_safetensors(path, {{"w", big}});
    } catch (const IoError& e) {
      message = e.what();
    }
  }
  EXPECT_NE(message.find("model.safetensors"), std::string::npos) << message;
  EXPECT_NE(message.find("failed after"), std::string::npos) << message;
  EXPECT_EQ(read_bytes(path), old_bytes);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"model.safetensors"});
  EXPECT_EQ(SafetensorsReader(path).info("w").shape, (Shape{16}));
}

TEST(Safetensors, WriterRejectsBadInputBeforeWriting) {
  ScratchDir dir;
  const Tensor t = iota_tensor(Shape{2}, DType::f32);
  EXPECT_THROW(write_safetensors(dir / "a.safetensors", {{"x", t}, {"x", t}}), InvalidArgument);
  EXPECT_THROW(write_safetensors(dir / "a.safetensors", {{"x", t}, {"y", Tensor()}}), InvalidArgument);
  EXPECT_THROW(write_safetensors(dir / "a.safetensors", {{"", t}}), InvalidArgument);
  EXPECT_TRUE(dir.entries().empty());
  EXPECT_THROW(write_safetensors(dir / "no_such_dir" / "a.safetensors", {{"x", t}}), IoError);
}

// The streamed writer (one tensor at a time, for sharded checkpoints) writes write_safetensors'
// bytes: every dtype, a scalar, an empty tensor, a strided view; safetensors_header_bytes is the
// file's prefix up to the data.
TEST(Safetensors, StreamWriterWritesTheSameBytes) {
  ScratchDir dir;
  const Tensor wide = iota_tensor(Shape{3, 8}, DType::f32);
  const std::vector<NamedTensor> tensors = {{"b", iota_tensor(Shape{2, 3}, DType::bf16, 5)},
                                            {"a", iota_tensor(Shape{4}, DType::i64)},
                                            {"s", iota_tensor(Shape{}, DType::f32, 2)},
                                            {"e", iota_tensor(Shape{0, 3}, DType::i32)},
                                            {"v", wide.slice(1, 2, 3)}};
  const SafetensorsWriteOptions options{{{"format", "pt"}, {"note", "x"}}};
  write_safetensors(dir / "whole.safetensors", tensors, options);
  std::vector<SafetensorsEntry> entries;
  for (const NamedTensor& nt : tensors) entries.push_back({nt.name, nt.tensor.dtype(), nt.tensor.shape()});
  {
    SafetensorsStreamWriter w(dir / "streamed.safetensors", entries, options);
    for (const NamedTensor& nt : tensors) w.write_next(nt.tensor);
    EXPECT_EQ(w.entries_written(), tensors.size());
    w.commit();
  }
  const std::string whole = read_bytes(dir / "whole.safetensors");
  EXPECT_EQ(read_bytes(dir / "streamed.safetensors"), whole);
  const std::string header = safetensors_header_bytes(entries, options);
  EXPECT_EQ(whole.substr(0, header.size()), header);
  EXPECT_EQ(header.size() % 8, 0u);
}

TEST(Safetensors, StreamWriterRejectsOtherTensorsAndLeavesNoFileUncommitted) {
  ScratchDir dir;
  const Tensor t = iota_tensor(Shape{2, 2}, DType::f32);
  const std::vector<SafetensorsEntry> entries = {{"x", DType::f32, Shape{2, 2}}, {"y", DType::bf16, Shape{3}}};
  EXPECT_THROW(SafetensorsStreamWriter(dir / "d.safetensors", {entries[0], entries[0]}), InvalidArgument);
  EXPECT_THROW(safetensors_header_bytes({{"", DType::f32, Shape{1}}}), InvalidArgument);
  EXPECT_TRUE(dir.entries().empty());
  {
    SafetensorsStreamWriter w(dir / "a.safetensors", entries);
    EXPECT_THROW(w.write_next(iota_tensor(Shape{4}, DType::f32)), ShapeError);
    EXPECT_THROW(w.write_next(iota_tensor(Shape{2, 2}, DType::bf16)), DTypeError);
    w.write_next(t);
    EXPECT_THROW(w.commit(), InvalidArgument);  // "y" is missing
    w.write_next(iota_tensor(Shape{3}, DType::bf16));
    EXPECT_THROW(w.write_next(t), InvalidArgument);  // past the last entry
  }  // destroyed without commit(): nothing remains
  EXPECT_TRUE(dir.entries().empty());
  EXPECT_THROW(SafetensorsStreamWriter(dir / "no_such_dir" / "a.safetensors", entries), IoError);
}

}  // namespace
}  // namespace tsp::model
