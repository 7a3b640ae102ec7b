// RunConfig: the settings of one training or evaluation run (data, batch, schedule, optimizer,
// checkpoints), each field declared exactly once in TSP_RUN_CONFIG_FIELDS with its command-line
// flag, default and help text. The CLI, the JSON saved in checkpoints and the docs iterate it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tsp/core/dtype.h"
#include "tsp/core/layout_spec.h"
#include "tsp/kernels/adamw.h"

namespace tsp::train {

// X(type, member, "flag", default, "help"). type is one of int64_t, double, bool, std::string.
// Adding a field here adds a `tsp train` flag (the --help golden test makes that a reviewed
// decision) and a key of the run config saved in every training-state file.
#define TSP_RUN_CONFIG_FIELDS(X)                                                                    \
  X(std::string, preset, "preset", "tiny", "model preset: tiny, tiny-gqa, small, medium, 7b")       \
  X(std::string, config, "config", "", "model config.json file (replaces --preset)")                \
  X(std::string, init, "init", "", "start from the weights of this Hugging Face Llama checkpoint "  \
    "directory (its config.json replaces --preset)")                                              \
  X(std::string, data, "data", "fortunes", "'fortunes' (the demo corpus, byte tokenizer), a token " \
    "file (.tok, llm.c or nanoGPT .bin), a manifest.json or its directory, a comma list (one "      \
    "stream) or a blend 'a:0.7,b:0.3' (docs/training.md)")                                          \
  X(double, val_fraction, "val-fraction", 0.1, "fraction of the tokens held out for validation")    \
  X(int64_t, steps, "steps", 200, "total optimizer steps of the run")                               \
  X(int64_t, batch, "batch", 16, "sequences per optimizer step (the global batch)")                 \
  X(int64_t, seq, "seq", 128, "tokens per sequence")                                                \
  X(int64_t, grad_accum, "grad-accum", 1, "micro-batches per step (must divide --batch)")           \
  X(double, lr, "lr", 3e-3, "peak learning rate")                                                   \
  X(double, min_lr, "min-lr", 3e-4, "learning rate at the end of the cosine decay")                 \
  X(int64_t, warmup, "warmup", 20, "linear warmup steps")                                           \
  X(double, weight_decay, "weight-decay", 0.1, "AdamW weight decay (matrices only, not norm gains)") \
  X(double, adam_eps, "adam-eps", 1e-8, "AdamW epsilon (added to sqrt of the second moment)")        \
  X(double, clip, "clip", 1.0, "clip the gradient's global L2 norm to this (0: off)")               \
  X(std::string, dtype, "dtype", "f32", "weight and activation dtype: f32 or bf16 (fp32 masters)")  \
  X(bool, recompute, "recompute", false, "recompute each block's activations in the backward")      \
  X(std::string, layout, "layout", "single", "parallel layout: single (one process); under mpirun "  \
    "tsp, tp, sp, tp+sp, dp or fsdp-sp with the degree flags, or a name such as dp2xtsp2 (-np = " \
    "product of the degrees)")                           \
  X(int64_t, tsp, "tsp", 1, "TSP degree: ranks sharing every weight and every sequence (--layout "  \
    "tsp)")                                                                                       \
  X(int64_t, tp, "tp", 1, "tensor-parallel degree (--layout tp, tp+sp)")                          \
  X(int64_t, sp, "sp", 1, "sequence-parallel degree (--layout sp, tp+sp; the FSDP degree of "      \
    "fsdp-sp)")                                                                                   \
  X(int64_t, dp, "dp", 1, "data-parallel replicas of the layout (any distributed layout)")        \
  X(int64_t, pp, "pp", 1, "pipeline stages of any distributed layout (must divide the layers; "    \
    "--grad-accum micro-batches fill the pipeline, 1F1B)")                                         \
  X(int64_t, seed, "seed", 1234, "seed of the initialisation and of the data order")                \
  X(int64_t, eval_every, "eval-every", 0, "validation loss every N steps (0: only at the end)")      \
  X(int64_t, eval_batches, "eval-batches", 8, "batches of the held-out split per validation")      \
  X(std::string, checkpoint_dir, "checkpoint-dir", "", "checkpoint directory (empty: no checkpoint)") \
  X(int64_t, save_every, "save-every", 0, "checkpoint every N steps (0: only at the end)")           \
  X(int64_t, keep_checkpoints, "keep-checkpoints", 0, "keep the last K checkpoints as step-NNNNNN/ " \
    "directories of --checkpoint-dir with a 'latest' file (0: one checkpoint, replaced by each save)") \
  X(std::string, resume, "resume", "", "resume exactly from this checkpoint, step or run directory "  \
    "(a run directory resumes its latest checkpoint)")                                            \
  X(std::string, metrics, "metrics", "", "append JSON-lines metrics to this file")               \
  X(int64_t, log_every, "log-every", 1, "print the progress line every N steps (the last always)") \
  X(double, comm_timeout, "comm-timeout", 600.0, "under mpirun: seconds a rank may wait in one "     \
    "communication call before every rank is aborted with exit code 124 (0: off)")

struct RunConfig {
#define TSP_RUN_CONFIG_MEMBER_(type, member, flag, def, help) type member = def;
  TSP_RUN_CONFIG_FIELDS(TSP_RUN_CONFIG_MEMBER_)
#undef TSP_RUN_CONFIG_MEMBER_

  // Throws InvalidArgument naming the flag and the value (e.g. "--grad-accum 3 does not divide
  // --batch 16").
  void validate() const;
  DType model_dtype() const { return parse_dtype(dtype); }
  // The layout --layout and the degree flags name (core/layout_spec: the one parser).
  LayoutSpec layout_spec() const;
  // Writes a layout into --layout and the degree flags (kind name + degrees), the form every
  // consumer of a RunConfig and the saved run config read: `--layout dp2xtsp2` becomes
  // `--layout tsp --tsp 2 --dp 2`. Pipeline degrees (pp) are refused.
  void set_layout(const LayoutSpec& spec);
  // set_layout(layout_spec()) when --layout holds a layout name rather than a kind.
  void expand_layout_name();
  // Rows of one micro-batch of one data-parallel replica.
  int64_t micro_batch() const { return batch / (dp * grad_accum); }

  friend bool operator==(const RunConfig&, const RunConfig&) = default;
};

// The valid range of an integer field, by flag name ("steps"): the CLI refuses text outside it and
// validate() checks it. Flags without an entry (non-integers, or an integer added without one)
// get [0, 2^63-1].
struct FlagRange {
  int64_t lo = 0, hi = INT64_MAX;
};
FlagRange run_flag_range(std::string_view flag);

// The optimizer of the run: --adam-eps and --weight-decay over AdamWConfig's defaults (the one
// conversion, whatever the layout).
kernels::AdamWConfig adamw_config(const RunConfig& run);

// JSON object text with one key per field (the member name), sorted keys.
std::string run_config_to_json(const RunConfig& config);
// Inverse; unknown keys -> InvalidArgument; missing keys keep their defaults (older states).
RunConfig run_config_from_json(std::string_view json_text);

// The fields that decide which tokens each step sees and how the update computes (--val-fraction,
// --batch, --seq, --seed, --dtype, --weight-decay, --adam-eps, --clip; --data is compared by
// content, resume_check.h): "--seq 16 (checkpoint) vs 8 (now)" per difference.
std::vector<std::string> data_and_math_differences(const RunConfig& saved, const RunConfig& now);

}  // namespace tsp::train
