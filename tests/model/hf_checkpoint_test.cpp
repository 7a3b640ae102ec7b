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
#include "tsp/core/checkpoint_dir.h"
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
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"config.json", "model.safetensors", "tsp_checkpoint.txt"}));
  EXPECT_EQ(testing::read_bytes(dir / "tsp_checkpoint.txt"), "tsp-checkpoint-v1\nconfig.json\nmodel.safetensors\n");
  const HfCheckpoint ck(dir.path());
  EXPECT_FALSE(ck.sharded());
  EXPECT_EQ(ck.config(), c);
  EXPECT_EQ(ck.tensor_names().size(), weights.size());
  SafetensorsReader raw(dir / "model.safetensors");
  EXPECT_EQ(raw.metadata().at("format"), "pt");
  for (const NamedTensor& w : weights) EXPECT_TRUE(same_bytes(ck.read(w.name, MemCategory::weights), w.tensor)) << w.name;
}

// Qwen2's biases round-trip; a checkpoint holding biases that its config.json has no place for
// (the model_type lost or changed) is refused naming the tensor, never loaded without them.
TEST(HfCheckpoint, QkvBiasesRoundTripAndUnexpectedBiasesAreRefused) {
  ScratchDir dir;
  ModelConfigFields f = test_config().fields();
  f.model_type = ModelType::qwen2;
  const ModelConfig qwen(f);
  const auto weights = random_weights(qwen, DType::bf16, 7);
  save_hf_checkpoint(dir.path(), qwen, weights);
  {
    const HfCheckpoint ck(dir.path());
    EXPECT_EQ(ck.config(), qwen);
    for (const NamedTensor& w : weights) EXPECT_TRUE(same_bytes(ck.read(w.name, MemCategory::weights), w.tensor)) << w.name;
  }
  f.model_type = ModelType::llama;
  testing::write_bytes(dir / "config.json", config_to_json(ModelConfig(f)));
  try {
    const HfCheckpoint ck(dir.path());
    ADD_FAILURE() << "a llama config over Qwen2 tensors was accepted";
  } catch (const InvalidArgument& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("holds \"model.layers.0.self_attn.k_proj.bias\""), std::string::npos) << m;
    EXPECT_NE(m.find("model_type llama"), std::string::npos) << m;
  }
}

TEST(HfCheckpoint, ShardedRoundTripAndRelayout) {
  ScratchDir dir;
  const ModelConfig c = test_config(/*tied=*/true);
  const auto weights = random_weights(c, DType::bf16, 7);
  // Largest tensor: gate/up/down 48 x 16 bf16 = 1536 bytes; 2000-byte shards force many files.
  save_hf_checkpoint(dir.path(), c, weights, {.max_shard_bytes = 2000});
  const std::vector<std::string> entries = dir.entries();
  ASSERT_GT(entries.size(), 5u);
  EXPECT_EQ(entries.front(), "config.json");
  EXPECT_EQ(entries[entries.size() - 2], "model.safetensors.index.json");
  EXPECT_EQ(entries.back(), "tsp_checkpoint.txt");
  const int64_t shards = static_cast<int64_t>(entries.size()) - 3;
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
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"config.json", "model.safetensors", "tsp_checkpoint.txt"}));
  EXPECT_FALSE(HfCheckpoint(dir.path()).sharded());
  // And back to shards: model.safetensors disappears.
  save_hf_checkpoint(dir.path(), c, weights, {.max_shard_bytes = 1 << 20});
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"config.json", "model-00001-of-00001.safetensors",
                                                     "model.safetensors.index.json", "tsp_checkpoint.txt"}));
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

  // Shapes that disagree with config.json (the hand-made files above are not ours: a save into
  // that directory would be refused, so the checkpoint goes next to them).
  save_hf_checkpoint(dir / "ck", c, weights);
  std::filesystem::rename(dir / "ck" / "config.json", dir / "config.json");
  std::filesystem::rename(dir / "ck" / "model.safetensors", dir / "model.safetensors");
  ModelConfigFields wider = c.fields();
  wider.intermediate_size = 64;
  save_config(ModelConfig(wider), dir / "config.json");
  m = io_error_of([&] { HfCheckpoint ck(dir.path()); });
  EXPECT_NE(m.find("gate_proj.weight\" has shape [48, 16]"), std::string::npos) << m;
  EXPECT_NE(m.find("[64, 16]"), std::string::npos) << m;

  // An index that points at a shard that is not there.
  ScratchDir sharded;
  save_hf_checkpoint(sharded.path(), c, weights, {.max_shard_bytes = 4096});
  const std::string gone = shard_file_name(1, static_cast<int64_t>(sharded.entries().size()) - 3);
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
  // A save does not resolve it by deleting a file it did not write (the marker does not list
  // model.safetensors); once the user removed the file that does not belong, it replaces the rest.
  std::string refused;
  try {
    save_hf_checkpoint(dir / "ck", c, new_weights);
  } catch (const InvalidArgument& e) {
    refused = e.what();
  }
  EXPECT_NE(refused.find("\"model.safetensors\", which the engine did not write"), std::string::npos) << refused;
  std::filesystem::remove(dir / "ck" / "model.safetensors");
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
  save_hf_checkpoint(ck, c, b, {.extra_files = {{"trainer_state.txt", "step 2"}}});
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(ck)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"config.json", "model.safetensors", "trainer_state.txt",
                                             "tsp_checkpoint.txt"}));
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
  EXPECT_THROW(save_hf_checkpoint(dir / "ck", c, w, {.extra_files = {{"tsp_checkpoint.txt", ""}}}), InvalidArgument);
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"file", "home"}));
}

// Issue #13: a directory holding a config.json is not necessarily ours. A downloaded Hugging Face
// model, a user's directory with a config.json, or one of our checkpoints into which the user put
// a file or a subdirectory is refused with a message saying why, and nothing in it changes.
TEST(HfCheckpoint, SaveRefusesForeignFilesNextToAConfig) {
  ScratchDir dir;
  const ModelConfig c = test_config();
  const auto a = random_weights(c, DType::f32, 33);
  const auto b = random_weights(c, DType::f32, 34);
  auto expect_refused = [&](const std::filesystem::path& target, const std::string& reason) {
    std::string message;
    try {
      save_hf_checkpoint(target, c, b);
    } catch (const InvalidArgument& e) {
      message = e.what();
    }
    EXPECT_NE(message.find("refusing to replace " + target.string()), std::string::npos) << message;
    EXPECT_NE(message.find(reason), std::string::npos) << message;
  };
  // A user's directory: config.json, notes.txt and a subdirectory.
  const auto home = dir / "home";
  std::filesystem::create_directories(home / "sub");
  save_config(c, home / "config.json");
  testing::write_bytes(home / "notes.txt", "precious");
  testing::write_bytes(home / "sub" / "more.txt", "also precious");
  expect_refused(home, "\"notes.txt\"");
  EXPECT_EQ(testing::read_bytes(home / "notes.txt"), "precious");
  EXPECT_EQ(testing::read_bytes(home / "sub" / "more.txt"), "also precious");
  // A plain HF model directory (config.json + model.safetensors, no marker): not ours either.
  const auto hf = dir / "downloaded";
  std::filesystem::create_directory(hf);
  save_config(c, hf / "config.json");
  write_safetensors(hf / "model.safetensors", a, {.metadata = {{"format", "pt"}}});
  expect_refused(hf, "has no tsp_checkpoint.txt");
  expect_weights(hf, a);
  // Our own checkpoint with a user's file or subdirectory added: refused, both survive.
  const auto ck = dir / "ck";
  save_hf_checkpoint(ck, c, a);
  testing::write_bytes(ck / "notes.txt", "mine");
  expect_refused(ck, "\"notes.txt\", which the engine did not write");
  EXPECT_EQ(testing::read_bytes(ck / "notes.txt"), "mine");
  std::filesystem::remove(ck / "notes.txt");
  std::filesystem::create_directory(ck / "sub");
  testing::write_bytes(ck / "sub" / "x", "mine");
  expect_refused(ck, "\"sub\"");
  EXPECT_EQ(testing::read_bytes(ck / "sub" / "x"), "mine");
  expect_weights(ck, a);
  std::filesystem::remove_all(ck / "sub");
  // Once it holds only our files again, it is replaced fine.
  save_hf_checkpoint(ck, c, b);
  expect_weights(ck, b);
  // An empty directory is fine.
  std::filesystem::create_directory(dir / "empty");
  save_hf_checkpoint(dir / "empty", c, a);
  expect_weights(dir / "empty", a);
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"ck", "downloaded", "empty", "home"}));
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
// itself always holds one complete checkpoint, and leftovers do not disturb later saves. The
// next save removes the leftovers that are ours (our marker, only the files it lists) and keeps
// everything else, however similar its name (issue #13: one survived 17 saves).
TEST(HfCheckpoint, CrashLeftoversAreNeverReadAndOursAreRemoved) {
  ScratchDir dir;
  const ModelConfig c = test_config();
  const auto old_weights = random_weights(c, DType::f32, 61);
  const auto new_weights = random_weights(c, DType::f32, 62);
  const auto ck = dir / "ck";
  save_hf_checkpoint(ck, c, old_weights, {.max_shard_bytes = 4096});

  // Someone else's directory with a similar name (no marker): kept.
  const auto foreign = dir / ".ck.tmp.AbC123";
  std::filesystem::create_directory(foreign);
  save_config(c, foreign / "config.json");
  write_safetensors(foreign / shard_file_name(0, 3), {new_weights[0]});
  // Ours with a foreign file added: kept.
  const auto touched = dir / ".ck.tmp.Tch123";
  std::filesystem::create_directory(touched);
  testing::write_bytes(touched / "tsp_checkpoint.txt", "tsp-checkpoint-v1\nconfig.json\nmodel.safetensors\n");
  testing::write_bytes(touched / "notes.txt", "precious");
  // Names that are not exactly the pattern (7 characters, another base name, a file): kept.
  std::filesystem::create_directory(dir / ".ck.tmp.Abc1234");
  testing::write_bytes(dir / ".ck.tmp.Abc1234" / "tsp_checkpoint.txt", "tsp-checkpoint-v1\n");
  std::filesystem::create_directory(dir / ".ckx.tmp.Abc123");
  testing::write_bytes(dir / ".ckx.tmp.Abc123" / "tsp_checkpoint.txt", "tsp-checkpoint-v1\n");
  testing::write_bytes(dir / ".ck.tmp.File12", "x");
  expect_weights(ck, old_weights);

  // Ours: a crash while writing (the marker, config.json, a half-written safetensors temporary)
  // and a crash after the swap (a complete old copy).
  const auto partial = dir / ".ck.tmp.Prt456";
  std::filesystem::create_directory(partial);
  testing::write_bytes(partial / "tsp_checkpoint.txt", "tsp-checkpoint-v1\nconfig.json\nmodel.safetensors\n");
  save_config(c, partial / "config.json");
  testing::write_bytes(partial / ".model.safetensors.tmp.Qw3rty", "half");
  save_hf_checkpoint(dir / "scratch", c, old_weights);
  std::filesystem::rename(dir / "scratch", dir / ".ck.old.XyZ789");

  save_hf_checkpoint(ck, c, new_weights);
  expect_weights(ck, new_weights);
  EXPECT_FALSE(HfCheckpoint(ck).sharded());
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{".ck.tmp.AbC123", ".ck.tmp.Abc1234", ".ck.tmp.File12",
                                                     ".ck.tmp.Tch123", ".ckx.tmp.Abc123", "ck"}));
  EXPECT_EQ(testing::read_bytes(touched / "notes.txt"), "precious");
  EXPECT_TRUE(std::filesystem::exists(foreign / "config.json"));
}

// While the target holds no complete checkpoint (a crash between the fallback's two renames),
// its siblings may be the only complete copies: a save keeps them until it has replaced the target.
TEST(HfCheckpoint, LeftoversAreKeptWhileTheTargetIsMissing) {
  ScratchDir dir;
  const ModelConfig c = test_config();
  const auto a = random_weights(c, DType::f32, 63);
  save_hf_checkpoint(dir / "scratch", c, a);
  std::filesystem::rename(dir / "scratch", dir / ".ck.old.Old123");
  EXPECT_TRUE(tsp::remove_stale_checkpoint_temporaries(dir / "ck").empty());
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{".ck.old.Old123"}));
  save_hf_checkpoint(dir / "ck", c, a);  // then removed after the save succeeded
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"ck"}));
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
