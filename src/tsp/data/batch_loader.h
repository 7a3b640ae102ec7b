// Deterministic training data: a train/validation split of a token stream and a loader that
// samples [B, S+1] windows per epoch from a seed, with a small state that makes resume exact.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tsp/core/tensor.h"

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
  uint64_t seed = 0;
  int64_t epoch = 0;
  int64_t position = 0;  // windows of this epoch already consumed
  int64_t batches = 0;   // global batches drawn since the start
  int64_t num_tokens = 0;
  int64_t seq_len = 0;
  int64_t batch_size = 0;
  WindowOrder order = WindowOrder::shuffled;

  // "tsp-loader-v2 seed=7 epoch=0 position=96 batches=12 tokens=100000 seq_len=64 batch_size=8
  // order=shuffled" (one line): fits a safetensors __metadata__ value or a JSON string.
  std::string to_string() const;
  // InvalidArgument on malformed text, a missing, repeated or unknown field, or another version.
  static LoaderState parse(std::string_view text);
  friend bool operator==(const LoaderState&, const LoaderState&) = default;
};

// Windows: in epoch e with phase s, window k covers tokens [s + k S, s + k S + S + 1), for
// k in [0, W_e), W_e = (N - S - 1 - s) / S + 1: consecutive windows share one token, so every
// token is a target once per epoch. Rows of a batch are consecutive entries of the epoch's
// permutation; a batch may straddle two epochs.
class BatchLoader {
 public:
  // Requires N >= S + 1, B > 0, S > 0. Tokens must be valid ids (not checked here).
  BatchLoader(std::vector<int32_t> tokens, const BatchLoaderOptions& options);

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

  int64_t num_tokens() const { return static_cast<int64_t>(tokens_.size()); }
  int64_t windows_in_epoch() const { return static_cast<int64_t>(perm_.size()); }
  const BatchLoaderOptions& options() const { return options_; }

 private:
  struct EpochPlan {
    int64_t phase = 0;
    std::vector<int64_t> perm;  // window indices in visiting order
  };
  EpochPlan plan_epoch(int64_t epoch) const;  // pure: depends on (options, N, epoch) only
  void start_epoch(int64_t epoch);
  int64_t next_window_start();
  std::vector<int32_t> tokens_;
  BatchLoaderOptions options_;
  int64_t epoch_ = 0;
  int64_t position_ = 0;
  int64_t batches_ = 0;
  int64_t phase_ = 0;
  std::vector<int64_t> perm_;  // window indices of the current epoch
};

}  // namespace tsp::data
