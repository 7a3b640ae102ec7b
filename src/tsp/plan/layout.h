// The divisibility rules of every layout for a model and a workload (heads, sequence and layers
// divisible by the degrees); the layout type and its names are core/layout_spec.h.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tsp/core/layout_spec.h"
#include "tsp/model/model_config.h"
#include "tsp/plan/workload.h"

namespace tsp::plan {

// The planner speaks of the engine's one layout type (core/layout_spec.h) under its own names.
using Layout = LayoutSpec;
using Axis = LayoutAxis;
inline constexpr const auto& kAxes = kLayoutAxes;
using tsp::LayoutKind;

// Why the model or the sequence cannot be split this way, one sentence each ("32 attention heads
// are not divisible by tsp=3"); empty when the layout is valid for them. Rules: weight sharding
// over n ranks by heads/inner dim/vocabulary needs H, H_kv, F, V divisible by n (TSP, TP); the
// zigzag token split over n ranks needs S divisible by 2n (TSP, SP, FSDP-SP); pp needs L % pp == 0.
std::vector<std::string> divisibility_problems(const model::ModelConfig& config,
                                               const Workload& work, const Layout& layout);
// Throws InvalidArgument "layout tsp4 does not fit: <problems joined by '; '>" when there are any.
void require_divisible(const model::ModelConfig& config, const Workload& work, const Layout& layout);

}  // namespace tsp::plan
