// sharded_generate: the sharded decoders plugged into generate()'s loop, and the per-rank
// checkpoint loader.
#include "tsp/infer/sharded/sharded_generate.h"

#include <memory>

#include "tsp/core/check.h"
#include "tsp/infer/tp/tp_decode.h"
#include "tsp/infer/tsp/tsp_decode.h"
#include "tsp/model/hf_checkpoint.h"
#include "tsp/parallel/sharded_checkpoint.h"
#include "tsp/parallel/tp_sp_block.h"

namespace tsp::infer {

Generation sharded_generate(LayoutKind layout, comm::Communicator& comm,
                            const parallel::TpWeights& w,
                            const std::vector<std::vector<int32_t>>& prompts,
                            const GenerateOptions& options, const TokenCallback& on_token) {
  TSP_CHECK(layout == LayoutKind::tsp || layout == LayoutKind::tp, "sharded_generate: layout ",
            layout_kind_name(layout), " has no sharded decoder (tsp or tp)");
  const DecoderFactory make = [&](int64_t batch, int64_t capacity) -> std::unique_ptr<Decoder> {
    if (layout == LayoutKind::tsp)
      return std::make_unique<TspDecoder>(comm, w, batch, capacity, options.decode);
    return std::make_unique<TpDecoder>(comm, w, batch, capacity, options.decode);
  };
  return generate(w.config(), make, prompts, options, on_token);
}

parallel::TpWeights load_weight_shards(const std::filesystem::path& dir, int degree, int rank,
                                        LayoutKind layout) {
  if (!std::filesystem::is_directory(dir)) {
    TSP_THROW(IoError, "checkpoint directory ", dir.string(), " does not exist");
  }
  const model::ModelConfig config = model::HfCheckpoint(dir).config();  // checks the files
  TSP_CHECK(layout == LayoutKind::tsp || layout == LayoutKind::tp, "load_weight_shards: layout ",
            layout_kind_name(layout), " does not decode from weight shards (tsp or tp)");
  if (layout == LayoutKind::tp) parallel::validate_tp_sp(config, degree, 1, 0);
  parallel::TpWeights w(config, config.compute_dtype(), degree, rank, MemCategory::weights);
  parallel::load_shards_from_hf(dir, w.params());
  return w;
}

}  // namespace tsp::infer
