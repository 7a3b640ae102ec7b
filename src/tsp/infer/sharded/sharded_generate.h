// Generation on every rank of a TSP or TP group: generate()'s one loop (generate.h) over the
// sharded decoders, and loading this rank's weight shards from a Hugging Face checkpoint.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "tsp/comm/communicator.h"
#include "tsp/core/layout_spec.h"
#include "tsp/infer/generate.h"
#include "tsp/parallel/tp_weights.h"

namespace tsp::infer {

// Collective over `comm`. generate() (generate.h) with TspDecoder (tsp_decode.h) when `layout` is
// tsp or TpDecoder (tp_decode.h) when it is tp, on this rank's shards `w` (degree comm.size()):
// the same checks, messages, sampling and streaming. Every rank returns the same tokens; pass
// on_token on one rank to print them. Stats are this rank's: kv_cache_capacity is its slots per
// sequence and kv_cache_bytes its KvCache::bytes(). options.capacity, when given, is in global
// positions per sequence; options.decode.kv_parts splits each rank's local attention.
Generation sharded_generate(LayoutKind layout, comm::Communicator& comm,
                            const parallel::TpWeights& w,
                            const std::vector<std::vector<int32_t>>& prompts,
                            const GenerateOptions& options, const TokenCallback& on_token = {});

// Not collective: `layout` is tsp or tp (they share the weight partition and differ in the KV
// cache and the decode's traffic); this rank's shards of degree `degree` (TpWeights, the partition TSP and TP
// share) read from an HF checkpoint directory in its storage dtype; each rank reads only its
// pieces (parallel::load_shards_from_hf). Errors, before the weights are allocated where
// possible: a missing directory (IoError "checkpoint directory DIR does not exist"), missing or
// corrupt files (model::HfCheckpoint's IoError naming the file), sizes not divisible by the degree
// (InvalidArgument naming the size and the layout's degree, "tsp: ..." or "tp: ...").
parallel::TpWeights load_weight_shards(const std::filesystem::path& dir, int degree, int rank,
                                        LayoutKind layout = LayoutKind::tsp);

}  // namespace tsp::infer
