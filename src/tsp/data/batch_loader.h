// Deterministic training data: a train/validation split of a token stream and a loader that
// samples [B, S+1] windows per epoch from a seed, with a small state that makes resume exact.
// The loader reads windows from a TokenSource (token_source.h: memory, mapped files, shards) or
// from a weighted blend of sources.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tsp/core/tensor.h"
#include "tsp/data/window_permutation.h"

namespace tsp::data {

struct SplitOptions {
  double val_fraction = 0.1;       // in [0, 1)
  int64_t block_tokens = 1 << 16;  // > 0; see split_train_val
};

struct TokenSplit {
  std::vector<int32_t> train;
  std::vector<int32_t> val;
};

// Cuts the stream into consecutive blocks of block_tokens (the last may be shorter); the last
// round(val_fraction * block length) tokens of every block go to `val`, the rest to `train`,
// each in stream order. The two parts are disjoint ranges of the stream and together cover it;
// spreading validation over the stream keeps it representative of the whole corpus.
TokenSplit split_train_val(std::span<const int32_t> tokens, const SplitOptions& options);

enum class WindowOrder : uint8_t {
  shuffled,    // every epoch: random phase in [0, S) and a random permutation of the windows
  sequential,  // phase 0, windows in stream order (evaluation)
};

struct BatchLoaderOptions {
  int64_t batch_size = 0;  // B: rows of the global batch
  int64_t seq_len = 0;     // S: each row holds S + 1 consecutive tokens
  uint64_t seed = 0;
  WindowOrder order = WindowOrder::shuffled;
};

// Data-parallel slice of the global batch: rank r of R gets the contiguous block of rows
// [r * B/R, (r+1) * B/R). Requires B % R == 0.
struct DataShard {
  int64_t rank = 0;
  int64_t world = 1;
};

struct Batch {
  Tensor tokens;  // i32 [rows, S + 1]
  int64_t rows() const { return tokens.dim(0); }
  int64_t seq_len() const { return tokens.dim(1) - 1; }
  Tensor inputs() const { return tokens.slice(1, 0, seq_len()); }   // i32 [rows, S] view
  Tensor targets() const { return tokens.slice(1, 1, seq_len()); }  // i32 [rows, S] view: next tokens
};

// Where a loader stands. The per-epoch permutation is a pure function of (seed, epoch), so this
// is all a checkpoint needs. seed, num_tokens, seq_len, batch_size and order are a fingerprint of
// the loader's configuration, checked on restore.
struct LoaderState {
  // Where one part of a blend stands (BatchLoader with several parts).
  struct Part {
    int64_t num_tokens = 0;
    int64_t epoch = 0;
    int64_t position = 0;
    friend bool operator==(const Part&, const Part&) = default;
  };
  uint64_t seed = 0;
  int64_t epoch = 0;
  int64_t position = 0;  // windows of this epoch already consumed
  int64_t batches = 0;   // global batches drawn since the start
  int64_t num_tokens = 0;
  int64_t seq_len = 0;
  int64_t batch_size = 0;
  WindowOrder order = WindowOrder::shuffled;
  // Empty for one source. A blend: every part's tokens, epoch and position (epoch and position
  // above repeat part 0's; num_tokens is the sum).
  std::vector<Part> parts = {};

  // "tsp-loader-v3 seed=7 epoch=0 position=96 batches=12 tokens=100000 seq_len=64 batch_size=8
  // order=shuffled" (one line): fits a safetensors __metadata__ value or a JSON string. A blend
  // appends " parts=70000:0:40,30000:1:3" (tokens:epoch:position per part).
  std::string to_string() const;
  // InvalidArgument on malformed text, a missing, repeated or unknown field, or another version.
  static LoaderState parse(std::string_view text);
  friend bool operator==(const LoaderState&, const LoaderState&) = default;
};

class TokenSource;  // token_source.h

// One part of a weighted blend: its training stream and its weight (> 0; weights are normalised).
struct BlendPart {
  std::shared_ptr<const TokenSource> source;
  double weight = 1.0;
};

// Windows: in epoch e with phase s, window k covers tokens [s + k S, s + k S + S + 1), for
// k in [0, W_e), W_e = (N - S - 1 - s) / S + 1: consecutive windows share one token, so every
// token is a target once per epoch. Rows of a batch are consecutive entries of the epoch's
// permutation; a batch may straddle two epochs.
//
// A blend of P parts: every part has its own windows, epochs and permutations (part p's epoch e
// is drawn from Rng(seed, stream = e + p * 2^40), so part 0 alone samples as a single source), and
// row r of global batch t picks its part by the normalised weights from a uniform draw of
// Rng(seed, stream = 2^63 + t): a pure function of (seed, t, r). A part that runs out of windows
// starts its next epoch on its own; the others are unaffected.
class BatchLoader {
 public:
  // Requires N >= S + 1, B > 0, S > 0. Tokens must be valid ids (not checked here).
  BatchLoader(std::vector<int32_t> tokens, const BatchLoaderOptions& options);
  // The same over a source: windows are read from it as rows are drawn (nothing is copied ahead).
  BatchLoader(std::shared_ptr<const TokenSource> source, const BatchLoaderOptions& options);
  // A weighted blend; one part samples exactly as the single-source constructor. Every part needs
  // at least S + 1 tokens and a positive, finite weight.
  BatchLoader(std::vector<BlendPart> parts, const BatchLoaderOptions& options);

  // The whole global batch [B, S+1].
  Batch next(MemCategory category = MemCategory::activations);
  // This rank's rows of the next global batch; the state advances by the whole global batch,
  // so every rank of the data-parallel group stays in step.
  Batch next(const DataShard& shard, MemCategory category = MemCategory::activations);

  LoaderState state() const;
  // Throws InvalidArgument if the state belongs to another configuration (seed, stream length,
  // seq_len, batch_size or order) or lies outside it (negative counters, position beyond the
  // epoch's windows). All-or-nothing: on a throw the loader is unchanged.
  void restore(const LoaderState& state);

  int64_t num_tokens() const;  // summed over the parts of a blend
  int64_t windows_in_epoch() const { return parts_[0].order.size(); }  // part 0's
  const BatchLoaderOptions& options() const { return options_; }
  size_t num_parts() const { return parts_.size(); }

 private:
  struct EpochPlan {
    int64_t phase = 0;
    WindowPermutation order;  // window indices in visiting order
  };
  struct PartCursor {
    std::shared_ptr<const TokenSource> source;
    double cumulative = 1.0;  // upper end of this part's share of [0, 1)
    int64_t epoch = 0;
    int64_t position = 0;
    int64_t phase = 0;
    WindowPermutation order;  // window indices of the current epoch
  };
  // Pure: depends on (options, the part's N, part index, epoch) only.
  EpochPlan plan_epoch(size_t part, int64_t epoch) const;
  void start_epoch(size_t part, int64_t epoch);
  int64_t next_window_start(size_t part);
  std::vector<size_t> parts_of_rows(int64_t batch_index) const;  // which part each row draws from
  BatchLoaderOptions options_;
  std::vector<PartCursor> parts_;
  int64_t batches_ = 0;
};

}  // namespace tsp::data
