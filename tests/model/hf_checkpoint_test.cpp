// Tests of HF checkpoint directories: single-file and sharded round trips, re-saving with another
// layout, reading across shards, clear IoErrors for missing files, tensors, shapes and ambiguous
// directories, and whole-directory replacement (a failed or crashed save never mixes checkpoints).
#include "tsp/model/hf_checkpoint.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "io_test_util.h"
#include "scratch_dir.h"
#include "test_util.h"
#include "tsp/core/error.h"

namespace tsp::model {
namespace {

using testing::FileSizeLimit;
using testing::io_error_of;
using testing::same_bytes;
using testing::ScratchDir;

ModelConfig test_config(bool tied = false) {
  ModelConfigFields f;
  f.hidden_size = 16;
  f.intermediate_size = 48;
  f.num_hidden_layers = 2;
  f.num_attention_heads = 4;
  f.num_key_value_heads = 2;
  f.vocab_size = 40;
  f.tie_word_embeddings = tied;
  return ModelConfig(f);
}

std::vector<NamedTensor> random_weights(const ModelConfig& c, DType dtype, uint64_t seed) {
  std::vector<NamedTensor> out;
  for (const WeightSpec& s : weight_specs(c))
    out.push_back({s.name, tsp::testing::random_tensor(s.shape, dtype, seed++)});
  return out;
}

TEST(HfCheckpoint, SingleFileRoundTrip) {
  ScratchDir dir;
  const ModelConfig c = test_config();
  const auto weights = random_weights(c, DType::f32, 1);
  save_hf_checkpoint(dir.path(), c, weights);
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"config.json", "model.safetensors"}));
  const HfCheckpoint ck(dir.path());
  EXPECT_FALSE(ck.sharded());
  EXPECT_EQ(ck.config(), c);
  EXPECT_EQ(ck.tensor_names().size(), weights.size());
  SafetensorsReader raw(dir / "model.safetensors");
  EXPECT_EQ(raw.metadata().at("format"), "pt");
  for (const NamedTensor& w : weights) EXPECT_TRUE(same_bytes(ck.read(w.name, MemCategory::weights), w.tensor)) << w.name;
}

TEST(HfCheckpoint, ShardedRoundTripAndRelayout) {
  ScratchDir dir;
  const ModelConfig c = test_config(/*tied=*/true);
  const auto weights = random_weights(c, DType::bf16, 7);
  // Largest tensor: gate/up/down 48 x 16 bf16 = 1536 bytes; 2000-byte shards force many files.
  save_hf_checkpoint(dir.path(), c, weights, {.max_shard_bytes = 2000});
  const std::vector<std::string> entries = dir.entries();
  ASSERT_GT(entries.size(), 4u);
  EXPECT_EQ(entries.front(), "config.json");
  EXPECT_EQ(entries.back(), "model.safetensors.index.json");
  const int64_t shards = static_cast<int64_t>(entries.size()) - 2;
  EXPECT_EQ(entries[1], shard_file_name(0, shards));
  EXPECT_EQ(shard_file_name(1, 5), "model-00002-of-00005.safetensors");

  const std::string index = testing::read_bytes(dir / "model.safetensors.index.json");
  EXPECT_NE(index.find("\"total_size\""), std::string::npos);
  EXPECT_NE(index.find("\"weight_map\""), std::string::npos);

  const HfCheckpoint ck(dir.path());
  EXPECT_TRUE(ck.sharded());
  EXPECT_FALSE(ck.contains("lm_head.weight"));
  for (const NamedTensor& w : weights) EXPECT_TRUE(same_bytes(ck.read(w.name, MemCategory::weights), w.tensor)) << w.name;
  EXPECT_NE(ck.file_of("model.embed_tokens.weight"), ck.file_of("model.norm.weight"));
  // Row shards and dtype conversion across files.
  const Tensor rows = ck.read_rows("model.layers.1.mlp.up_proj.weight", RowRange{12, 24}, MemCategory::weights);
  const Tensor& up = std::find_if(weights.begin(), weights.end(), [](const NamedTensor& w) {
                       return w.name == "model.layers.1.mlp.up_proj.weight";
                     })->tensor;
  EXPECT_TRUE(same_bytes(rows, Tensor::copy_of(up.slice(0, 12, 12), DType::bf16, MemCategory::workspace)));
  Tensor f32 = Tensor::empty(Shape{40, 16}, DType::f32, MemCategory::weights);
  ck.read_into("model.embed_tokens.weight", f32);
  EXPECT_CLOSE(f32, weights[0].tensor, 0.0, 0.0);  // bf16 -> f32 is exact

  // Re-save as one file into the same directory: the shards and the index disappear.
  save_hf_checkpoint(dir.path(), c, weights);
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"config.json", "model.safetensors"}));
  EXPECT_FALSE(HfCheckpoint(dir.path()).sharded());
  // And back to shards: model.safetensors disappears.
  save_hf_checkpoint(dir.path(), c, weights, {.max_shard_bytes = 1 << 20});
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"config.json", "model-00001-of-00001.safetensors",
                                                     "model.safetensors.index.json"}));
  EXPECT_TRUE(HfCheckpoint(dir.path()).sharded());
}

TEST(HfCheckpoint, MissingPiecesThrowClearIoErrors) {
  ScratchDir dir;
  const ModelConfig c = test_config();
  auto weights = random_weights(c, DType::f32, 3);

  std::string m = io_error_of([&] { HfCheckpoint ck(dir / "nowhere"); });
  EXPECT_NE(m.find("nowhere"), std::string::npos) << m;
  m = io_error_of([&] { HfCheckpoint ck(dir.path()); });
  EXPECT_NE(m.find("config.json"), std::string::npos) << m;
  save_config(c, dir / "config.json");
  m = io_error_of([&] { HfCheckpoint ck(dir.path()); });
  EXPECT_NE(m.find("model.safetensors"), std::string::npos) << m;

  // A weights file lacking one tensor.
  std::vector<NamedTensor> partial(weights.begin(), weights.end());
  partial.erase(partial.begin() + 3);  // model.layers.0.self_attn.k_proj.weight
  write_safetensors(dir / "model.safetensors", partial);
  m = io_error_of([&] { HfCheckpoint ck(dir.path()); });
  EXPECT_NE(m.find("missing tensor \"model.layers.0.self_attn.k_proj.weight\""), std::string::npos) << m;

  // Shapes that disagree with config.json.
  save_hf_checkpoint(dir.path(), c, weights);
  ModelConfigFields wider = c.fields();
  wider.intermediate_size = 64;
  save_config(ModelConfig(wider), dir / "config.json");
  m = io_error_of([&] { HfCheckpoint ck(dir.path()); });
  EXPECT_NE(m.find("gate_proj.weight\" has shape [48, 16]"), std::string::npos) << m;
  EXPECT_NE(m.find("[64, 16]"), std::string::npos) << m;

  // An index that points at a shard that is not there.
  ScratchDir sharded;
  save_hf_checkpoint(sharded.path(), c, weights, {.max_shard_bytes = 4096});
  const std::string gone = shard_file_name(1, static_cast<int64_t>(sharded.entries().size()) - 2);
  std::filesystem::remove(sharded / gone);
  m = io_error_of([&] { HfCheckpoint ck(sharded.path()); });
  EXPECT_NE(m.find(gone), std::string::npos) << m;
  EXPECT_NE(m.find("does not exist"), std::string::npos) << m;
}

TEST(HfCheckpoint, SaveValidatesAgainstTheConfig) {
  ScratchDir dir;
  const ModelConfig c = test_config();
  auto weights = random_weights(c, DType::f32, 5);
  auto missing = weights;
  missing.pop_back();
  EXPECT_THROW(save_hf_checkpoint(dir.path(), c, missing), InvalidArgument);
  auto extra = weights;
  extra.push_back({"model.extra.weight", weights[1].tensor});
  EXPECT_THROW(save_hf_checkpoint(dir.path(), c, extra), InvalidArgument);
  auto wrong = weights;
  wrong[2].tensor = Tensor::zeros(Shape{3, 3}, DType::f32, MemCategory::workspace);
  EXPECT_THROW(save_hf_checkpoint(dir.path(), c, wrong), ShapeError);
  EXPECT_TRUE(dir.entries().empty());
}

// The checkpoint's tensors, read back, equal `weights` byte for byte.
void expect_weights(const std::filesystem::path& dir, const std::vector<NamedTensor>& weights) {
  const HfCheckpoint ck(dir);
  for (const NamedTensor& w : weights)
    EXPECT_TRUE(same_bytes(ck.read(w.name, MemCategory::weights), w.tensor)) << dir.string() << ": " << w.name;
}

// A directory holding both layouts (what a crash or a failed cleanup of an older save could
// leave) is refused: neither the old single file nor the new shards are silently preferred.
TEST(HfCheckpoint, AmbiguousDirectoryIsRefused) {
  ScratchDir dir;
  const ModelConfig c = test_config();
  const auto old_weights = random_weights(c, DType::f32, 11);
  const auto new_weights = random_weights(c, DType::f32, 12);
  save_hf_checkpoint(dir / "ck", c, new_weights, {.max_shard_bytes = 4096});
  write_safetensors(dir / "ck" / "model.safetensors", old_weights, {.metadata = {{"format", "pt"}}});
  const std::string m = io_error_of([&] { HfCheckpoint ck(dir / "ck"); });
  EXPECT_NE(m.find("ambiguous"), std::string::npos) << m;
  EXPECT_NE(m.find((dir / "ck").string()), std::string::npos) << m;
  EXPECT_NE(m.find("model.safetensors.index.json"), std::string::npos) << m;
  // A save replaces the whole directory, which resolves it.
  save_hf_checkpoint(dir / "ck", c, new_weights);
  expect_weights(dir / "ck", new_weights);
}

TEST(HfCheckpoint, SaveReplacesTheWholeDirectory) {
  ScratchDir dir;
  const ModelConfig c = test_config();
  const auto a = random_weights(c, DType::f32, 21);
  const auto b = random_weights(c, DType::bf16, 22);
  const auto ck = dir / "ck";
  save_hf_checkpoint(ck, c, a, {.max_shard_bytes = 4096, .extra_files = {{"trainer_state.txt", "step 1"}}});
  EXPECT_EQ(testing::read_bytes(ck / "trainer_state.txt"), "step 1");
  testing::write_bytes(ck / "notes.txt", "written by someone else");
  save_hf_checkpoint(ck, c, b, {.extra_files = {{"trainer_state.txt", "step 2"}}});
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(ck)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"config.json", "model.safetensors", "trainer_state.txt"}));
  EXPECT_EQ(testing::read_bytes(ck / "trainer_state.txt"), "step 2");
  expect_weights(ck, b);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"ck"});  // no temporary or old copy left
  EXPECT_EQ(std::filesystem::status(ck).permissions() & std::filesystem::perms::others_read,
            std::filesystem::perms::others_read);  // not mkdtemp's 0700
  // A trailing separator names the same directory.
  save_hf_checkpoint(ck.string() + "/", c, a);
  expect_weights(ck, a);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"ck"});
}

TEST(HfCheckpoint, SaveRefusesToReplaceWhatIsNotACheckpoint) {
  ScratchDir dir;
  const ModelConfig c = test_config();
  const auto w = random_weights(c, DType::f32, 31);
  std::filesystem::create_directory(dir / "home");
  testing::write_bytes(dir / "home" / "notes.txt", "precious");
  EXPECT_THROW(save_hf_checkpoint(dir / "home", c, w), InvalidArgument);
  EXPECT_EQ(testing::read_bytes(dir / "home" / "notes.txt"), "precious");
  testing::write_bytes(dir / "file", "x");
  EXPECT_THROW(save_hf_checkpoint(dir / "file", c, w), InvalidArgument);
  EXPECT_THROW(save_hf_checkpoint(dir / "ck", c, w, {.extra_files = {{"config.json", "{}"}}}), InvalidArgument);
  EXPECT_THROW(save_hf_checkpoint(dir / "ck", c, w, {.extra_files = {{"model-00001-of-00001.safetensors", ""}}}),
               InvalidArgument);
  EXPECT_THROW(save_hf_checkpoint(dir / "ck", c, w, {.extra_files = {{"sub/x", ""}}}), InvalidArgument);
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"file", "home"}));
}

TEST(HfCheckpoint, SaveThroughASymlinkReplacesItsTarget) {
  ScratchDir dir;
  const ModelConfig c = test_config();
  const auto a = random_weights(c, DType::f32, 41);
  const auto b = random_weights(c, DType::f32, 42);
  save_hf_checkpoint(dir / "step1", c, a);
  std::filesystem::create_directory_symlink("step1", dir / "latest");
  save_hf_checkpoint(dir / "latest", c, b);
  EXPECT_TRUE(std::filesystem::is_symlink(dir / "latest"));
  expect_weights(dir / "step1", b);
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"latest", "step1"}));
}

// A save that fails midway (here: the shard holding the 12800-byte embeddings hits the file-size
// limit after the smaller shards were written) leaves
// the old checkpoint complete and untouched, even when the new save has the same shard names
// (which an in-place writer would overwrite one by one), and leaves no temporary behind.
TEST(HfCheckpoint, FailedSaveKeepsTheOldCheckpoint) {
  ScratchDir dir;
  ModelConfigFields f = test_config().fields();
  f.vocab_size = 200;  // embeddings and head: 200 x 16 f32 = 12800 bytes, the largest shards
  const ModelConfig c(f);
  auto by_size = [](std::vector<NamedTensor> w) {
    std::stable_sort(w.begin(), w.end(), [](const NamedTensor& x, const NamedTensor& y) {
      return x.tensor.nbytes() < y.tensor.nbytes();
    });
    return w;
  };
  const auto old_weights = by_size(random_weights(c, DType::f32, 51));
  const auto new_weights = by_size(random_weights(c, DType::f32, 52));
  const auto ck = dir / "ck";
  const HfCheckpointWriteOptions options{.max_shard_bytes = 4096};
  save_hf_checkpoint(ck, c, old_weights, options);
  const std::vector<std::string> old_entries = [&] {
    std::vector<std::string> v;
    for (const auto& e : std::filesystem::directory_iterator(ck)) v.push_back(e.path().filename().string());
    std::sort(v.begin(), v.end());
    return v;
  }();
  ASSERT_GT(old_entries.size(), 5u);

  std::string message;
  {
    FileSizeLimit limit(8000);  // the small shards fit, the 12800-byte ones do not
    if (!limit.ok()) GTEST_SKIP() << "cannot lower RLIMIT_FSIZE here";
    message = io_error_of([&] { save_hf_checkpoint(ck, c, new_weights, options); });
  }
  EXPECT_NE(message.find("failed after"), std::string::npos) << message;
  expect_weights(ck, old_weights);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"ck"});
  std::vector<std::string> entries;
  for (const auto& e : std::filesystem::directory_iterator(ck)) entries.push_back(e.path().filename().string());
  std::sort(entries.begin(), entries.end());
  EXPECT_EQ(entries, old_entries);

  save_hf_checkpoint(ck, c, new_weights, options);
  expect_weights(ck, new_weights);
}

// What a crash can leave next to a checkpoint: a partly written ".ck.tmp.*" sibling, or (after
// the swap, before the cleanup) the previous checkpoint in a ".ck.*" sibling. The directory
// itself always holds one complete checkpoint, and leftovers do not disturb later saves.
TEST(HfCheckpoint, CrashLeftoversAreNeverRead) {
  ScratchDir dir;
  const ModelConfig c = test_config();
  const auto old_weights = random_weights(c, DType::f32, 61);
  const auto new_weights = random_weights(c, DType::f32, 62);
  const auto ck = dir / "ck";
  save_hf_checkpoint(ck, c, old_weights, {.max_shard_bytes = 4096});

  // Crash while writing the new checkpoint: a partial temporary directory.
  const auto partial = dir / ".ck.tmp.AbC123";
  std::filesystem::create_directory(partial);
  save_config(c, partial / "config.json");
  write_safetensors(partial / shard_file_name(0, 3), {new_weights[0]});
  expect_weights(ck, old_weights);

  // Crash after the swap, before the old copy was deleted.
  save_hf_checkpoint(dir / "scratch", c, old_weights);
  std::filesystem::rename(dir / "scratch", dir / ".ck.tmp.XyZ789");
  save_hf_checkpoint(ck, c, new_weights);
  expect_weights(ck, new_weights);
  EXPECT_FALSE(HfCheckpoint(ck).sharded());
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{".ck.tmp.AbC123", ".ck.tmp.XyZ789", "ck"}));
}

// The two-rename fallback for file systems without RENAME_EXCHANGE.
TEST(HfCheckpoint, ReplaceDirectoryFallback) {
  ScratchDir dir;
  const ModelConfig c = test_config();
  const auto a = random_weights(c, DType::f32, 71);
  const auto b = random_weights(c, DType::f32, 72);
  save_hf_checkpoint(dir / "ck", c, a, {.max_shard_bytes = 4096});
  save_hf_checkpoint(dir / "fresh", c, b);
  detail::replace_directory(dir / "fresh", dir / "ck", /*allow_exchange=*/false);
  expect_weights(dir / "ck", b);
  EXPECT_FALSE(HfCheckpoint(dir / "ck").sharded());
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"ck"});
  // Into a place that does not exist yet: a plain rename.
  save_hf_checkpoint(dir / "fresh", c, a);
  detail::replace_directory(dir / "fresh", dir / "new", /*allow_exchange=*/false);
  expect_weights(dir / "new", a);
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"ck", "new"}));
  // A failing swap (the new checkpoint is missing) leaves the old one in place.
  EXPECT_THROW(detail::replace_directory(dir / "absent", dir / "ck", /*allow_exchange=*/false), IoError);
  EXPECT_THROW(detail::replace_directory(dir / "absent", dir / "ck", /*allow_exchange=*/true), IoError);
  expect_weights(dir / "ck", b);
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"ck", "new"}));
}

}  // namespace
}  // namespace tsp::model
