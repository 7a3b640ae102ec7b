// Checkpoint history of a run directory: step directory names, "latest", resolution, pruning,
// pre-flight check.
#include "tsp/core/checkpoint_history.h"

#include <algorithm>
#include <cstdio>

#include "tsp/core/atomic_file.h"
#include "tsp/core/check.h"
#include "tsp/core/checkpoint_dir.h"
#include "tsp/core/file_io.h"

namespace tsp {

namespace fs = std::filesystem;

std::string checkpoint_step_dir_name(int64_t step) {
  TSP_CHECK(step >= 0, "checkpoint step ", step, " must be >= 0");
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%06lld", static_cast<long long>(step));
  return buf;
}

std::optional<int64_t> parse_checkpoint_step_dir_name(const std::string& name) {
  constexpr size_t kPrefix = 5;  // "step-"
  if (!name.starts_with("step-") || name.size() < kPrefix + 6 || name.size() > kPrefix + 18) return std::nullopt;
  int64_t step = 0;
  for (size_t i = kPrefix; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    step = step * 10 + (name[i] - '0');
  }
  if (checkpoint_step_dir_name(step) != name) return std::nullopt;  // no extra leading zeros
  return step;
}

bool is_checkpoint_run_dir(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(fs::symlink_status(dir / kLatestFileName, ec));
}

namespace {

// The step directory name "latest" holds (one line), validated.
std::string read_latest(const fs::path& run_dir) {
  const fs::path latest = run_dir / kLatestFileName;
  std::string text = read_whole_file(latest, "checkpoint history file");
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  if (!parse_checkpoint_step_dir_name(text))
    TSP_THROW(IoError, latest.string(), " does not name a step directory (\"step-NNNNNN\"), it holds \"",
              text.substr(0, 64), "\"");
  return text;
}

}  // namespace

fs::path resolve_checkpoint_dir(const fs::path& dir) {
  if (!is_checkpoint_run_dir(dir)) return dir;
  const std::string name = read_latest(dir);
  std::error_code ec;
  if (!fs::is_directory(fs::symlink_status(dir / name, ec)))
    TSP_THROW(IoError, (dir / kLatestFileName).string(), " names ", name, ", which is not a directory of ",
              dir.string());
  return dir / name;
}

std::optional<fs::path> checkpoint_run_dir_of(const fs::path& dir) {
  if (is_checkpoint_run_dir(dir)) return dir;
  fs::path d = dir.lexically_normal();
  if (d.filename().empty()) d = d.parent_path();
  if (parse_checkpoint_step_dir_name(d.filename().string()) && is_checkpoint_run_dir(d.parent_path()))
    return d.parent_path();
  return std::nullopt;
}

void commit_latest_checkpoint(const fs::path& run_dir, const std::string& step_dir_name) {
  TSP_CHECK(parse_checkpoint_step_dir_name(step_dir_name).has_value(), "\"", step_dir_name,
            "\" is not a step directory name");
  TSP_CHECK(is_engine_checkpoint(run_dir / step_dir_name), "cannot point ", (run_dir / kLatestFileName).string(),
            " at ", step_dir_name, ": it is not a complete checkpoint directory");
  write_file_atomically(run_dir / kLatestFileName, step_dir_name + "\n");
}

std::vector<fs::path> prune_checkpoint_history(const fs::path& run_dir, int64_t keep) {
  TSP_CHECK(keep >= 1, "prune_checkpoint_history: keep must be >= 1, got ", keep);
  const std::string latest = read_latest(run_dir);
  struct Step {
    int64_t step;
    fs::path path;
  };
  std::vector<Step> others;
  std::error_code ec;
  for (fs::directory_iterator it(run_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const auto step = parse_checkpoint_step_dir_name(name);
    if (!step || name == latest) continue;
    if (!fs::is_directory(it->symlink_status(ec)) || !is_engine_checkpoint(it->path())) continue;
    others.push_back({*step, it->path()});
  }
  if (ec) TSP_THROW(IoError, "cannot list the run directory ", run_dir.string(), ": ", ec.message());
  std::sort(others.begin(), others.end(), [](const Step& a, const Step& b) { return a.step > b.step; });
  std::vector<fs::path> removed;
  for (size_t i = static_cast<size_t>(keep - 1); i < others.size(); ++i) {
    remove_checkpoint_tree(others[i].path, ec);
    if (ec) TSP_THROW(IoError, "cannot remove the old checkpoint ", others[i].path.string(), ": ", ec.message());
    removed.push_back(others[i].path);
  }
  // Temporaries ".step-NNNNNN.tmp.XXXXXX" / ".old." of saves that crashed: each save has a new
  // target name, so no later save of the same name would remove them. This runs after a save
  // completed (one writer per run directory), so none belongs to a save in progress.
  std::vector<fs::path> stale;
  for (fs::directory_iterator it(run_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.starts_with(".latest.tmp.") && name.size() == 12 + 6 && fs::is_regular_file(it->symlink_status(ec))) {
      stale.push_back(it->path());  // the atomic write of "latest" of a killed save (one line)
      continue;
    }
    if (name.size() < 1 + 11 || name[0] != '.') continue;
    const std::string kind = name.substr(name.size() - 11, 5);
    if (kind != ".tmp." && kind != ".old.") continue;
    const std::string base = name.substr(1, name.size() - 12);
    if (!parse_checkpoint_step_dir_name(base)) continue;
    if (fs::exists(fs::symlink_status(run_dir / base, ec))) {
      for (fs::path& p : stale_checkpoint_temporaries(run_dir / base)) stale.push_back(std::move(p));
    } else if (is_own_checkpoint_temporary(it->path())) {
      stale.push_back(it->path());
    }
  }
  std::sort(stale.begin(), stale.end());
  stale.erase(std::unique(stale.begin(), stale.end()), stale.end());
  for (const fs::path& p : stale) {
    remove_checkpoint_tree(p, ec);
    if (!ec) removed.push_back(p);
  }
  if (!removed.empty()) fsync_directory(run_dir);
  return removed;
}

void check_checkpoint_run_dir(const fs::path& run_dir, const std::string& first_step_dir_name, uint64_t needed_bytes,
                              const std::string& what) {
  std::error_code ec;
  const fs::file_status st = fs::status(run_dir, ec);
  if (fs::exists(st)) {
    TSP_CHECK(fs::is_directory(st), what, ": ", run_dir.string(), " exists and is not a directory");
    TSP_CHECK(fs::is_empty(run_dir, ec) || !is_engine_checkpoint(run_dir), what, ": ", run_dir.string(),
              " is a single checkpoint directory; with --keep-checkpoints it must be a run directory that holds "
              "step-NNNNNN/ checkpoints and a 'latest' file: choose another directory (and --init or --resume "
              "from this one)");
    const fs::file_status latest = fs::symlink_status(run_dir / kLatestFileName, ec);
    TSP_CHECK(!fs::exists(latest) || fs::is_regular_file(latest), what, ": ", (run_dir / kLatestFileName).string(),
              " exists and is not a regular file (it is where the run directory names its newest checkpoint)");
  }
  check_checkpoint_destination(run_dir / first_step_dir_name, needed_bytes, what);
}

}  // namespace tsp
