// Checkpoint directories the engine owns: the ownership marker written into every checkpoint
// directory, the refusal to replace anything else, the hidden sibling temporaries of the atomic
// swap (creation, replacement, removal of our own stale ones), and the pre-flight check of a
// checkpoint destination (creatable, writable, same file system as the temporary, free space).
// One implementation for model::save_hf_checkpoint and parallel::save_sharded_hf_checkpoint.
// docs/formats.md ("Checkpoint marker"), docs/training.md ("The checkpoint directory").
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace tsp {

// The marker file: line 1 is kCheckpointMarkerMagic, then one line per file the engine wrote into
// the directory (sorted; the marker itself is not listed).
inline constexpr const char* kCheckpointMarkerFileName = "tsp_checkpoint.txt";
inline constexpr const char* kCheckpointMarkerMagic = "tsp-checkpoint-v1";

std::string checkpoint_marker_bytes(std::vector<std::string> files);

// The files listed by the marker in `dir`, or nullopt when `dir` has no valid marker.
std::optional<std::vector<std::string>> read_checkpoint_marker(const std::filesystem::path& dir);

// Whether `dir` is a checkpoint directory this engine wrote and nothing else touched: a directory
// (not a link) whose every entry is a regular file listed by its marker (or the marker itself).
// Checkpoints written before the marker existed are recognised too: only config.json,
// model.safetensors / model.safetensors.index.json / model-*.safetensors and
// train_state.safetensors, the last carrying the training state's format tag. On false, `why`
// (if given) says what makes it foreign.
bool is_engine_checkpoint(const std::filesystem::path& dir, std::string* why = nullptr);

// `dir` as an absolute, normalised path without a trailing separator; a symbolic link is resolved
// (the link keeps pointing at the replaced directory). `/` and paths without a parent:
// InvalidArgument. `what` starts every message.
std::filesystem::path checkpoint_target(const std::filesystem::path& dir, const std::string& what);

// An existing `target` must be an empty directory or one is_engine_checkpoint accepts, else
// InvalidArgument saying why (a save replaces the whole directory). Absent: fine.
void check_replaceable(const std::filesystem::path& target, const std::string& what);

// Removes the hidden siblings ".<name>.tmp.XXXXXX" and ".<name>.old.XXXXXX" of `target` (exactly
// mkdtemp's 6 characters) that a crashed save of ours left, but only while `target` itself holds a
// complete checkpoint of ours (a crash between the two renames of the fallback leaves the only
// complete copies in those siblings), and only siblings is_own_checkpoint_temporary accepts.
// Anything else is left alone. Returns the removed paths.
std::vector<std::filesystem::path> remove_stale_checkpoint_temporaries(const std::filesystem::path& target);
// Removes a checkpoint directory (or temporary) with its marker last, so that a crash in the middle
// leaves a directory that is still recognisably ours (and removed by a later save), never an
// anonymous partial copy. `ec` reports the first failure.
void remove_checkpoint_tree(const std::filesystem::path& dir, std::error_code& ec);

// Whether `dir` is a directory carrying our marker whose every entry is a regular file the marker
// lists (or an atomic-write temporary ".<listed>.tmp.*" of one), or a directory holding nothing
// but the marker's own temporary (a save killed before its marker was in place): the test
// applied to a temporary.
bool is_own_checkpoint_temporary(const std::filesystem::path& dir);
// The siblings remove_stale_checkpoint_temporaries would remove (nothing is changed).
std::vector<std::filesystem::path> stale_checkpoint_temporaries(const std::filesystem::path& target);

// Creates the fresh hidden sibling ".<name>.tmp.XXXXXX" of `target` (creating missing parent
// directories), with the permissions of the existing `target` (0755 when absent), and writes the
// marker listing `files` into it first, so that even a partial temporary is recognisably ours.
std::filesystem::path make_checkpoint_temporary(const std::filesystem::path& target,
                                                const std::vector<std::string>& files, const std::string& what);

// Replaces the directory `target` by `fresh` (a sibling): one renameat2(RENAME_EXCHANGE) where the
// file system supports it, else two renames through ".<name>.old.XXXXXX" (`allow_exchange` =
// false forces the fallback). The old directory is removed afterwards.
void replace_checkpoint_directory(const std::filesystem::path& fresh, const std::filesystem::path& target,
                                  bool allow_exchange);

// Removes a directory tree at scope exit unless `path` has been cleared.
struct RemoveTreeOnExit {
  std::filesystem::path path;
  ~RemoveTreeOnExit();
};

// The pre-flight check of a checkpoint destination, before any training step: `dir` resolves to a
// target that check_replaceable accepts; the directory the temporary will be created in (the
// target's parent, or its nearest existing ancestor when the parent is still to be created) is a
// writable directory (a probe file is created and removed); an existing target is on the same
// file system as that directory (the atomic swap cannot cross file systems); and the file system
// has `needed_bytes` free for the temporary copy, counting the space of our own stale temporaries
// (which the save removes first) as free ("checkpoint directory X: needs N MiB, the filesystem
// has M MiB free"). Changes nothing but the probe. Throws InvalidArgument (what the user chose
// cannot work) or IoError (the system refused) naming the directory.
void check_checkpoint_destination(const std::filesystem::path& dir, uint64_t needed_bytes, const std::string& what);

namespace detail {
// Test hook: when set, replaces statvfs's free-byte count of the destination's file system.
void set_free_bytes_for_testing(std::function<uint64_t(const std::filesystem::path&)> free_bytes);
}  // namespace detail

}  // namespace tsp
