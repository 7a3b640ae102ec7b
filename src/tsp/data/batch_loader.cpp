// Train/validation split and the seeded, resumable window sampler.
// Epoch e draws from Rng(seed, stream = e): a phase, then a Fisher-Yates permutation of windows.
#include "tsp/data/batch_loader.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <cstring>
#include <numeric>
#include <sstream>

#include "tsp/core/check.h"
#include "tsp/core/random.h"

namespace tsp::data {

TokenSplit split_train_val(std::span<const int32_t> tokens, const SplitOptions& options) {
  TSP_CHECK(options.val_fraction >= 0.0 && options.val_fraction < 1.0, "val_fraction must be in [0, 1), got ",
            options.val_fraction);
  TSP_CHECK(options.block_tokens > 0, "block_tokens must be positive, got ", options.block_tokens);
  TokenSplit split;
  const size_t n = tokens.size(), block = static_cast<size_t>(options.block_tokens);
  const auto n_val_total = static_cast<size_t>(std::llround(options.val_fraction * static_cast<double>(n)));
  // + one block of slack for rounding per block; min(): block_tokens may be far larger than n.
  const size_t slack = std::min(block, n);
  split.train.reserve(n - std::min(n, n_val_total) + slack);
  split.val.reserve(std::min(n, n_val_total) + slack);
  for (size_t begin = 0; begin < n; begin += block) {
    const size_t len = std::min(block, n - begin);
    const auto n_val = static_cast<size_t>(std::llround(options.val_fraction * static_cast<double>(len)));
    const size_t cut = begin + len - std::min(n_val, len);
    split.train.insert(split.train.end(), tokens.begin() + static_cast<ptrdiff_t>(begin),
                       tokens.begin() + static_cast<ptrdiff_t>(cut));
    split.val.insert(split.val.end(), tokens.begin() + static_cast<ptrdiff_t>(cut),
                     tokens.begin() + static_cast<ptrdiff_t>(begin + len));
  }
  return split;
}

// ---------------------------------------------------------------------------------------------

namespace {

constexpr std::string_view kLoaderStateTag = "tsp-loader-v2";

std::string_view order_name(WindowOrder order) {
  return order == WindowOrder::sequential ? "sequential" : "shuffled";
}

}  // namespace

std::string LoaderState::to_string() const {
  std::ostringstream os;
  os << kLoaderStateTag << " seed=" << seed << " epoch=" << epoch << " position=" << position
     << " batches=" << batches << " tokens=" << num_tokens << " seq_len=" << seq_len
     << " batch_size=" << batch_size << " order=" << order_name(order);
  return os.str();
}

LoaderState LoaderState::parse(std::string_view text) {
  std::istringstream in{std::string(text)};
  std::string tag;
  in >> tag;
  TSP_CHECK(tag != "tsp-loader-v1", "loader state \"", text, "\" is version 1, which lacks batch_size "
            "and order; this build reads ", kLoaderStateTag);
  TSP_CHECK(tag == kLoaderStateTag, "loader state must start with \"", kLoaderStateTag, "\", got \"", text,
            "\"");
  LoaderState s;
  static constexpr const char* kKeys[] = {"seed",    "epoch",   "position",   "batches",
                                          "tokens",  "seq_len", "batch_size", "order"};
  constexpr size_t kNumKeys = std::size(kKeys);
  bool seen[kNumKeys] = {};
  int64_t* const fields[kNumKeys] = {nullptr,       &s.epoch,   &s.position,   &s.batches,
                                     &s.num_tokens, &s.seq_len, &s.batch_size, nullptr};
  std::string item;
  while (in >> item) {
    const size_t eq = item.find('=');
    TSP_CHECK(eq != std::string::npos && eq + 1 < item.size(), "malformed item \"", item,
              "\" in loader state \"", text, "\"");
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    const auto* k = std::find(std::begin(kKeys), std::end(kKeys), key);
    TSP_CHECK(k != std::end(kKeys), "unknown key \"", key, "\" in loader state \"", text, "\"");
    const size_t which = static_cast<size_t>(k - std::begin(kKeys));
    TSP_CHECK(!seen[which], "key \"", key, "\" appears twice in loader state \"", text, "\"");
    seen[which] = true;
    if (key == "order") {
      TSP_CHECK(value == "shuffled" || value == "sequential", "order \"", value, "\" in loader state \"",
                text, "\" must be shuffled or sequential");
      s.order = value == "sequential" ? WindowOrder::sequential : WindowOrder::shuffled;
      continue;
    }
    size_t used = 0;
    uint64_t u = 0;
    try {
      u = std::stoull(value, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    TSP_CHECK(used == value.size() && value[0] != '-', "value \"", value, "\" of \"", key,
              "\" in loader state \"", text, "\" is not a non-negative integer");
    TSP_CHECK(which == 0 || u <= static_cast<uint64_t>(INT64_MAX), "value of \"", key, "\" too large in \"",
              text, "\"");
    if (which == 0) {
      s.seed = u;
    } else {
      *fields[which] = static_cast<int64_t>(u);
    }
  }
  for (bool b : seen) TSP_CHECK(b, "loader state \"", text, "\" lacks a field (needs seed, epoch, position, "
                                "batches, tokens, seq_len, batch_size, order)");
  return s;
}

// ---------------------------------------------------------------------------------------------

BatchLoader::BatchLoader(std::vector<int32_t> tokens, const BatchLoaderOptions& options)
    : tokens_(std::move(tokens)), options_(options) {
  TSP_CHECK(options_.batch_size > 0, "batch_size must be positive, got ", options_.batch_size);
  TSP_CHECK(options_.seq_len > 0, "seq_len must be positive, got ", options_.seq_len);
  TSP_CHECK(num_tokens() >= options_.seq_len + 1, "token stream of ", num_tokens(),
            " tokens is shorter than one window of seq_len + 1 = ", options_.seq_len + 1);
  start_epoch(0);
}

BatchLoader::EpochPlan BatchLoader::plan_epoch(int64_t epoch) const {
  const int64_t s = options_.seq_len;
  const int64_t max_start = num_tokens() - s - 1;
  EpochPlan plan;
  if (options_.order == WindowOrder::sequential) {
    plan.perm.resize(static_cast<size_t>(max_start / s + 1));
    std::iota(plan.perm.begin(), plan.perm.end(), int64_t{0});
    return plan;
  }
  Rng rng(options_.seed, static_cast<uint64_t>(epoch));
  plan.phase = static_cast<int64_t>(rng.below(static_cast<uint64_t>(std::min(s, max_start + 1))));
  plan.perm.resize(static_cast<size_t>((max_start - plan.phase) / s + 1));
  std::iota(plan.perm.begin(), plan.perm.end(), int64_t{0});
  for (size_t i = plan.perm.size(); i > 1; --i) std::swap(plan.perm[i - 1], plan.perm[rng.below(i)]);
  return plan;
}

void BatchLoader::start_epoch(int64_t epoch) {
  EpochPlan plan = plan_epoch(epoch);
  epoch_ = epoch;
  position_ = 0;
  phase_ = plan.phase;
  perm_ = std::move(plan.perm);
}

int64_t BatchLoader::next_window_start() {
  if (position_ == windows_in_epoch()) start_epoch(epoch_ + 1);
  return phase_ + perm_[static_cast<size_t>(position_++)] * options_.seq_len;
}

Batch BatchLoader::next(MemCategory category) { return next(DataShard{}, category); }

Batch BatchLoader::next(const DataShard& shard, MemCategory category) {
  const int64_t b = options_.batch_size, s = options_.seq_len;
  TSP_CHECK(shard.world > 0 && shard.rank >= 0 && shard.rank < shard.world, "data shard rank ", shard.rank,
            " of world ", shard.world, " is invalid");
  TSP_CHECK(b % shard.world == 0, "global batch_size ", b, " is not divisible by the data-parallel degree ",
            shard.world);
  const int64_t rows = b / shard.world, first = shard.rank * rows;
  Batch batch{Tensor::empty(Shape{rows, s + 1}, DType::i32, category)};
  int32_t* out = batch.tokens.data<int32_t>();
  for (int64_t row = 0; row < b; ++row) {
    const int64_t start = next_window_start();
    if (row >= first && row < first + rows)
      std::memcpy(out + (row - first) * (s + 1), tokens_.data() + start, static_cast<size_t>(s + 1) * 4);
  }
  ++batches_;
  return batch;
}

LoaderState BatchLoader::state() const {
  LoaderState st;
  st.seed = options_.seed;
  st.epoch = epoch_;
  st.position = position_;
  st.batches = batches_;
  st.num_tokens = num_tokens();
  st.seq_len = options_.seq_len;
  st.batch_size = options_.batch_size;
  st.order = options_.order;
  return st;
}

void BatchLoader::restore(const LoaderState& st) {
  // Validate everything (building the epoch's permutation aside) before changing any member.
  TSP_CHECK(st.seed == options_.seed && st.num_tokens == num_tokens() && st.seq_len == options_.seq_len &&
                st.batch_size == options_.batch_size && st.order == options_.order,
            "loader state ", st.to_string(), " does not belong to this loader (seed=", options_.seed,
            " tokens=", num_tokens(), " seq_len=", options_.seq_len, " batch_size=", options_.batch_size,
            " order=", order_name(options_.order), ")");
  TSP_CHECK(st.epoch >= 0 && st.batches >= 0, "loader state ", st.to_string(), " has negative counters");
  EpochPlan plan = plan_epoch(st.epoch);
  const int64_t windows = static_cast<int64_t>(plan.perm.size());
  TSP_CHECK(st.position >= 0 && st.position <= windows, "loader state ", st.to_string(), ": position outside the ",
            windows, " windows of epoch ", st.epoch);
  // Commit: nothing below throws.
  epoch_ = st.epoch;
  position_ = st.position;
  batches_ = st.batches;
  phase_ = plan.phase;
  perm_ = std::move(plan.perm);
}

}  // namespace tsp::data
