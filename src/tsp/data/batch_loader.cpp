// Train/validation split and the seeded, resumable window sampler.
// Epoch e draws from Rng(seed, stream = e): a phase, then the keys of the window permutation
// (window_permutation.h: computed per index, O(1) memory however large the data).
#include "tsp/data/batch_loader.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <cstring>
#include <numeric>
#include <sstream>

#include "tsp/core/check.h"
#include "tsp/core/random.h"
#include "tsp/data/token_source.h"

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

constexpr std::string_view kLoaderStateTag = "tsp-loader-v3";

std::string_view order_name(WindowOrder order) {
  return order == WindowOrder::sequential ? "sequential" : "shuffled";
}

}  // namespace

std::string LoaderState::to_string() const {
  std::ostringstream os;
  os << kLoaderStateTag << " seed=" << seed << " epoch=" << epoch << " position=" << position
     << " batches=" << batches << " tokens=" << num_tokens << " seq_len=" << seq_len
     << " batch_size=" << batch_size << " order=" << order_name(order);
  for (size_t i = 0; i < parts.size(); ++i)
    os << (i == 0 ? " parts=" : ",") << parts[i].num_tokens << ':' << parts[i].epoch << ':' << parts[i].position;
  return os.str();
}

LoaderState LoaderState::parse(std::string_view text) {
  std::istringstream in{std::string(text)};
  std::string tag;
  in >> tag;
  TSP_CHECK(tag != "tsp-loader-v1", "loader state \"", text, "\" is version 1, which lacks batch_size "
            "and order; this build reads ", kLoaderStateTag);
  TSP_CHECK(tag != "tsp-loader-v2", "loader state \"", text, "\" is version 2, whose epochs visited the "
            "windows in a stored (Fisher-Yates) order; this build's order is computed per window "
            "(window_permutation.h) and reads ", kLoaderStateTag, ": resume that run with the tsp that wrote it");
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
  bool seen_parts = false;
  while (in >> item) {
    const size_t eq = item.find('=');
    TSP_CHECK(eq != std::string::npos && eq + 1 < item.size(), "malformed item \"", item,
              "\" in loader state \"", text, "\"");
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    if (key == "parts") {  // optional: a blend's parts
      TSP_CHECK(!seen_parts, "key \"parts\" appears twice in loader state \"", text, "\"");
      seen_parts = true;
      std::istringstream list(value);
      std::string part;
      while (std::getline(list, part, ',')) {
        Part pt;
        char c1 = 0, c2 = 0;
        std::istringstream one(part);
        const bool ok = static_cast<bool>(one >> pt.num_tokens >> c1 >> pt.epoch >> c2 >> pt.position) &&
                        c1 == ':' && c2 == ':' && one.peek() == EOF && pt.num_tokens >= 0 && pt.epoch >= 0 &&
                        pt.position >= 0 && part.find('-') == std::string::npos;
        TSP_CHECK(ok, "malformed part \"", part, "\" in loader state \"", text, "\" (tokens:epoch:position)");
        s.parts.push_back(pt);
      }
      TSP_CHECK(s.parts.size() >= 2, "loader state \"", text, "\": parts lists fewer than two parts");
      continue;
    }
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

namespace {

// Epoch streams of part p: e + p * 2^40 (part 0 draws as a single source); blend rows: 2^63 + t.
constexpr uint64_t kPartStreamStride = uint64_t{1} << 40;
constexpr uint64_t kBlendRowStream = uint64_t{1} << 63;

std::vector<BlendPart> one_part(std::shared_ptr<const TokenSource> source) {
  std::vector<BlendPart> parts(1);
  parts[0].source = std::move(source);
  return parts;
}

}  // namespace

BatchLoader::BatchLoader(std::vector<int32_t> tokens, const BatchLoaderOptions& options)
    : BatchLoader(std::make_shared<InMemoryTokens>(std::move(tokens), "token stream"), options) {}

BatchLoader::BatchLoader(std::shared_ptr<const TokenSource> source, const BatchLoaderOptions& options)
    : BatchLoader(one_part(std::move(source)), options) {}

BatchLoader::BatchLoader(std::vector<BlendPart> parts, const BatchLoaderOptions& options) : options_(options) {
  TSP_CHECK(options_.batch_size > 0, "batch_size must be positive, got ", options_.batch_size);
  TSP_CHECK(options_.seq_len > 0, "seq_len must be positive, got ", options_.seq_len);
  TSP_CHECK(!parts.empty(), "a batch loader needs at least one token source");
  double total_weight = 0;
  for (const BlendPart& p : parts) {
    TSP_CHECK(p.source != nullptr, "null token source");
    TSP_CHECK(std::isfinite(p.weight) && p.weight > 0, "blend weight ", p.weight, " of ", p.source->describe(),
              " must be positive and finite");
    TSP_CHECK(p.source->size() >= options_.seq_len + 1,
              parts.size() > 1 ? "blend part " + p.source->describe() + ": " : std::string(), "token stream of ",
              p.source->size(), " tokens is shorter than one window of seq_len + 1 = ", options_.seq_len + 1);
    total_weight += p.weight;
  }
  double acc = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    acc += parts[i].weight;
    PartCursor c;
    c.source = std::move(parts[i].source);
    c.cumulative = i + 1 == parts.size() ? 1.0 : acc / total_weight;
    parts_.push_back(std::move(c));
  }
  for (size_t i = 0; i < parts_.size(); ++i) start_epoch(i, 0);
}

int64_t BatchLoader::num_tokens() const {
  int64_t n = 0;
  for (const PartCursor& p : parts_) n += p.source->size();
  return n;
}

BatchLoader::EpochPlan BatchLoader::plan_epoch(size_t part, int64_t epoch) const {
  const int64_t s = options_.seq_len;
  const int64_t max_start = parts_[part].source->size() - s - 1;
  EpochPlan plan;
  if (options_.order == WindowOrder::sequential) {
    plan.order = WindowPermutation::identity(max_start / s + 1);
    return plan;
  }
  Rng rng(options_.seed, static_cast<uint64_t>(epoch) + part * kPartStreamStride);
  plan.phase = static_cast<int64_t>(rng.below(static_cast<uint64_t>(std::min(s, max_start + 1))));
  plan.order = WindowPermutation((max_start - plan.phase) / s + 1, rng);
  return plan;
}

void BatchLoader::start_epoch(size_t part, int64_t epoch) {
  EpochPlan plan = plan_epoch(part, epoch);
  PartCursor& c = parts_[part];
  c.epoch = epoch;
  c.position = 0;
  c.phase = plan.phase;
  c.order = plan.order;
}

int64_t BatchLoader::next_window_start(size_t part) {
  PartCursor& c = parts_[part];
  if (c.position == c.order.size()) start_epoch(part, c.epoch + 1);
  return c.phase + c.order(c.position++) * options_.seq_len;
}

std::vector<size_t> BatchLoader::parts_of_rows(int64_t batch_index) const {
  std::vector<size_t> which(static_cast<size_t>(options_.batch_size), 0);
  if (parts_.size() == 1) return which;
  Rng rng(options_.seed, kBlendRowStream + static_cast<uint64_t>(batch_index));
  for (size_t& w : which) {
    const double u = static_cast<double>(rng.next_u64() >> 11) * 0x1.0p-53;  // [0, 1), 53 bits
    while (w + 1 < parts_.size() && u >= parts_[w].cumulative) ++w;
  }
  return which;
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
  const std::vector<size_t> part_of = parts_of_rows(batches_);
  for (int64_t row = 0; row < b; ++row) {
    const size_t part = part_of[static_cast<size_t>(row)];
    const int64_t start = next_window_start(part);
    // Only this rank's rows are read: the other rows advance the state without touching the data.
    if (row >= first && row < first + rows) parts_[part].source->read(start, s + 1, out + (row - first) * (s + 1));
  }
  ++batches_;
  return batch;
}

LoaderState BatchLoader::state() const {
  LoaderState st;
  st.seed = options_.seed;
  st.epoch = parts_[0].epoch;
  st.position = parts_[0].position;
  st.batches = batches_;
  st.num_tokens = num_tokens();
  st.seq_len = options_.seq_len;
  st.batch_size = options_.batch_size;
  st.order = options_.order;
  if (parts_.size() > 1)
    for (const PartCursor& c : parts_) st.parts.push_back({c.source->size(), c.epoch, c.position});
  return st;
}

void BatchLoader::restore(const LoaderState& st) {
  // Validate everything (building the epochs' permutations aside) before changing any member.
  TSP_CHECK(st.seed == options_.seed && st.num_tokens == num_tokens() && st.seq_len == options_.seq_len &&
                st.batch_size == options_.batch_size && st.order == options_.order,
            "loader state ", st.to_string(), " does not belong to this loader (seed=", options_.seed,
            " tokens=", num_tokens(), " seq_len=", options_.seq_len, " batch_size=", options_.batch_size,
            " order=", order_name(options_.order), ")");
  TSP_CHECK(st.epoch >= 0 && st.batches >= 0, "loader state ", st.to_string(), " has negative counters");
  std::vector<LoaderState::Part> want = st.parts;
  if (parts_.size() == 1) {
    TSP_CHECK(want.empty(), "loader state ", st.to_string(), " is a blend of ", want.size(),
              " parts; this loader reads one source");
    want.push_back({num_tokens(), st.epoch, st.position});
  } else {
    TSP_CHECK(want.size() == parts_.size(), "loader state ", st.to_string(), " has ", want.size(),
              " blend parts; this loader has ", parts_.size());
    TSP_CHECK(want[0].epoch == st.epoch && want[0].position == st.position, "loader state ", st.to_string(),
              ": epoch and position differ from part 0's");
  }
  std::vector<EpochPlan> plans;
  for (size_t i = 0; i < parts_.size(); ++i) {
    const LoaderState::Part& p = want[i];
    TSP_CHECK(p.num_tokens == parts_[i].source->size(), "loader state ", st.to_string(), ": part ", i, " has ",
              p.num_tokens, " tokens, this loader's ", parts_[i].source->size());
    TSP_CHECK(p.epoch >= 0, "loader state ", st.to_string(), " has negative counters");
    EpochPlan plan = plan_epoch(i, p.epoch);
    const int64_t windows = plan.order.size();
    TSP_CHECK(p.position >= 0 && p.position <= windows, "loader state ", st.to_string(),
              ": position outside the ", windows, " windows of epoch ", p.epoch,
              parts_.size() > 1 ? " of part " + std::to_string(i) : std::string());
    plans.push_back(std::move(plan));
  }
  // Commit: nothing below throws.
  for (size_t i = 0; i < parts_.size(); ++i) {
    parts_[i].epoch = want[i].epoch;
    parts_[i].position = want[i].position;
    parts_[i].phase = plans[i].phase;
    parts_[i].order = plans[i].order;
  }
  batches_ = st.batches;
}

}  // namespace tsp::data
