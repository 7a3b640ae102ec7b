// Sharded checkpoints under mpirun (1, 2, 4 ranks): single-rank bytes, loads at any degree, one
// tensor on rank 0, and every failure thrown on every rank without a hang.
#include "tsp/parallel/sharded_checkpoint.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "io_test_util.h"
#include "scratch_dir.h"
#include "tsp/comm/collectives.h"
#include "tsp/core/error.h"
#include "tsp/model/hf_checkpoint.h"
#include "tsp/model/model_weights.h"
#include "tsp/parallel/sharded_adamw.h"
#include "tsp/parallel/tp_weights.h"
#include "parallel/layout_test_util.h"
#include "tsp/comm/self/self_backend.h"
#include "tsp/parallel/single_layout.h"
#include "tsp/train/sharded_train_state.h"
#include "tsp/train/train_state.h"

namespace tsp::parallel {
namespace {

namespace fs = std::filesystem;
using testing::read_bytes;
using testing::ScratchDir;

// h = 32, H = 8, H_kv = 4, F = 64, V = 48, 2 layers: divisible by D = 1, 2, 4.
model::ModelConfig small_config(DType dtype, bool tied = false, int64_t hidden = 32, int64_t inner = 64) {
  model::ModelConfigFields f;
  f.hidden_size = hidden;
  f.intermediate_size = inner;
  f.num_hidden_layers = 2;
  f.num_attention_heads = 8;
  f.num_key_value_heads = 4;
  f.vocab_size = 48;
  f.max_position_embeddings = 64;
  f.tie_word_embeddings = tied;
  f.torch_dtype = dtype;
  return model::ModelConfig(f);
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  if (!(a.shape() == b.shape()) || a.dtype() != b.dtype()) return false;
  const Tensor ca = Tensor::copy_of(a, a.dtype(), MemCategory::workspace);
  const Tensor cb = Tensor::copy_of(b, b.dtype(), MemCategory::workspace);
  return std::memcmp(ca.raw(), cb.raw(), ca.nbytes()) == 0;
}

void expect_pieces_equal(const std::vector<ParamShard>& pieces, const model::ModelWeights& full,
                         const std::string& what) {
  for (const ParamShard& p : pieces) {
    EXPECT_TRUE(same_bytes(p.local, p.view_of_full(full.get(p.name)))) << what << " " << p.name;
  }
}

std::vector<model::NamedTensor> named(const model::ModelWeights& w) {
  std::vector<model::NamedTensor> out;
  for (const auto& [n, t] : w.named()) out.push_back({n, t});
  return out;
}

// A scratch directory made by rank 0 and known to every rank (all ranks share the machine);
// removed by rank 0 after a barrier, once every rank is done with it.
class SharedScratch {
 public:
  explicit SharedScratch(comm::Communicator& world) : world_(world) {
    if (world.rank() == 0) own_.emplace();
    std::string path = world.rank() == 0 ? own_->path().string() : std::string();
    Tensor len = Tensor::empty(Shape{1}, DType::i64, MemCategory::workspace);
    len.data<int64_t>()[0] = static_cast<int64_t>(path.size());
    comm::broadcast(world, len, 0);
    Tensor text = Tensor::zeros(Shape{(len.data<int64_t>()[0] + 7) / 8}, DType::i64, MemCategory::workspace);
    if (world.rank() == 0) std::memcpy(text.raw(), path.data(), path.size());
    comm::broadcast(world, text, 0);
    path_ = std::string(static_cast<const char*>(text.raw()), static_cast<size_t>(len.data<int64_t>()[0]));
  }
  ~SharedScratch() { world_.barrier(); }
  fs::path operator/(std::string_view name) const { return path_ / name; }
  const fs::path& path() const { return path_; }

 private:
  comm::Communicator& world_;
  std::optional<ScratchDir> own_;
  fs::path path_;
};

// Every rank runs `fn`, which must throw E; returns whether it did (reported per rank).
template <class E, class Fn>
void expect_throw_everywhere(Fn&& fn, const std::string& what, const std::string& needle = "") {
  try {
    fn();
    ADD_FAILURE() << what << ": no exception";
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << what << ": " << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": wrong exception type: " << e.what();
  }
}

std::vector<std::string> sorted_entries(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// ---------------------------------------------------------------------------------------------

TEST(ShardedCheckpoint, SaveIsByteIdenticalToSingleRank) {
  comm::Communicator world = comm::Communicator::world();
  for (bool tied : {false, true}) {
    for (DType dtype : {DType::f32, DType::bf16}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dtype) << " tied=" << tied);
      SharedScratch dir(world);
      const model::ModelConfig config = small_config(dtype, tied);
      const std::map<std::string, std::string> extra = {{"notes.txt", "hello"}};
      for (uint64_t seed : {1, 2}) {  // the second save replaces the first checkpoint
        const model::ModelWeights full = model::ModelWeights::initialize(config, dtype, seed);
        const TpWeights mine = TpWeights::from_full(full, world.size(), world.rank());
        save_sharded_hf_checkpoint(world, config, mine.params(), dir / "sharded", extra);
        if (world.rank() == 0) {
          model::save_hf_checkpoint(dir / "single", config, named(full), {.extra_files = extra});
          for (const char* f : {"model.safetensors", "config.json", "notes.txt", "tsp_checkpoint.txt"}) {
            EXPECT_EQ(read_bytes(dir / "sharded" / f), read_bytes(dir / "single" / f)) << f << " seed " << seed;
          }
          EXPECT_EQ(sorted_entries(dir / "sharded"), sorted_entries(dir / "single"));
          EXPECT_EQ(sorted_entries(dir.path()), (std::vector<std::string>{"sharded", "single"}));
        }
      }
    }
  }
}

TEST(ShardedCheckpoint, RankZeroHoldsOneTensorAtATime) {
  comm::Communicator world = comm::Communicator::world();
  SharedScratch dir(world);
  const model::ModelConfig config = small_config(DType::f32, false, 128, 512);  // gate/up/down: 256 KiB
  const model::ModelWeights full = model::ModelWeights::initialize(config, DType::f32, 4);
  const TpWeights mine = TpWeights::from_full(full, world.size(), world.rank());
  int64_t largest = 0;
  for (const auto& [n, t] : full.named()) largest = std::max<int64_t>(largest, static_cast<int64_t>(t.nbytes()));
  int64_t largest_piece = 0;
  for (const ParamShard& p : mine.params()) {
    largest_piece = std::max<int64_t>(largest_piece, static_cast<int64_t>(p.local.nbytes()));
  }
  MemoryLedger& ledger = MemoryLedger::process();
  ledger.reset_peaks();
  const int64_t before = ledger.total().live_bytes;
  save_sharded_hf_checkpoint(world, config, mine.params(), dir / "ckpt");
  const int64_t extra = ledger.total().peak_bytes - before;
  const int64_t small = 16 << 10;  // layout records and status words
  if (world.rank() == 0 && world.size() > 1) {
    EXPECT_LE(extra, largest + largest_piece + small) << "largest tensor " << largest;
    EXPECT_GE(extra, largest);  // it did assemble the largest tensor (the measurement works)
  } else {
    EXPECT_LE(extra, small);  // senders allocate nothing (the TSP pieces are contiguous)
  }
}

TEST(ShardedCheckpoint, LoadsAtAnyDegree) {
  comm::Communicator world = comm::Communicator::world();
  for (DType saved : {DType::f32, DType::bf16}) {
    SharedScratch dir(world);
    const model::ModelConfig config = small_config(saved);
    const model::ModelWeights full = model::ModelWeights::initialize(config, saved, 7);
    const TpWeights mine = TpWeights::from_full(full, world.size(), world.rank());
    save_sharded_hf_checkpoint(world, config, mine.params(), dir / "ckpt");
    if (world.rank() == 0) {  // a single-rank checkpoint split over shard files loads the same way
      model::save_hf_checkpoint(dir / "multi", config, named(full), {.max_shard_bytes = 10000});
    }
    world.barrier();
    for (DType dtype : {DType::f32, DType::bf16}) {
      model::ModelWeights want(config, dtype, MemCategory::workspace);
      want.copy_from(full);
      for (int D : {1, 2, 4}) {
        for (int r = 0; r < D; ++r) {
          for (const char* which : {"ckpt", "multi"}) {
            SCOPED_TRACE(::testing::Message() << "saved " << dtype_name(saved) << " as " << dtype_name(dtype)
                                              << " D=" << D << " r=" << r << " " << which);
            TpWeights w(config, dtype, D, r, MemCategory::weights);
            load_shards_from_hf(dir / which, w.params());
            expect_pieces_equal(w.params(), want, "loaded");
          }
        }
      }
    }
  }
}

TEST(ShardedCheckpoint, MissingCorruptOrForeignCheckpointsThrowOnEveryRank) {
  comm::Communicator world = comm::Communicator::world();
  SharedScratch dir(world);
  const model::ModelConfig config = small_config(DType::f32);
  const model::ModelWeights full = model::ModelWeights::initialize(config, DType::f32, 7);
  const TpWeights mine = TpWeights::from_full(full, world.size(), world.rank());
  const std::vector<ParamShard> params = mine.params();
  expect_throw_everywhere<IoError>([&] { load_shards_from_hf(dir / "absent", params); }, "missing directory");

  save_sharded_hf_checkpoint(world, config, params, dir / "ckpt");
  // Another model: tied embeddings (no lm_head) and another hidden size.
  TpWeights tied(small_config(DType::f32, true), DType::f32, world.size(), world.rank(), MemCategory::weights);
  save_sharded_hf_checkpoint(world, tied.config(), tied.params(), dir / "tied");
  expect_throw_everywhere<InvalidArgument>([&] { load_shards_from_hf(dir / "tied", params); }, "tied checkpoint",
                                           "lm_head.weight");
  TpWeights wide(small_config(DType::f32, false, 64), DType::f32, world.size(), world.rank(), MemCategory::weights);
  expect_throw_everywhere<InvalidArgument>([&] { load_shards_from_hf(dir / "ckpt", wide.params()); }, "wider model",
                                           "another model");

  world.barrier();           // every rank is done reading before rank 0 damages the files
  if (world.rank() == 0) {  // truncate the weights file
    const std::string bytes = read_bytes(dir / "ckpt" / "model.safetensors");
    testing::write_bytes(dir / "ckpt" / "model.safetensors", std::string_view(bytes).substr(0, bytes.size() - 100));
  }
  world.barrier();
  expect_throw_everywhere<IoError>([&] { load_shards_from_hf(dir / "ckpt", params); }, "truncated", "truncated");
  world.barrier();
  if (world.rank() == 0) fs::remove(dir / "ckpt" / "config.json");
  world.barrier();
  expect_throw_everywhere<IoError>([&] { load_shards_from_hf(dir / "ckpt", params); }, "no config");
}

TEST(ShardedCheckpoint, UnwritableTargetsThrowOnEveryRank) {
  comm::Communicator world = comm::Communicator::world();
  SharedScratch dir(world);
  const model::ModelConfig config = small_config(DType::f32);
  const model::ModelWeights full = model::ModelWeights::initialize(config, DType::f32, 7);
  const TpWeights mine = TpWeights::from_full(full, world.size(), world.rank());
  if (world.rank() == 0) {
    testing::write_bytes(dir / "a_file", "x");  // not a directory: nothing can be created below it
    fs::create_directories(dir / "precious");
    testing::write_bytes(dir / "precious" / "thesis.tex", "do not delete");
  }
  world.barrier();
  expect_throw_everywhere<IoError>(
      [&] { save_sharded_hf_checkpoint(world, config, mine.params(), dir / "a_file" / "ckpt"); }, "parent is a file");
  expect_throw_everywhere<InvalidArgument>(
      [&] { save_sharded_hf_checkpoint(world, config, mine.params(), dir / "precious"); }, "not a checkpoint",
      "refusing to replace");
  expect_throw_everywhere<InvalidArgument>(
      [&] { save_sharded_hf_checkpoint(world, config, mine.params(), dir / "a_file"); }, "a file");
  expect_throw_everywhere<IoError>(
      [&] { save_sharded_safetensors(world, dir / "absent" / "x.safetensors", ShardedFile{mine.params(), {}}); },
      "standalone file in a missing directory");
  if (world.rank() == 0) {
    EXPECT_EQ(read_bytes(dir / "precious" / "thesis.tex"), "do not delete");
    EXPECT_EQ(sorted_entries(dir.path()), (std::vector<std::string>{"a_file", "precious"}));
  }
  world.barrier();
}

// Issue #13: a directory holding a config.json is not necessarily ours. A user's directory (config,
// notes, a subdirectory) and one of our checkpoints with a user's file added are refused on every
// rank before anything moves, and everything in them survives; our own checkpoint is replaced; our
// stale temporaries are removed at the next save, a similarly named foreign directory is kept.
TEST(ShardedCheckpoint, ForeignFilesSurviveAndOwnTemporariesAreCleaned) {
  comm::Communicator world = comm::Communicator::world();
  SharedScratch dir(world);
  const model::ModelConfig config = small_config(DType::f32);
  const model::ModelWeights a = model::ModelWeights::initialize(config, DType::f32, 8);
  const model::ModelWeights b = model::ModelWeights::initialize(config, DType::f32, 9);
  const TpWeights mine_a = TpWeights::from_full(a, world.size(), world.rank());
  const TpWeights mine_b = TpWeights::from_full(b, world.size(), world.rank());
  if (world.rank() == 0) {
    fs::create_directories(dir / "home" / "sub");
    model::save_config(config, dir / "home" / "config.json");
    testing::write_bytes(dir / "home" / "notes.txt", "precious");
    testing::write_bytes(dir / "home" / "sub" / "more.txt", "also precious");
  }
  world.barrier();
  expect_throw_everywhere<InvalidArgument>(
      [&] { save_sharded_hf_checkpoint(world, config, mine_a.params(), dir / "home"); }, "user's directory",
      "refusing to replace " + (dir / "home").string() + ": it holds \"notes.txt\", \"sub\"");

  // Ours, saved twice (replaced), then with a user's file in it: refused, the file survives.
  save_sharded_hf_checkpoint(world, config, mine_a.params(), dir / "ck");
  save_sharded_hf_checkpoint(world, config, mine_b.params(), dir / "ck");
  {
    TpWeights loaded = TpWeights::from_full(a, world.size(), world.rank());
    load_shards_from_hf(dir / "ck", loaded.params());
    expect_pieces_equal(loaded.params(), b, "replaced");
  }
  if (world.rank() == 0) testing::write_bytes(dir / "ck" / "notes.txt", "mine");
  world.barrier();
  expect_throw_everywhere<InvalidArgument>(
      [&] { save_sharded_hf_checkpoint(world, config, mine_a.params(), dir / "ck"); }, "user's file in ours",
      "\"notes.txt\", which the engine did not write");
  if (world.rank() == 0) {
    EXPECT_EQ(read_bytes(dir / "ck" / "notes.txt"), "mine");
    fs::remove(dir / "ck" / "notes.txt");
    // A crash left a temporary of ours; someone else's directory has a similar name.
    fs::create_directory(dir / ".ck.tmp.Crash1");
    testing::write_bytes(dir / ".ck.tmp.Crash1" / "tsp_checkpoint.txt", "tsp-checkpoint-v1\nmodel.safetensors\n");
    testing::write_bytes(dir / ".ck.tmp.Crash1" / ".model.safetensors.tmp.AbCdEf", "partial");
    fs::create_directory(dir / ".ck.tmp.Other1");
    testing::write_bytes(dir / ".ck.tmp.Other1" / "notes.txt", "precious");
  }
  world.barrier();
  save_sharded_hf_checkpoint(world, config, mine_a.params(), dir / "ck");
  TpWeights back = TpWeights::from_full(b, world.size(), world.rank());
  load_shards_from_hf(dir / "ck", back.params());
  expect_pieces_equal(back.params(), a, "resaved");
  if (world.rank() == 0) {
    EXPECT_EQ(read_bytes(dir / "home" / "notes.txt"), "precious");
    EXPECT_EQ(read_bytes(dir / "home" / "sub" / "more.txt"), "also precious");
    EXPECT_EQ(read_bytes(dir / ".ck.tmp.Other1" / "notes.txt"), "precious");
    EXPECT_EQ(sorted_entries(dir.path()), (std::vector<std::string>{".ck.tmp.Other1", "ck", "home"}));
  }
  world.barrier();
}

// A write that fails midway on rank 0 (file-size limit) while the other ranks are still sending:
// every rank throws, nobody hangs, and the previous checkpoint is intact.
TEST(ShardedCheckpoint, FailedStreamKeepsTheOldCheckpoint) {
  comm::Communicator world = comm::Communicator::world();
  SharedScratch dir(world);
  const model::ModelConfig config = small_config(DType::f32);
  const TpWeights old_w =
      TpWeights::from_full(model::ModelWeights::initialize(config, DType::f32, 1), world.size(), world.rank());
  const TpWeights new_w =
      TpWeights::from_full(model::ModelWeights::initialize(config, DType::f32, 2), world.size(), world.rank());
  save_sharded_hf_checkpoint(world, config, old_w.params(), dir / "ckpt");
  const std::string old_bytes = world.rank() == 0 ? read_bytes(dir / "ckpt" / "model.safetensors") : "";
  std::optional<testing::FileSizeLimit> limit;
  Tensor ok = Tensor::zeros(Shape{1}, DType::i64, MemCategory::workspace);
  if (world.rank() == 0) {
    limit.emplace(32 * 1024);  // the weights are about 85 KB
    ok.data<int64_t>()[0] = limit->ok() ? 1 : 0;
  }
  comm::broadcast(world, ok, 0);
  if (ok.data<int64_t>()[0] == 0) GTEST_SKIP() << "cannot lower RLIMIT_FSIZE here";
  expect_throw_everywhere<IoError>([&] { save_sharded_hf_checkpoint(world, config, new_w.params(), dir / "ckpt"); },
                                   "file-size limit", "failed after");
  limit.reset();
  if (world.rank() == 0) {
    EXPECT_EQ(read_bytes(dir / "ckpt" / "model.safetensors"), old_bytes);
    EXPECT_EQ(sorted_entries(dir.path()), std::vector<std::string>{"ckpt"});
  }
}

TEST(ShardedCheckpoint, InconsistentShardsThrowOnEveryRankBeforeAnythingMoves) {
  comm::Communicator world = comm::Communicator::world();
  SharedScratch dir(world);
  const model::ModelConfig config = small_config(DType::f32);
  const TpWeights w = TpWeights::from_full(model::ModelWeights::initialize(config, DType::f32, 1), world.size(),
                                             world.rank());
  std::vector<ParamShard> bad = w.params();
  if (world.rank() == world.size() - 1) bad[2].offset = 0;  // q_proj: overlaps rank 0's rows (D > 1) ...
  if (world.size() == 1) bad[2].offset = 1;                  // ... or leaves a gap (D = 1)
  expect_throw_everywhere<InvalidArgument>([&] { save_sharded_hf_checkpoint(world, config, bad, dir / "c"); },
                                           "overlapping rows");
  if (world.size() > 1) {
    std::vector<ParamShard> fewer = w.params();
    if (world.rank() == world.size() - 1) fewer.pop_back();
    expect_throw_everywhere<InvalidArgument>(
        [&] { save_sharded_safetensors(world, dir / "f.safetensors", ShardedFile{fewer, {}}); }, "fewer tensors");
  }
  std::vector<ParamShard> wrong_shape = w.params();
  if (world.rank() == world.size() - 1) {
    wrong_shape[1].local = Tensor::zeros(Shape{3}, DType::f32, MemCategory::weights);
  }
  expect_throw_everywhere<InvalidArgument>(
      [&] { save_sharded_hf_checkpoint(world, config, wrong_shape, dir / "c"); }, "local of another shape");
  if (world.rank() == 0) {
    EXPECT_TRUE(sorted_entries(dir.path()).empty());
  }
  // An exception in a visitor on rank 0 reaches every rank as the same type.
  expect_throw_everywhere<IoError>(
      [&] {
        for_each_assembled_tensor(world, w.params(), [](size_t i, const Tensor&) {
          if (i == 3) throw IoError("visitor failed");
        });
      },
      "visitor", "visitor failed");
  world.barrier();  // the group is still usable
}

// ---------------------------------------------------------------------------------------------
// Training state (train/sharded_train_state.h).

struct StateFixture {
  model::ModelConfig config;
  model::ModelWeights ref_w;
  std::vector<ParamShard> ref_shards;  // ref_w's whole tensors: the one-process optimizer's view
  ShardedAdamW ref;
  TpWeights mine;
  ShardedAdamW opt;
  train::TrainStateInfo info;

  StateFixture(comm::Communicator& world, DType dtype)
      : config(small_config(dtype)),
        ref_w(model::ModelWeights::initialize(config, dtype, 3)),
        ref_shards(whole_shards(ref_w)),
        ref(ref_shards, {}),
        mine(TpWeights::from_full(ref_w, world.size(), world.rank())),
        opt(mine.params(), {}) {
    for (int step = 0; step < 2; ++step) {
      const model::ModelWeights g = model::ModelWeights::initialize(config, DType::f32, 50 + step);
      const std::vector<ParamShard> w = mine.params();
      std::vector<ParamShard> gs = zeros_like_shards(w, DType::f32, MemCategory::grads);
      for (const ParamShard& p : gs) copy_shard_from_full(p, g.get(p.name));
      opt.step(w, gs, 1e-2);
      ref.step(ref_shards, whole_shards(g), 1e-2);
    }
    info.step = 2;
    info.tokens_seen = 256;
    info.model_dtype = dtype;
    info.loader = {.seed = 7, .epoch = 1, .position = 3, .batches = 9, .num_tokens = 1000, .seq_len = 16,
                   .batch_size = 4, .order = data::WindowOrder::shuffled};
    info.run.steps = 10;
    info.run.dtype = std::string(dtype_name(dtype));
  }
};

// `want`: the optimizer of whole tensors (StateFixture::ref).
void expect_state_equals(const ShardedAdamW& got, const StateFixture& f, const std::string& what) {
  const ShardedAdamW& want = f.ref;
  EXPECT_EQ(got.steps(), want.steps()) << what;
  expect_pieces_equal(got.exp_avg(), testing::whole_of(f.config, want.exp_avg()), what + " exp_avg");
  expect_pieces_equal(got.exp_avg_sq(), testing::whole_of(f.config, want.exp_avg_sq()), what + " exp_avg_sq");
  ASSERT_EQ(got.has_masters(), want.has_masters()) << what;
  if (want.has_masters())
    expect_pieces_equal(got.masters(), testing::whole_of(f.config, want.masters()), what + " masters");
}

// The state of the whole-tensor optimizer as one process writes it (the self transport: a group
// of one holding every tensor whole).
std::string one_process_state_bytes(const StateFixture& f, const fs::path& path) {
  comm::Communicator self = comm::self_communicator();
  train::save_sharded_train_state(self, path, f.info, f.ref);
  return read_bytes(path);
}

TEST(ShardedTrainState, BytesEqualOneProcessAndLoadAtAnyDegree) {
  comm::Communicator world = comm::Communicator::world();
  for (DType dtype : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dtype));
    SharedScratch dir(world);
    StateFixture f(world, dtype);
    const fs::path sharded = dir / "sharded.safetensors";
    train::save_sharded_train_state(world, sharded, f.info, f.opt);
    if (world.rank() == 0) {
      const std::string single = one_process_state_bytes(f, dir / "single.safetensors");
      EXPECT_TRUE(read_bytes(sharded) == single) << "sizes " << read_bytes(sharded).size() << " vs " << single.size();
      // The sharded file resumes a one-process run (whole tensors).
      model::ModelWeights w2(f.config, dtype, MemCategory::weights);
      ShardedAdamW opt2(whole_shards(w2), {});
      EXPECT_EQ(train::load_sharded_train_state(sharded, opt2).loader, f.info.loader);
      expect_state_equals(opt2, f, "one process");
    }
    world.barrier();
    for (const char* file : {"sharded.safetensors", "single.safetensors"}) {
      for (int D : {1, 2, 4}) {
        for (int r = 0; r < D; ++r) {
          const std::string what = std::string(file) + " D=" + std::to_string(D) + " r=" + std::to_string(r);
          TpWeights w(f.config, dtype, D, r, MemCategory::weights);
          ShardedAdamW opt(w.params(), {});
          const train::TrainStateInfo got = train::load_sharded_train_state(dir / file, opt);
          EXPECT_EQ(got.step, 2) << what;
          EXPECT_EQ(got.tokens_seen, 256) << what;
          EXPECT_EQ(got.loader, f.info.loader) << what;
          EXPECT_EQ(got.run, f.info.run) << what;
          expect_state_equals(opt, f, what);
          opt.sync_weights_from_masters(w.params());
          if (dtype == DType::bf16) expect_pieces_equal(w.params(), f.ref_w, what + " weights from masters");
        }
      }
    }
  }
}

TEST(ShardedTrainState, CheckpointWithStateEqualsSingleRankDirectory) {
  comm::Communicator world = comm::Communicator::world();
  SharedScratch dir(world);
  StateFixture f(world, DType::bf16);
  const std::map<std::string, ShardedFile> files = {
      {train::kTrainStateFileName, train::sharded_train_state_file(world, f.info, f.opt)}};
  save_sharded_hf_checkpoint(world, f.config, f.mine.params(), dir / "sharded", {}, files);
  if (world.rank() == 0) {
    const std::string state = one_process_state_bytes(f, dir / "state.safetensors");
    model::save_hf_checkpoint(dir / "single", f.config, named(f.ref_w),
                              {.extra_files = {{train::kTrainStateFileName, state}}});
    EXPECT_EQ(sorted_entries(dir / "sharded"), sorted_entries(dir / "single"));
    for (const std::string& name : sorted_entries(dir / "single")) {
      EXPECT_TRUE(read_bytes(dir / "sharded" / name) == read_bytes(dir / "single" / name)) << name;
    }
  }
}

TEST(ShardedTrainState, CorruptMissingOrForeignStatesThrowOnEveryRank) {
  comm::Communicator world = comm::Communicator::world();
  SharedScratch dir(world);
  StateFixture f(world, DType::f32);
  const fs::path path = dir / "state.safetensors";
  expect_throw_everywhere<IoError>([&] { train::load_sharded_train_state(path, f.opt); }, "missing file",
                                   "training state");
  train::save_sharded_train_state(world, path, f.info, f.opt);
  if (world.rank() == 0) {  // flip one data byte near the end (inside some rank's piece)
    std::string bytes = read_bytes(path);
    bytes[bytes.size() - 5] ^= 0x10;
    testing::write_bytes(dir / "flipped.safetensors", bytes);
    testing::write_bytes(dir / "truncated.safetensors", std::string_view(bytes).substr(0, bytes.size() - 5));
  }
  world.barrier();
  expect_throw_everywhere<IoError>([&] { train::load_sharded_train_state(dir / "flipped.safetensors", f.opt); },
                                   "flipped byte", "checksum mismatch");
  expect_throw_everywhere<IoError>([&] { train::load_sharded_train_state(dir / "truncated.safetensors", f.opt); },
                                   "truncated", "corrupt or incompatible training state");
  expect_state_equals(f.opt, f, "untouched after the failed loads");
  // A bf16 run's optimizer refuses an f32 state.
  TpWeights w(f.config, DType::bf16, world.size(), world.rank(), MemCategory::weights);
  ShardedAdamW bf(w.params(), {});
  expect_throw_everywhere<IoError>([&] { train::load_sharded_train_state(path, bf); }, "other dtype",
                                   "belongs to a f32 model");
  // An unwritable destination on rank 0 reaches every rank.
  expect_throw_everywhere<IoError>(
      [&] { train::save_sharded_train_state(world, dir / "absent" / "state.safetensors", f.info, f.opt); },
      "unwritable");
}

}  // namespace
}  // namespace tsp::parallel
