// RunConfig validation and its JSON form, generated from the single field list.
#include "tsp/train/run_config.h"

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>

#include <nlohmann/json.hpp>

#include "tsp/core/check.h"

namespace tsp::train {

using nlohmann::json;

FlagRange run_flag_range(std::string_view flag) {
  constexpr int64_t kSteps = 1'000'000'000;         // steps and step intervals
  constexpr int64_t kDegree = int64_t{1} << 20;     // parallel degrees (as the planner's devices)
  constexpr int64_t kRows = int64_t{1} << 24;       // sequences per batch, micro-batches
  constexpr int64_t kSeq = int64_t{1} << 30;        // ModelConfigLimits::max_position_embeddings
  static const std::pair<std::string_view, FlagRange> kRanges[] = {
      {"steps", {0, kSteps}},        {"batch", {1, kRows}},       {"seq", {1, kSeq}},
      {"grad-accum", {1, kRows}},    {"warmup", {0, kSteps}},     {"tsp", {1, kDegree}},
      {"tp", {1, kDegree}},          {"sp", {1, kDegree}},        {"dp", {1, kDegree}},
      {"pp", {1, kDegree}},          {"seed", {0, INT64_MAX}},    {"eval-every", {0, kSteps}},
      {"eval-batches", {1, kRows}},  {"save-every", {0, kSteps}}, {"log-every", {1, kSteps}},
  };
  for (const auto& [name, range] : kRanges)
    if (name == flag) return range;
  return {};
}

namespace {

template <class T>
void check_flag_range(const T& value, std::string_view flag) {
  if constexpr (std::is_same_v<T, int64_t>) {
    const FlagRange r = run_flag_range(flag);
    TSP_CHECK(value >= r.lo && value <= r.hi, "--", flag, " must lie in [", r.lo, ", ", r.hi, "], got ", value);
  }
}

}  // namespace

void RunConfig::validate() const {
  // Every integer field within its flag's range (a run config read back from a training state
  // passes here too).
#define TSP_CHECK_RANGE_(type, member, flag, def, help) check_flag_range(member, flag);
  TSP_RUN_CONFIG_FIELDS(TSP_CHECK_RANGE_)
#undef TSP_CHECK_RANGE_
  TSP_CHECK(steps >= 0, "--steps must be >= 0, got ", steps);
  TSP_CHECK(batch > 0, "--batch must be > 0, got ", batch);
  TSP_CHECK(seq > 0, "--seq must be > 0, got ", seq);
  TSP_CHECK(grad_accum > 0, "--grad-accum must be > 0, got ", grad_accum);
  TSP_CHECK(batch % grad_accum == 0, "--grad-accum ", grad_accum, " does not divide --batch ", batch);
  TSP_CHECK(std::isfinite(lr) && lr >= 0, "--lr must be finite and >= 0, got ", lr);
  TSP_CHECK(std::isfinite(min_lr) && min_lr >= 0 && min_lr <= lr,
            "--min-lr must lie in [0, --lr ", lr, "], got ", min_lr);
  TSP_CHECK(warmup >= 0, "--warmup must be >= 0, got ", warmup);
  TSP_CHECK(std::isfinite(weight_decay) && weight_decay >= 0, "--weight-decay must be >= 0, got ",
            weight_decay);
  TSP_CHECK(std::isfinite(adam_eps) && adam_eps > 0, "--adam-eps must be > 0, got ", adam_eps);
  TSP_CHECK(std::isfinite(clip) && clip >= 0, "--clip must be >= 0 (0: off), got ", clip);
  TSP_CHECK(dtype == "f32" || dtype == "bf16", "--dtype must be f32 or bf16, got '", dtype, "'");
  TSP_CHECK(seed >= 0, "--seed must be >= 0, got ", seed);
  TSP_CHECK(val_fraction > 0 && val_fraction < 1, "--val-fraction must lie in (0, 1), got ", val_fraction);
  TSP_CHECK(eval_every >= 0, "--eval-every must be >= 0, got ", eval_every);
  TSP_CHECK(eval_batches > 0, "--eval-batches must be > 0, got ", eval_batches);
  TSP_CHECK(log_every > 0, "--log-every must be > 0, got ", log_every);
  TSP_CHECK(save_every >= 0, "--save-every must be >= 0, got ", save_every);
  TSP_CHECK(keep_checkpoints >= 0, "--keep-checkpoints must be >= 0 (0: one checkpoint directory), got ",
            keep_checkpoints);
  TSP_CHECK(keep_checkpoints == 0 || !checkpoint_dir.empty(), "--keep-checkpoints ", keep_checkpoints,
            " needs --checkpoint-dir (the run directory that holds the step directories)");
  TSP_CHECK(!data.empty(), "--data must not be empty");
  TSP_CHECK(std::isfinite(comm_timeout) && comm_timeout >= 0,
            "--comm-timeout must be a number of seconds >= 0 (0: off), got ", comm_timeout);
  (void)layout_spec();  // --layout and the degree flags fit together (core/layout_spec)
  TSP_CHECK(batch % (dp * grad_accum) == 0, "--batch ", batch, " is not divisible by --dp x "
            "--grad-accum = ", dp, " x ", grad_accum, " (each replica takes batch / dp rows in ",
            grad_accum, " micro-batches)");
  TSP_CHECK(init.empty() || resume.empty(), "--init and --resume exclude each other (--resume ",
            "continues a tsp checkpoint, --init starts a new run from HF weights)");
}

LayoutSpec RunConfig::layout_spec() const {
  return layout_from_flags({.layout = layout, .tsp = tsp, .tp = tp, .sp = sp, .dp = dp, .pp = pp});
}

void RunConfig::set_layout(const LayoutSpec& spec) {
  tsp::validate(spec);
  layout = layout_kind_name(spec.kind);  // dp1 stays "dp": `--layout single` is the flag's own
  tsp = spec.tsp, tp = spec.tp, sp = spec.sp, dp = spec.dp, pp = spec.pp;
}

void RunConfig::expand_layout_name() {
  if (!is_layout_kind_name(layout)) set_layout(layout_spec());
}

std::string run_config_to_json(const RunConfig& c) {
  json j = json::object();
#define TSP_RUN_CONFIG_TO_JSON_(type, member, flag, def, help) j[#member] = c.member;
  TSP_RUN_CONFIG_FIELDS(TSP_RUN_CONFIG_TO_JSON_)
#undef TSP_RUN_CONFIG_TO_JSON_
  return j.dump();
}

RunConfig run_config_from_json(std::string_view text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    TSP_THROW(InvalidArgument, "run config is not valid JSON: ", e.what());
  }
  TSP_CHECK(j.is_object(), "run config JSON is not an object");
  RunConfig c;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    bool known = false;
    try {
#define TSP_RUN_CONFIG_FROM_JSON_(type, member, flag, def, help) \
  if (key == #member) {                                          \
    c.member = it.value().get<type>();                           \
    known = true;                                                \
  }
      TSP_RUN_CONFIG_FIELDS(TSP_RUN_CONFIG_FROM_JSON_)
#undef TSP_RUN_CONFIG_FROM_JSON_
    } catch (const json::exception& e) {
      TSP_THROW(InvalidArgument, "run config field '", key, "' has the wrong type: ", e.what());
    }
    TSP_CHECK(known, "run config has an unknown field '", key, "'");
  }
  return c;
}

std::vector<std::string> data_and_math_differences(const RunConfig& a, const RunConfig& b) {
  std::vector<std::string> diffs;
  auto add = [&](const char* flag, const auto& x, const auto& y) {
    if (!(x == y)) {
      std::ostringstream os;
      os << "--" << flag << " " << x << " (checkpoint) vs " << y << " (now)";
      diffs.push_back(os.str());
    }
  };
  // --data is compared by content (resume_check.h's data fingerprint), so a moved file resumes.
  add("val-fraction", a.val_fraction, b.val_fraction);
  add("batch", a.batch, b.batch);
  add("seq", a.seq, b.seq);
  add("seed", a.seed, b.seed);
  add("dtype", a.dtype, b.dtype);
  add("weight-decay", a.weight_decay, b.weight_decay);
  add("adam-eps", a.adam_eps, b.adam_eps);
  add("clip", a.clip, b.clip);
  return diffs;
}

kernels::AdamWConfig adamw_config(const RunConfig& run) {
  kernels::AdamWConfig c;
  c.weight_decay = run.weight_decay;
  c.eps = run.adam_eps;
  return c;
}

}  // namespace tsp::train
