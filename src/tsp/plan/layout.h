// A parallel layout: which scheme shards the model (tsp, tp, sp, tp+sp, dp, fsdp-sp) and the
// degree of every mesh axis, with parsing ("dp128xtsp8"), naming and the divisibility rules.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tsp/model/model_config.h"
#include "tsp/plan/workload.h"

namespace tsp::plan {

// Mesh axes in comm::MeshAxis order, outermost to innermost: world ranks are mixed-radix numbers
// with tsp fastest, so a tsp (or tp) group is made of consecutive ranks (src/tsp/comm/mesh.h).
enum class Axis : uint8_t { dp, pp, sp, tp, tsp };
inline constexpr std::array<Axis, 5> kAxes = {Axis::dp, Axis::pp, Axis::sp, Axis::tp, Axis::tsp};
std::string_view axis_name(Axis axis);  // "dp", "pp", "sp", "tp", "tsp" (as comm::mesh_axis_name)

enum class LayoutKind : uint8_t { tsp, tp, sp, tp_sp, dp, fsdp_sp };
std::string_view layout_kind_name(LayoutKind kind);  // "tsp", "tp", "sp", "tp+sp", "dp", "fsdp-sp"

// Degrees of every axis. FSDP-over-SP runs on the sp axis (tokens sharded as SP, weights sharded
// over the same ranks). Every kind composes with dp (outermost) and pp.
struct Layout {
  LayoutKind kind = LayoutKind::dp;
  int64_t dp = 1, pp = 1, tp = 1, sp = 1, tsp = 1;

  int64_t degree(Axis axis) const;
  int64_t devices() const { return dp * pp * tp * sp * tsp; }
  // Ranks that share one micro-batch of one pipeline stage (the model-parallel group).
  int64_t model_parallel() const { return tp * sp * tsp; }
  // Ranks among which every sequence's tokens are split (zigzag): tsp * sp.
  int64_t token_shards() const { return tsp * sp; }
  // Ranks among which each weight matrix is split: tsp for TSP, tp for TP, sp for FSDP-SP.
  int64_t weight_shards() const;
  // Canonical name: "tsp8", "tp4xsp2", "fsdp-sp8", "dp8", "dp128xtsp8", "dp2xpp2xtp4".
  std::string name() const;

  friend bool operator==(const Layout&, const Layout&) = default;
};

// Convenience constructors (degrees >= 1; the model-parallel part on one axis or two).
Layout tsp_layout(int64_t tsp, int64_t dp = 1, int64_t pp = 1);
Layout tp_layout(int64_t tp, int64_t dp = 1, int64_t pp = 1);
Layout sp_layout(int64_t sp, int64_t dp = 1, int64_t pp = 1);
Layout tp_sp_layout(int64_t tp, int64_t sp, int64_t dp = 1, int64_t pp = 1);
Layout dp_layout(int64_t dp, int64_t pp = 1);
Layout fsdp_sp_layout(int64_t sp, int64_t dp = 1, int64_t pp = 1);

// Parses a name: axis tokens <axis><degree> in any order, optionally separated by 'x', '*' or
// '.', axis one of dp, pp, tsp, tp, sp, fsdp-sp (e.g. "tsp8", "tp4sp2", "dp128xtsp8"). The kind
// follows from the tokens: fsdp-sp, tsp, tp+sp (both > 1), tp, sp, else dp. Throws
// InvalidArgument naming the text (unknown axis, missing or zero degree, repeated axis, tsp mixed
// with tp/sp/fsdp-sp).
Layout parse_layout(std::string_view text);

// Throws InvalidArgument unless every degree is >= 1 and the degrees fit the kind (a TSP layout
// has tp = sp = 1, a TP layout sp = 1, ...).
void validate(const Layout& layout);

// Why the model or the sequence cannot be split this way, one sentence each ("32 attention heads
// are not divisible by tsp=3"); empty when the layout is valid for them. Rules: weight sharding
// over n ranks by heads/inner dim/vocabulary needs H, H_kv, F, V divisible by n (TSP, TP); the
// zigzag token split over n ranks needs S divisible by 2n (TSP, SP, FSDP-SP); pp needs L % pp == 0.
std::vector<std::string> divisibility_problems(const model::ModelConfig& config,
                                               const Workload& work, const Layout& layout);
// Throws InvalidArgument "layout tsp4 does not fit: <problems joined by '; '>" when there are any.
void require_divisible(const model::ModelConfig& config, const Workload& work, const Layout& layout);

}  // namespace tsp::plan
