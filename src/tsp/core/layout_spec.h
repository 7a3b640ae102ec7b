// LayoutSpec: the one description of a parallel layout (its scheme and the degree of every mesh
// axis), with the one name parser ("tsp8", "tp4xsp2", "dp2xtsp2xpp2") that train, bench, plan and infer share.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace tsp {

// Mesh axes, outermost to innermost (the order of comm::MeshAxis): world ranks are mixed-radix
// numbers with tsp fastest, so a tsp (or tp) group is made of consecutive ranks (comm/mesh.h).
enum class LayoutAxis : uint8_t { dp, pp, sp, tp, tsp };
inline constexpr std::array<LayoutAxis, 5> kLayoutAxes = {LayoutAxis::dp, LayoutAxis::pp, LayoutAxis::sp,
                                                          LayoutAxis::tp, LayoutAxis::tsp};
std::string_view axis_name(LayoutAxis axis);  // "dp", "pp", "sp", "tp", "tsp"

// The scheme that shards one model replica. dp is the replicated model (one rank of it is the
// single-rank run); every kind composes with dp (outermost) and pp.
enum class LayoutKind : uint8_t { tsp, tp, sp, tp_sp, dp, fsdp_sp };
std::string_view layout_kind_name(LayoutKind kind);  // "tsp", "tp", "sp", "tp+sp", "dp", "fsdp-sp"

// FSDP-over-SP runs on the sp axis (tokens sharded as SP, weights sharded over the same ranks).
struct LayoutSpec {
  LayoutKind kind = LayoutKind::dp;
  int64_t dp = 1, pp = 1, tp = 1, sp = 1, tsp = 1;

  int64_t degree(LayoutAxis axis) const;
  int64_t devices() const { return dp * pp * tp * sp * tsp; }
  // Ranks that share one micro-batch of one pipeline stage (the model-parallel group).
  int64_t model_parallel() const { return tp * sp * tsp; }
  // Ranks among which every sequence's tokens are split (zigzag): tsp * sp.
  int64_t token_shards() const { return tsp * sp; }
  // Ranks among which each weight matrix is split: tsp for TSP, tp for TP, sp for FSDP-SP.
  int64_t weight_shards() const;
  // Canonical name: "tsp8", "tp4xsp2", "fsdp-sp8", "dp8", "dp128xtsp8", "dp2xpp2xtp4".
  std::string name() const;

  friend bool operator==(const LayoutSpec&, const LayoutSpec&) = default;
};

// Convenience constructors (degrees >= 1; the model-parallel part on one axis or two).
LayoutSpec tsp_layout(int64_t tsp, int64_t dp = 1, int64_t pp = 1);
LayoutSpec tp_layout(int64_t tp, int64_t dp = 1, int64_t pp = 1);
LayoutSpec sp_layout(int64_t sp, int64_t dp = 1, int64_t pp = 1);
LayoutSpec tp_sp_layout(int64_t tp, int64_t sp, int64_t dp = 1, int64_t pp = 1);
LayoutSpec dp_layout(int64_t dp, int64_t pp = 1);
LayoutSpec fsdp_sp_layout(int64_t sp, int64_t dp = 1, int64_t pp = 1);

// Parses a name: axis tokens <axis><degree> in any order, optionally separated by 'x', '*' or
// '.', axis one of dp, pp, tsp, tp, sp, fsdp-sp (e.g. "tsp8", "tp4sp2", "dp128xtsp8"); "single"
// is dp1. The kind follows from the tokens: fsdp-sp, tsp, tp+sp (both > 1), tp, sp, else dp.
// Throws InvalidArgument naming the text (unknown axis, missing or zero degree, repeated axis, tsp
// mixed with tp/sp/fsdp-sp).
LayoutSpec parse_layout(std::string_view text);

// The command-line form: `--layout KIND` with the degree flags (`--layout tsp --tsp 4 --dp 2`), or
// `--layout NAME` alone (`--layout dp2xtsp4`, degree flags left at 1). KIND is single, tsp, tp,
// sp, tp+sp, dp or fsdp-sp; each kind takes only its own degree flags (dp and pp compose with
// every kind but single). Throws InvalidArgument naming the flag that does not fit.
bool is_layout_kind_name(std::string_view text);  // single, tsp, tp, sp, tp+sp, dp, fsdp-sp
struct LayoutFlags {
  std::string layout = "single";
  int64_t tsp = 1, tp = 1, sp = 1, dp = 1, pp = 1;
};
LayoutSpec layout_from_flags(const LayoutFlags& flags);

// Throws InvalidArgument unless every degree is >= 1 and the degrees fit the kind (a TSP layout
// has tp = sp = 1, a TP layout sp = 1, ...).
void validate(const LayoutSpec& layout);

}  // namespace tsp
