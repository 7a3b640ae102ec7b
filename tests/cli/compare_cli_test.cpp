// `tsp compare` and the "memory" records it reads: crafted metrics files with known numbers (each
// printed value parsed back and compared), the records a real training run writes, and errors.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <regex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "scratch_dir.h"
#include "tsp/cli/commands.h"
#include "tsp/core/error.h"

namespace tsp::cli {
namespace {

using nlohmann::json;
using testing::ScratchDir;

constexpr int64_t kMiB = 1 << 20;

std::string compare(const std::vector<std::string>& args) {
  std::vector<const char*> argv{"tsp", "compare"};
  for (const auto& a : args) argv.push_back(a.c_str());
  std::ostringstream out, err;
  const int rc = run_cli(static_cast<int>(argv.size()), argv.data(), out, err);
  EXPECT_EQ(rc, 0) << err.str();
  return out.str();
}

// The numbers of the row that starts with `label` (after the two-space indent).
std::vector<double> row_numbers(const std::string& out, const std::string& label) {
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("  " + label, 0) != 0) continue;
    std::vector<double> v;
    const std::string rest = line.substr(2 + label.size());
    const std::regex num(R"([-+]?[0-9]+\.?[0-9]*(e[-+][0-9]+)?)");
    for (auto it = std::sregex_iterator(rest.begin(), rest.end(), num); it != std::sregex_iterator(); ++it)
      v.push_back(std::stod(it->str()));
    return v;
  }
  ADD_FAILURE() << "no row '" << label << "' in:\n" << out;
  return {};
}

struct FakeRank {
  int64_t weights, activations, rss, sent;
};

// A metrics file of `steps` train records with loss(step), a val record at the end and one memory
// record per rank.
void write_run(const std::filesystem::path& path, int64_t steps, const std::function<double(int64_t)>& loss,
               double tokens_per_s, const std::vector<FakeRank>& ranks) {
  std::ofstream f(path);
  for (int64_t s = 1; s <= steps; ++s)
    f << json{{"type", "train"}, {"step", s}, {"loss", loss(s)}, {"tokens_per_s", s == 1 ? 1.0 : tokens_per_s},
              {"peak_bytes", 10 * kMiB * static_cast<int64_t>(ranks.size() == 1 ? 2 : 1)},
              {"comm_bytes_sent", ranks.front().sent}}
                 .dump()
      << "\n";
  f << json{{"type", "val"}, {"step", steps}, {"val_loss", loss(steps) + 0.25}}.dump() << "\n";
  for (size_t r = 0; r < ranks.size(); ++r)
    f << json{{"type", "memory"},
              {"rank", r},
              {"world_size", ranks.size()},
              {"coords", ranks.size() > 1 ? "tsp=" + std::to_string(r) : ""},
              {"peak_bytes", {{"weights", ranks[r].weights}, {"activations", ranks[r].activations}}},
              {"peak_rss_bytes", ranks[r].rss},
              {"bytes_sent_per_step", ranks[r].sent}}
                 .dump()
      << "\n";
}

TEST(CompareCli, PrintsLossesSpeedAndMemorySideBySide) {
  ScratchDir dir;
  auto base = [](int64_t s) { return 5.0 - 0.01 * static_cast<double>(s); };
  // The second run equals the reference through step 19 (2e-6 apart: 4e-7 relative), then 0.01.
  write_run(dir / "a.jsonl", 30, base, 1000, {{4 * kMiB, 8 * kMiB, 60 * kMiB, 0}});
  write_run(dir / "b.jsonl", 30, [&](int64_t s) { return base(s) + (s < 20 ? 2e-6 : 1e-2); }, 1500,
            {{2 * kMiB, 4 * kMiB, 40 * kMiB, 3 * kMiB}, {3 * kMiB, 4 * kMiB, 41 * kMiB, 5 * kMiB}});
  const std::string out = compare({"ref=" + (dir / "a.jsonl").string(), "two=" + (dir / "b.jsonl").string()});

  // Loss rows: reference, other, |diff| (printed with 6 decimals / 2 significant digits).
  const auto s1 = row_numbers(out, "step 1 ");
  ASSERT_EQ(s1.size(), 3u);  // reference, other, |diff|
  EXPECT_NEAR(s1[0], base(1), 5e-7);
  EXPECT_NEAR(s1[2], 2e-6, 0.05e-6);
  const auto s20 = row_numbers(out, "step 20 ");
  ASSERT_GE(s20.size(), 3u);
  EXPECT_NEAR(s20[2], 1e-2, 0.05e-2);
  EXPECT_NE(out.find("two: equal to ref within 1e-5 relative through step 19;"), std::string::npos) << out;
  const auto val = row_numbers(out, "val_loss at step 30");
  ASSERT_EQ(val.size(), 2u);
  EXPECT_NEAR(val[0], base(30) + 0.25, 5e-7);

  // Speed: medians skip step 1 (1 token/s there), the ratio is 1.5.
  const auto tps = row_numbers(out, "tokens/s (median, steps 2..)");
  ASSERT_EQ(tps.size(), 2u);
  EXPECT_EQ(tps[0], 1000);
  EXPECT_EQ(tps[1], 1500);
  const auto ratio = row_numbers(out, "vs ref");
  ASSERT_EQ(ratio.size(), 2u);
  EXPECT_NEAR(ratio[1], 1.5, 0.005);
  const auto sent = row_numbers(out, "MiB sent per step (largest rank)");
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_NEAR(sent[1], 5.0, 0.005);

  // Memory: the largest rank of each run and its ratio to the reference.
  const auto w = row_numbers(out, "weights");
  ASSERT_EQ(w.size(), 3u);
  EXPECT_NEAR(w[0], 4.0, 0.005);
  EXPECT_NEAR(w[1], 3.0, 0.005);
  EXPECT_NEAR(w[2], 0.75, 0.005);
  const auto act = row_numbers(out, "activations");
  ASSERT_EQ(act.size(), 3u);
  EXPECT_NEAR(act[2], 0.5, 0.005);
  const auto rss = row_numbers(out, "process peak RSS");
  ASSERT_EQ(rss.size(), 2u);
  EXPECT_NEAR(rss[1], 41.0, 0.05);
}

TEST(CompareCli, RefusesUnreadableOrMismatchedRuns) {
  ScratchDir dir;
  auto loss = [](int64_t s) { return 3.0 / static_cast<double>(s); };
  write_run(dir / "a.jsonl", 10, loss, 100, {{kMiB, kMiB, kMiB, 0}});
  write_run(dir / "short.jsonl", 8, loss, 100, {{kMiB, kMiB, kMiB, 0}});
  std::ofstream(dir / "empty.jsonl") << json{{"type", "val"}, {"step", 1}, {"val_loss", 1.0}}.dump() << "\n";
  std::ofstream(dir / "bad.jsonl") << "{not json\n";
  const std::string a = (dir / "a.jsonl").string();
  auto fails_with = [&](const std::string& other, const std::string& needle) {
    std::vector<const char*> argv{"tsp", "compare", a.c_str(), other.c_str()};
    std::ostringstream out, err;
    try {
      run_cli(4, argv.data(), out, err);
      ADD_FAILURE() << "no error for " << other;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  fails_with((dir / "missing.jsonl").string(), "cannot open metrics file");
  fails_with((dir / "short.jsonl").string(), "compare runs of the same steps");
  fails_with((dir / "empty.jsonl").string(), "holds no \"train\" records");
  fails_with((dir / "bad.jsonl").string(), "bad.jsonl:1: not a JSON object");
}

TEST(CompareCli, TrainingWritesOneMemoryRecordThatCompareReads) {
  ScratchDir dir;
  const std::string metrics = (dir / "m.jsonl").string();
  const std::vector<std::string> args{"tsp",   "train", "--preset", "tiny", "--steps", "3",  "--batch", "2",
                                      "--seq", "16",    "--warmup", "1",    "--eval-batches", "1", "--metrics", metrics};
  std::vector<const char*> argv;
  for (const auto& s : args) argv.push_back(s.c_str());
  std::ostringstream out, err;
  ASSERT_EQ(run_cli(static_cast<int>(argv.size()), argv.data(), out, err), 0) << err.str();
  std::ifstream in(metrics);
  std::string line;
  int memory_records = 0;
  while (std::getline(in, line)) {
    const json j = json::parse(line);
    if (j.at("type") != "memory") continue;
    ++memory_records;
    EXPECT_EQ(j.at("rank"), 0);
    EXPECT_EQ(j.at("world_size"), 1);
    // The tiny preset's fp32 weights: 1.13 M parameters, 4 bytes each, all live at the peak.
    EXPECT_GT(j.at("peak_bytes").at("weights").get<int64_t>(), 4'000'000);
    EXPECT_GT(j.at("peak_bytes").at("activations").get<int64_t>(), 0);
    EXPECT_GE(j.at("peak_rss_bytes").get<int64_t>(), j.at("peak_bytes").at("weights").get<int64_t>());
  }
  EXPECT_EQ(memory_records, 1);
  // A run compared with itself: equal at every step, ratio 1.
  const std::string self = compare({"a=" + metrics, "b=" + metrics});
  EXPECT_NE(self.find("b: equal to a within 1e-5 relative through step 3\n"), std::string::npos) << self;
}

}  // namespace
}  // namespace tsp::cli
