// A run directory's checkpoint history (--keep-checkpoints K): one step directory per save
// ("step-000200/", each a complete checkpoint directory written by the atomic swap of
// checkpoint_dir.h), a small file "latest" naming the newest complete one (replaced atomically
// after the step directory is complete), and pruning of our own older step directories beyond K
// after that. Readers (--resume, --init, eval, generate) resolve a run directory to its latest.
// docs/training.md ("Checkpoint history"), docs/formats.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace tsp {

inline constexpr const char* kLatestFileName = "latest";

// "step-000200" (at least six digits).
std::string checkpoint_step_dir_name(int64_t step);
// The step of a name checkpoint_step_dir_name produces ("step-" and six or more digits), else nullopt.
std::optional<int64_t> parse_checkpoint_step_dir_name(const std::string& name);

// Whether `dir` is a run directory: it holds a regular file "latest".
bool is_checkpoint_run_dir(const std::filesystem::path& dir);

// The checkpoint directory `dir` stands for: a run directory's latest step directory (IoError when
// "latest" does not name an existing step directory), anything else itself.
std::filesystem::path resolve_checkpoint_dir(const std::filesystem::path& dir);

// The run directory a resume from `dir` continues: `dir` when it is one, its parent when `dir` is
// a step directory of a run directory, else nullopt (a plain checkpoint directory).
std::optional<std::filesystem::path> checkpoint_run_dir_of(const std::filesystem::path& dir);

// Points run_dir/latest at `step_dir_name` (a directory of run_dir that must already be complete):
// written to a temporary, fsynced and renamed over "latest", so a reader or a crash sees the old
// or the new name, never a partial one.
void commit_latest_checkpoint(const std::filesystem::path& run_dir, const std::string& step_dir_name);

// Removes the step directories of `run_dir` beyond the newest `keep` (counting the one "latest"
// names, which is always kept; the others by step number), only those is_engine_checkpoint
// accepts: anything else in run_dir, a foreign "step-*" directory included, is left alone. Also
// removes the hidden temporaries of step directories that crashed saves left (only those
// is_own_checkpoint_temporary accepts) and those of "latest" (".latest.tmp.XXXXXX"). Call it after a save completed. Returns the removed paths.
std::vector<std::filesystem::path> prune_checkpoint_history(const std::filesystem::path& run_dir, int64_t keep);

// The pre-flight check of a run directory before any step: it is not a file, not itself a single
// checkpoint directory (the two layouts do not mix), its "latest" (if any) is a regular file, and
// check_checkpoint_destination accepts run_dir/<first_step_dir_name> for `needed_bytes` (writable,
// free space for one more checkpoint: pruning follows the save). `what` starts every message.
void check_checkpoint_run_dir(const std::filesystem::path& run_dir, const std::string& first_step_dir_name,
                              uint64_t needed_bytes, const std::string& what);

}  // namespace tsp
