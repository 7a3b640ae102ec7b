// Checkpoint directories the engine owns: marker, ownership test, temporaries, atomic swap,
// pre-flight check of the destination.
#include "tsp/core/checkpoint_dir.h"

#include <fcntl.h>
#include <stdio.h>  // renameat2, RENAME_EXCHANGE (glibc >= 2.28)
#include <stdlib.h>  // mkdtemp, mkstemp
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "tsp/core/atomic_file.h"
#include "tsp/core/check.h"
#include "tsp/core/file_io.h"

namespace tsp {

namespace fs = std::filesystem;

namespace {

// The files of checkpoints written before the marker existed (model/hf_checkpoint.h,
// train/train_state.h); only used to recognise those.
constexpr const char* kLegacyConfig = "config.json";
constexpr const char* kLegacySingle = "model.safetensors";
constexpr const char* kLegacyIndex = "model.safetensors.index.json";
constexpr const char* kLegacyTrainState = "train_state.safetensors";
constexpr const char* kLegacyTrainStateFormats[] = {"tsp-train-state-v1", "tsp-train-state-v2"};

std::function<uint64_t(const fs::path&)>& free_bytes_hook() {
  static std::function<uint64_t(const fs::path&)> hook;
  return hook;
}

bool is_mkdtemp_suffix(std::string_view s) {
  return s.size() == 6 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
         });
}

// "<parent>/.<name>.<kind>.XXXXXX".
std::string sibling_pattern(const fs::path& target, const char* kind) {
  std::string name(".");  // built by appends: GCC 12 warns (-Wrestrict) on "." + string
  name += target.filename().string();
  name += '.';
  name += kind;
  name += ".XXXXXX";
  return (target.parent_path() / name).string();
}

// Whether `name` is ".<base>.<kind>.XXXXXX" for one of `kinds`.
bool is_sibling_name(const std::string& name, const std::string& base, std::initializer_list<const char*> kinds) {
  for (const char* kind : kinds) {
    std::string prefix(".");  // appends: GCC 12 warns (-Wrestrict) on "." + string
    prefix += base;
    prefix += '.';
    prefix += kind;
    prefix += '.';
    if (name.size() == prefix.size() + 6 && name.starts_with(prefix) && is_mkdtemp_suffix(name.substr(prefix.size())))
      return true;
  }
  return false;
}

bool is_legacy_checkpoint_file(const std::string& name) {
  return name == kLegacyConfig || name == kLegacySingle || name == kLegacyIndex || name == kLegacyTrainState ||
         (name.starts_with("model-") && name.ends_with(".safetensors"));
}

// Whether the safetensors header of `path` carries the training state's format tag.
bool has_train_state_format(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char len[8];
  if (!in.read(reinterpret_cast<char*>(len), 8)) return false;
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
  if (n == 0 || n > (uint64_t{64} << 20)) return false;
  std::string header(static_cast<size_t>(n), '\0');
  if (!in.read(header.data(), static_cast<std::streamsize>(n))) return false;
  for (const char* format : kLegacyTrainStateFormats)
    if (header.find(std::string("\"") + format + "\"") != std::string::npos) return true;
  return false;
}

uint64_t free_bytes_of(const fs::path& dir, const std::string& what) {
  if (free_bytes_hook()) return free_bytes_hook()(dir);
  struct statvfs sv {};
  if (::statvfs(dir.c_str(), &sv) != 0) {
    const int err = errno;
    TSP_THROW(IoError, what, ": cannot query the free space of ", dir.string(), ": ", errno_text(err));
  }
  return static_cast<uint64_t>(sv.f_bavail) * static_cast<uint64_t>(sv.f_frsize);
}

std::string mib_text(uint64_t bytes, bool round_up) {
  const uint64_t mib = uint64_t{1} << 20;
  return std::to_string(round_up ? (bytes + mib - 1) / mib : bytes / mib);
}

}  // namespace

std::string checkpoint_marker_bytes(std::vector<std::string> files) {
  std::sort(files.begin(), files.end());
  files.erase(std::unique(files.begin(), files.end()), files.end());
  std::string text = std::string(kCheckpointMarkerMagic) + "\n";
  for (const std::string& f : files) {
    TSP_CHECK(!f.empty() && f.find('/') == std::string::npos && f.find('\n') == std::string::npos &&
                  f != "." && f != ".." && f != kCheckpointMarkerFileName,
              "checkpoint marker: \"", f, "\" is not a plain file name of the checkpoint");
    text += f;
    text += '\n';
  }
  return text;
}

std::optional<std::vector<std::string>> read_checkpoint_marker(const fs::path& dir) {
  const fs::path path = dir / kCheckpointMarkerFileName;
  std::error_code ec;
  if (!fs::is_regular_file(fs::symlink_status(path, ec))) return std::nullopt;
  const auto size = fs::file_size(path, ec);
  if (ec || size > (1u << 20)) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  std::string line;
  if (!std::getline(in, line) || line != kCheckpointMarkerMagic) return std::nullopt;
  std::vector<std::string> files;
  while (std::getline(in, line)) {
    if (line.empty() || line.find('/') != std::string::npos || line == "." || line == "..") return std::nullopt;
    files.push_back(line);
  }
  return files;
}

bool is_engine_checkpoint(const fs::path& dir, std::string* why) {
  auto no = [&](std::string reason) {
    if (why) *why = std::move(reason);
    return false;
  };
  std::error_code ec;
  if (!fs::is_directory(fs::symlink_status(dir, ec))) return no("it is not a directory");
  const std::optional<std::vector<std::string>> listed = read_checkpoint_marker(dir);
  const std::set<std::string> ours = listed ? std::set<std::string>(listed->begin(), listed->end())
                                            : std::set<std::string>{};
  bool legacy_state = false;
  std::vector<std::string> foreign, irregular;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const fs::file_status st = it->symlink_status(ec);
    if (ec) break;
    if (listed ? (name != kCheckpointMarkerFileName && !ours.count(name)) : !is_legacy_checkpoint_file(name)) {
      foreign.push_back(name);
      continue;
    }
    if (name == kLegacyTrainState) legacy_state = true;
    if (!fs::is_regular_file(st)) irregular.push_back(name);
  }
  if (ec) return no("it cannot be listed: " + ec.message());
  auto quoted = [](std::vector<std::string> names) {
    std::sort(names.begin(), names.end());
    std::string text;
    for (size_t i = 0; i < names.size() && i < 5; ++i) text += (i ? ", \"" : "\"") + names[i] + "\"";
    if (names.size() > 5) text += " and " + std::to_string(names.size() - 5) + " more";
    return text;
  };
  if (!foreign.empty()) {
    if (listed) return no("it holds " + quoted(foreign) + ", which the engine did not write");
    return no("it holds " + quoted(foreign) + " and no " + kCheckpointMarkerFileName +
              " (it is not a checkpoint directory this engine wrote)");
  }
  if (!irregular.empty()) return no("it holds " + quoted(irregular) + ", which is not a regular file");
  if (!listed && !legacy_state)
    return no(std::string("it has no ") + kCheckpointMarkerFileName +
              " (a model directory this engine did not write, e.g. a downloaded Hugging Face checkpoint)");
  if (!listed && !has_train_state_format(dir / kLegacyTrainState))
    return no(std::string("it has no ") + kCheckpointMarkerFileName + " and its " + kLegacyTrainState +
              " is not this engine's training state");
  return true;
}

fs::path checkpoint_target(const fs::path& dir, const std::string& what) {
  std::error_code ec;
  TSP_CHECK(!dir.empty(), what, ": the checkpoint directory is empty");
  fs::path target = fs::absolute(dir, ec);
  if (ec) TSP_THROW(IoError, what, ": cannot resolve ", dir.string(), ": ", ec.message());
  target = target.lexically_normal();
  if (target.filename().empty() && target != target.root_path()) target = target.parent_path();
  if (fs::is_symlink(fs::symlink_status(target, ec))) {
    target = fs::canonical(target, ec);
    if (ec) TSP_THROW(IoError, what, ": cannot resolve the link ", dir.string(), ": ", ec.message());
  }
  TSP_CHECK(!target.filename().empty() && target.has_parent_path() && target != target.root_path(), what, ": ",
            dir.string(), " cannot be a checkpoint directory (the save replaces the directory as a whole)");
  return target;
}

void check_replaceable(const fs::path& target, const std::string& what) {
  std::error_code ec;
  const fs::file_status st = fs::status(target, ec);
  if (!fs::exists(st)) return;
  TSP_CHECK(fs::is_directory(st), what, ": ", target.string(), " exists and is not a directory");
  const bool empty = fs::is_empty(target, ec);
  if (ec) TSP_THROW(IoError, what, ": cannot list ", target.string(), ": ", ec.message());
  if (empty) return;
  std::string why;
  TSP_CHECK(is_engine_checkpoint(target, &why), what, ": refusing to replace ", target.string(), ": ", why,
            ". A save replaces the whole directory, so it must be empty, absent or a checkpoint directory "
            "this engine wrote holding only its own files; choose another --checkpoint-dir (or move the "
            "other files away)");
}

bool is_own_checkpoint_temporary(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(fs::symlink_status(dir, ec))) return false;
  const auto listed = read_checkpoint_marker(dir);
  if (!listed) {
    // A save that died before its marker was renamed into place: nothing, or only the marker's
    // own atomic-write temporary (no data of anyone's).
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      if (!is_sibling_name(it->path().filename().string(), kCheckpointMarkerFileName, {"tmp"}) ||
          !fs::is_regular_file(it->symlink_status(ec)))
        return false;
    }
    return !ec;
  }
  const std::set<std::string> ours(listed->begin(), listed->end());
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const bool partial = std::any_of(ours.begin(), ours.end(), [&](const std::string& f) {
      return is_sibling_name(name, f, {"tmp"});
    });
    if (!fs::is_regular_file(it->symlink_status(ec)) ||
        !(name == kCheckpointMarkerFileName || ours.count(name) || partial))
      return false;
  }
  return !ec;
}

void remove_checkpoint_tree(const fs::path& dir, std::error_code& ec) {
  ec.clear();
  if (!fs::is_directory(fs::symlink_status(dir, ec))) {
    fs::remove(dir, ec);
    return;
  }
  std::vector<fs::path> entries;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().filename() != kCheckpointMarkerFileName) entries.push_back(it->path());
  }
  if (ec) return;
  for (const fs::path& e : entries) {
    fs::remove_all(e, ec);
    if (ec) return;
  }
  fs::remove_all(dir, ec);  // the marker, then the empty directory
}

std::vector<fs::path> stale_checkpoint_temporaries(const fs::path& target) {
  std::vector<fs::path> stale;
  std::error_code ec;
  if (!is_engine_checkpoint(target)) return stale;  // no complete copy at the target: keep everything
  const std::string base = target.filename().string();
  std::vector<fs::path> candidates;
  for (fs::directory_iterator it(target.parent_path(), ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (is_sibling_name(name, base, {"tmp", "old"}) && fs::is_directory(it->symlink_status(ec)))
      candidates.push_back(it->path());
  }
  for (const fs::path& dir : candidates)
    if (is_own_checkpoint_temporary(dir)) stale.push_back(dir);
  return stale;
}

std::vector<fs::path> remove_stale_checkpoint_temporaries(const fs::path& target) {
  std::vector<fs::path> removed;
  for (const fs::path& dir : stale_checkpoint_temporaries(target)) {
    std::error_code ec;
    remove_checkpoint_tree(dir, ec);
    if (!ec) removed.push_back(dir);
  }
  return removed;
}

fs::path make_checkpoint_temporary(const fs::path& target, const std::vector<std::string>& files,
                                   const std::string& what) {
  const fs::path parent = target.parent_path();
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) TSP_THROW(IoError, what, ": cannot create the directory ", parent.string(), ": ", ec.message());
  std::string pattern = sibling_pattern(target, "tmp");
  if (::mkdtemp(pattern.data()) == nullptr) {
    const int err = errno;
    TSP_THROW(IoError, what, ": cannot create a temporary directory in ", parent.string(), ": ", errno_text(err));
  }
  const fs::path fresh = pattern;
  RemoveTreeOnExit cleanup{fresh};
  const fs::file_status old_status = fs::status(target, ec);
  fs::permissions(fresh, fs::exists(old_status) ? old_status.permissions() : fs::perms(0755), ec);
  write_file_atomically(fresh / kCheckpointMarkerFileName, checkpoint_marker_bytes(files));
  cleanup.path.clear();
  return fresh;
}

void replace_checkpoint_directory(const fs::path& fresh, const fs::path& target, bool allow_exchange) {
  std::error_code ec;
  if (!fs::is_directory(fs::symlink_status(fresh, ec)))
    TSP_THROW(IoError, "cannot replace ", target.string(), ": the new checkpoint directory ", fresh.string(),
              " does not exist");
  const fs::file_status st = fs::symlink_status(target, ec);
  if (!fs::exists(st)) {
    if (::rename(fresh.c_str(), target.c_str()) != 0) {
      const int err = errno;
      TSP_THROW(IoError, "cannot move the new checkpoint ", fresh.string(), " to ", target.string(), ": ",
                errno_text(err));
    }
    fsync_directory(target.parent_path());
    return;
  }
#ifdef RENAME_EXCHANGE
  if (allow_exchange) {
    // One atomic step: `target` is the old complete checkpoint until it is the new complete one.
    if (::renameat2(AT_FDCWD, fresh.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) == 0) {
      fsync_directory(target.parent_path());
      remove_checkpoint_tree(fresh, ec);  // now the old checkpoint; a leftover is only a hidden sibling
      return;
    }
    const int err = errno;
    if (err != EINVAL && err != ENOSYS && err != ENOTSUP && err != EOPNOTSUPP)
      TSP_THROW(IoError, "cannot swap the new checkpoint ", fresh.string(), " with ", target.string(), ": ",
                errno_text(err));
    // The file system cannot exchange: fall back to two renames.
  }
#endif
  // Two renames: for a moment `target` does not exist (a reader fails loudly, never mixes); a
  // crash in that moment leaves the old checkpoint in ".<name>.old.*" and the new one in
  // ".<name>.tmp.*", both complete.
  const fs::path parent = target.parent_path();
  std::string pattern = sibling_pattern(target, "old");
  if (::mkdtemp(pattern.data()) == nullptr) {
    const int err = errno;
    TSP_THROW(IoError, "cannot create a directory in ", parent.string(), " to move the old checkpoint ",
              target.string(), " aside: ", errno_text(err));
  }
  const fs::path old = pattern;
  if (::rename(target.c_str(), old.c_str()) != 0) {  // onto the empty directory just made
    const int err = errno;
    fs::remove(old, ec);
    TSP_THROW(IoError, "cannot move the old checkpoint ", target.string(), " aside to ", old.string(), ": ",
              errno_text(err));
  }
  if (::rename(fresh.c_str(), target.c_str()) != 0) {
    const int err = errno;
    const bool restored = ::rename(old.c_str(), target.c_str()) == 0;
    TSP_THROW(IoError, "cannot move the new checkpoint ", fresh.string(), " to ", target.string(), ": ",
              errno_text(err),
              restored ? std::string(" (the old checkpoint is unchanged)")
                       : " (the old checkpoint is in " + old.string() + ")");
  }
  fsync_directory(parent);
  remove_checkpoint_tree(old, ec);
}

RemoveTreeOnExit::~RemoveTreeOnExit() {
  std::error_code ec;
  if (!path.empty()) fs::remove_all(path, ec);
}

void check_checkpoint_destination(const fs::path& dir, uint64_t needed_bytes, const std::string& what) {
  const fs::path target = checkpoint_target(dir, what);
  const std::string name = "checkpoint directory " + target.string();
  check_replaceable(target, what);

  // Where the temporary will be created: the parent, or the nearest ancestor that exists.
  std::error_code ec;
  fs::path base = target.parent_path();
  while (!fs::exists(fs::symlink_status(base, ec)) && base.has_parent_path() && base != base.root_path())
    base = base.parent_path();
  TSP_CHECK(fs::is_directory(fs::status(base, ec)), what, ": ", name, " cannot be created: ", base.string(),
            " is not a directory");
  {
    std::string probe_name(".");
    probe_name += target.filename().string();
    probe_name += ".probe.XXXXXX";
    std::string probe = (base / probe_name).string();
    const int fd = ::mkstemp(probe.data());
    if (fd < 0) {
      const int err = errno;
      TSP_THROW(IoError, what, ": ", name, " is not writable: cannot create a file in ", base.string(), " (",
                errno_text(err), ")");
    }
    ::close(fd);
    ::unlink(probe.c_str());
  }
  if (fs::exists(fs::symlink_status(target, ec))) {
    struct stat t {}, p {};
    if (::stat(target.c_str(), &t) != 0 || ::stat(base.c_str(), &p) != 0) {
      const int err = errno;
      TSP_THROW(IoError, what, ": cannot stat ", target.string(), " or ", base.string(), ": ", errno_text(err));
    }
    TSP_CHECK(t.st_dev == p.st_dev, what, ": ", name, " is on another file system than ", base.string(),
              " (a mount point?): the save writes its temporary copy beside it in ", base.string(),
              " and swaps the two, which cannot cross file systems; choose a directory inside it");
  }
  // Our stale temporaries are removed by the save before it writes: their space counts as free.
  uint64_t reclaimable = 0;
  for (const fs::path& stale : stale_checkpoint_temporaries(target)) {
    for (fs::recursive_directory_iterator it(stale, ec), end; !ec && it != end; it.increment(ec))
      if (it->is_regular_file(ec)) reclaimable += it->file_size(ec);
  }
  const uint64_t free_bytes = free_bytes_of(base, what) + reclaimable;
  if (free_bytes < needed_bytes)
    TSP_THROW(IoError, what, ": ", name, ": needs ", mib_text(needed_bytes, true), " MiB, the filesystem has ",
              mib_text(free_bytes, false), " MiB free");
}

namespace detail {
void set_free_bytes_for_testing(std::function<uint64_t(const fs::path&)> free_bytes) {
  free_bytes_hook() = std::move(free_bytes);
}
}  // namespace detail

}  // namespace tsp
