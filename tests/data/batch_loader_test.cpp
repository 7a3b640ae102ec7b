// Tests of the train/validation split and the batch loader: determinism from the seed, exact
// resume from a saved state, epoch coverage, data-parallel sharding, argument checks.
#include "tsp/data/batch_loader.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <set>

#include "tsp/core/error.h"

namespace tsp::data {
namespace {

std::vector<int32_t> iota_tokens(int32_t n) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), 0);
  return t;
}

std::vector<int32_t> flat(const Tensor& t) {
  std::vector<int32_t> out;
  for (int64_t i = 0; i < t.numel(); ++i) out.push_back(static_cast<int32_t>(t.item_f32(i)));
  return out;
}

std::vector<int32_t> raw(const Batch& b) {
  const int32_t* p = b.tokens.data<int32_t>();
  return std::vector<int32_t>(p, p + b.tokens.numel());
}

TEST(Loader, SplitIsDisjointAndCoversTheStream) {
  const std::vector<int32_t> tokens = iota_tokens(10000);
  const TokenSplit s = split_train_val(tokens, {.val_fraction = 0.1, .block_tokens = 1024});
  EXPECT_EQ(s.train.size() + s.val.size(), tokens.size());
  EXPECT_NEAR(static_cast<double>(s.val.size()) / tokens.size(), 0.1, 0.01);
  std::set<int32_t> train(s.train.begin(), s.train.end()), val(s.val.begin(), s.val.end());
  EXPECT_EQ(train.size(), s.train.size());
  for (int32_t v : s.val) EXPECT_EQ(train.count(v), 0u) << v;
  EXPECT_TRUE(std::is_sorted(s.train.begin(), s.train.end()));  // stream order kept
  EXPECT_TRUE(std::is_sorted(s.val.begin(), s.val.end()));
  EXPECT_EQ(s.val.front(), 1024 - 102);  // the tail of the first block
  EXPECT_GT(s.val.back(), 9000);         // spread over the whole stream
  // One block: a plain tail split; zero fraction: no validation.
  const TokenSplit tail = split_train_val(iota_tokens(100), {.val_fraction = 0.25});
  EXPECT_EQ(tail.val.front(), 75);
  EXPECT_TRUE(split_train_val(iota_tokens(100), {.val_fraction = 0.0}).val.empty());
  EXPECT_THROW(split_train_val(tokens, {.val_fraction = 1.0}), InvalidArgument);
  EXPECT_THROW(split_train_val(tokens, {.val_fraction = 0.1, .block_tokens = 0}), InvalidArgument);
  // A block far larger than the stream is one block (no huge reservation).
  const TokenSplit huge = split_train_val(iota_tokens(100), {.val_fraction = 0.25, .block_tokens = INT64_MAX});
  EXPECT_EQ(huge.train.size(), 75u);
  EXPECT_EQ(huge.val.front(), 75);
}

TEST(Loader, WindowsHoldInputsAndNextTokenTargets) {
  BatchLoader loader(iota_tokens(1000), {.batch_size = 4, .seq_len = 16, .seed = 1});
  const Batch b = loader.next();
  EXPECT_EQ(b.tokens.shape(), (Shape{4, 17}));
  EXPECT_EQ(b.tokens.dtype(), DType::i32);
  EXPECT_EQ(b.inputs().shape(), (Shape{4, 16}));
  EXPECT_EQ(b.targets().shape(), (Shape{4, 16}));
  const std::vector<int32_t> in = flat(b.inputs()), tg = flat(b.targets());
  for (int r = 0; r < 4; ++r)
    for (int j = 0; j < 16; ++j) {
      EXPECT_EQ(tg[r * 16 + j], in[r * 16 + j] + 1);  // consecutive stream tokens
      if (j > 0) {
        EXPECT_EQ(in[r * 16 + j], in[r * 16 + j - 1] + 1);
      }
    }
}

TEST(Loader, DeterministicFromSeed) {
  const auto tokens = iota_tokens(5000);
  BatchLoader a(tokens, {.batch_size = 3, .seq_len = 32, .seed = 42});
  BatchLoader b(tokens, {.batch_size = 3, .seq_len = 32, .seed = 42});
  BatchLoader c(tokens, {.batch_size = 3, .seq_len = 32, .seed = 43});
  bool differs = false;
  for (int i = 0; i < 20; ++i) {
    const auto ra = raw(a.next()), rb = raw(b.next()), rc = raw(c.next());
    EXPECT_EQ(ra, rb);
    differs |= ra != rc;
  }
  EXPECT_TRUE(differs);
}

TEST(Loader, ResumeIsExact) {
  const auto tokens = iota_tokens(3000);
  const BatchLoaderOptions opt{.batch_size = 5, .seq_len = 24, .seed = 9};
  BatchLoader loader(tokens, opt);
  for (int i = 0; i < 37; ++i) loader.next();  // N = 37 batches: crosses epochs (124 windows each)
  const LoaderState saved = loader.state();
  EXPECT_GE(saved.epoch, 1);
  std::vector<std::vector<int32_t>> first;
  for (int i = 0; i < 30; ++i) first.push_back(raw(loader.next()));  // M = 30

  const LoaderState parsed = LoaderState::parse(saved.to_string());
  EXPECT_EQ(parsed, saved);
  BatchLoader resumed(tokens, opt);
  resumed.restore(parsed);
  EXPECT_EQ(resumed.state(), saved);
  for (int i = 0; i < 30; ++i) EXPECT_EQ(raw(resumed.next()), first[static_cast<size_t>(i)]) << i;
  EXPECT_EQ(resumed.state(), loader.state());

  BatchLoader other_seed(tokens, {.batch_size = 5, .seq_len = 24, .seed = 10});
  EXPECT_THROW(other_seed.restore(saved), InvalidArgument);
  BatchLoader other_data(iota_tokens(2999), opt);
  EXPECT_THROW(other_data.restore(saved), InvalidArgument);
  EXPECT_THROW(LoaderState::parse("tsp-loader-v1 seed=1 epoch=x"), InvalidArgument);
  EXPECT_THROW(LoaderState::parse("something else"), InvalidArgument);
  EXPECT_THROW(LoaderState::parse("tsp-loader-v1 seed=1"), InvalidArgument);
}

TEST(Loader, StateTextAndFingerprint) {
  const auto tokens = iota_tokens(3000);
  const BatchLoaderOptions opt{.batch_size = 5, .seq_len = 24, .seed = 9};
  BatchLoader loader(tokens, opt);
  for (int i = 0; i < 37; ++i) loader.next();
  const LoaderState saved = loader.state();
  EXPECT_EQ(saved.batch_size, 5);
  EXPECT_EQ(saved.order, WindowOrder::shuffled);
  EXPECT_EQ(saved.to_string(), "tsp-loader-v3 seed=9 epoch=1 position=61 batches=37 tokens=3000 seq_len=24 "
                               "batch_size=5 order=shuffled");
  LoaderState seq = saved;
  seq.order = WindowOrder::sequential;
  EXPECT_EQ(LoaderState::parse(seq.to_string()), seq);

  // Another batch size or window order is another configuration.
  BatchLoader other_batch(tokens, {.batch_size = 4, .seq_len = 24, .seed = 9});
  EXPECT_THROW(other_batch.restore(saved), InvalidArgument);
  BatchLoader other_order(tokens, {.batch_size = 5, .seq_len = 24, .seed = 9, .order = WindowOrder::sequential});
  EXPECT_THROW(other_order.restore(saved), InvalidArgument);

  // Malformed, repeated, unknown and old-version texts.
  const std::string good = saved.to_string();
  EXPECT_THROW(LoaderState::parse(good + " seed=9"), InvalidArgument);
  EXPECT_THROW(LoaderState::parse(good + " colour=red"), InvalidArgument);
  EXPECT_THROW(LoaderState::parse("tsp-loader-v3 seed=9 epoch=1 position=61 batches=37 tokens=3000 seq_len=24 "
                                  "batch_size=5 order=random"),
               InvalidArgument);
  EXPECT_THROW(LoaderState::parse("tsp-loader-v3 seed=9 epoch=1 position=61 batches=37 tokens=3000 seq_len=24 "
                                  "batch_size=5"),
               InvalidArgument);
  try {
    LoaderState::parse("tsp-loader-v1 seed=9 epoch=1 position=61 batches=37 tokens=3000 seq_len=24");
    ADD_FAILURE() << "a version-1 state was accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("version 1"), std::string::npos) << e.what();
  }
}

// restore() is all-or-nothing: every rejected state leaves the loader exactly where it was.
TEST(Loader, FailedRestoreLeavesTheLoaderUnchanged) {
  const auto tokens = iota_tokens(3000);
  const BatchLoaderOptions opt{.batch_size = 5, .seq_len = 24, .seed = 9};
  BatchLoader reference(tokens, opt);
  BatchLoader loader(tokens, opt);
  for (int i = 0; i < 30; ++i) {  // both in epoch 1, mid-permutation
    reference.next();
    loader.next();
  }
  const LoaderState before = loader.state();
  ASSERT_EQ(before.epoch, 1);

  std::vector<LoaderState> bad;
  LoaderState s = before;
  s.epoch = 7;  // a valid epoch (its permutation gets built) ...
  s.position = 100000;  // ... but a position beyond its windows
  bad.push_back(s);
  s = before;
  s.epoch = 3;
  s.position = -1;
  bad.push_back(s);
  s = before;
  s.epoch = -2;
  bad.push_back(s);
  s = before;
  s.batches = -1;
  bad.push_back(s);
  s = before;
  s.seed = 10;
  bad.push_back(s);
  s = before;
  s.batch_size = 6;
  bad.push_back(s);
  for (const LoaderState& b : bad) {
    SCOPED_TRACE(b.to_string());
    EXPECT_THROW(loader.restore(b), InvalidArgument);
    EXPECT_EQ(loader.state(), before);
    EXPECT_EQ(loader.windows_in_epoch(), reference.windows_in_epoch());
  }
  // And it goes on drawing exactly the batches an untouched loader draws.
  for (int i = 0; i < 40; ++i) EXPECT_EQ(raw(loader.next()), raw(reference.next())) << i;
  EXPECT_EQ(loader.state(), reference.state());
}

TEST(Loader, EveryWindowOncePerEpoch) {
  const int32_t n = 1001, s = 10;
  for (WindowOrder order : {WindowOrder::shuffled, WindowOrder::sequential}) {
    BatchLoader loader(iota_tokens(n), {.batch_size = 1, .seq_len = s, .seed = 3, .order = order});
    const int64_t w = loader.windows_in_epoch();
    std::vector<int32_t> starts;
    for (int64_t i = 0; i < w; ++i) starts.push_back(raw(loader.next())[0]);
    EXPECT_EQ(loader.state().epoch, 0);
    const int32_t phase = *std::min_element(starts.begin(), starts.end());
    EXPECT_LT(phase, s);
    EXPECT_EQ(w, (n - s - 1 - phase) / s + 1);
    std::vector<int32_t> sorted = starts;
    std::sort(sorted.begin(), sorted.end());
    for (int64_t k = 0; k < w; ++k) EXPECT_EQ(sorted[static_cast<size_t>(k)], phase + k * s);
    if (order == WindowOrder::sequential) {
      EXPECT_EQ(starts, sorted);
    } else {
      EXPECT_NE(starts, sorted);
    }
    loader.next();
    EXPECT_EQ(loader.state().epoch, 1);
  }
}

TEST(Loader, DataParallelShardsAreContiguousRowBlocks) {
  const auto tokens = iota_tokens(4000);
  const BatchLoaderOptions opt{.batch_size = 8, .seq_len = 12, .seed = 5};
  BatchLoader global(tokens, opt);
  std::vector<BatchLoader> ranks;
  for (int r = 0; r < 4; ++r) ranks.emplace_back(tokens, opt);
  for (int step = 0; step < 5; ++step) {
    const std::vector<int32_t> whole = raw(global.next());
    std::vector<int32_t> joined;
    for (int r = 0; r < 4; ++r) {
      const Batch part = ranks[static_cast<size_t>(r)].next(DataShard{.rank = r, .world = 4});
      EXPECT_EQ(part.rows(), 2);
      const auto v = raw(part);
      joined.insert(joined.end(), v.begin(), v.end());
      EXPECT_EQ(ranks[static_cast<size_t>(r)].state(), global.state());
    }
    EXPECT_EQ(joined, whole);
  }
  EXPECT_THROW(global.next(DataShard{.rank = 0, .world = 3}), InvalidArgument);
  EXPECT_THROW(global.next(DataShard{.rank = 4, .world = 4}), InvalidArgument);
}

TEST(Loader, ArgumentChecks) {
  EXPECT_THROW(BatchLoader(iota_tokens(16), {.batch_size = 1, .seq_len = 16}), InvalidArgument);
  EXPECT_NO_THROW(BatchLoader(iota_tokens(17), {.batch_size = 1, .seq_len = 16}));
  EXPECT_THROW(BatchLoader(iota_tokens(100), {.batch_size = 0, .seq_len = 16}), InvalidArgument);
  EXPECT_THROW(BatchLoader(iota_tokens(100), {.batch_size = 2, .seq_len = 0}), InvalidArgument);
  // A stream of exactly one window yields it forever.
  BatchLoader one(iota_tokens(17), {.batch_size = 3, .seq_len = 16, .seed = 1});
  EXPECT_EQ(one.windows_in_epoch(), 1);
  const auto b = raw(one.next());
  EXPECT_EQ(b[0], 0);
  EXPECT_EQ(b[17], 0);
}

}  // namespace
}  // namespace tsp::data
