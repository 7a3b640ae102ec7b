#include "tsp/cli/commands.h"

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <vector>

#include <CLI/CLI.hpp>

#include "tsp/cli/bench_command.h"
#include "tsp/cli/compare_command.h"
#include "tsp/cli/plot_command.h"
#include "tsp/cli/data_command.h"
#include "tsp/core/cpu_target.h"
#include "tsp/cli/generate_command.h"
#include "tsp/cli/int_range.h"
#include "tsp/cli/plan_command.h"
#include "tsp/cli/tokenizer_command.h"
#include "tsp/comm/mesh.h"
#include "tsp/comm/mpi_environment.h"
#include "tsp/core/available_memory.h"
#include "tsp/comm/watchdog.h"
#include "tsp/core/check.h"
#include "tsp/core/checkpoint_history.h"
#include "tsp/data/batch_loader.h"
#include "tsp/model/hf_checkpoint.h"
#include "tsp/model/model_weights.h"
#include "tsp/model/transformer.h"
#include "tsp/train/data_source.h"
#include "tsp/train/metrics.h"
#include "tsp/train/run_config.h"
#include "tsp/train/train_state.h"
#include "tsp/train/trainer.h"
#include "tsp/train/memory_check.h"
#include "tsp/train/preemption.h"

namespace tsp::cli {

namespace {

namespace fs = std::filesystem;

// Every RunConfig field becomes one flag, with its default and help, from the single field list.
void add_run_config_flags(CLI::App& cmd, train::RunConfig& run) {
#define TSP_ADD_FLAG_(type, member, flag, def, help)                                  \
  if constexpr (std::is_same_v<type, bool>) {                                         \
    cmd.add_flag("--" flag, run.member, help);                                        \
  } else {                                                                            \
    CLI::Option* opt = cmd.add_option("--" flag, run.member, help)->capture_default_str(); \
    if constexpr (std::is_same_v<type, int64_t>) {                                    \
      const train::FlagRange r = train::run_flag_range(flag);                         \
      opt->check(int_range(r.lo, r.hi));                                              \
    }                                                                                 \
  }
  TSP_RUN_CONFIG_FIELDS(TSP_ADD_FLAG_)
#undef TSP_ADD_FLAG_
}

// `tsp train --layout tsp` under mpirun: MPI is initialised here (single-rank runs never touch
// it). Any error on any rank prints "rank R: <message>" and aborts the whole job, so no rank is
// left waiting in a collective.
int cmd_train_distributed(const train::RunConfig& run, bool skip_memory_check, std::ostream& out) {
  comm::MpiEnvironment env(nullptr, nullptr);
  // After MPI_Init, so these handlers replace any the MPI library installed.
  const train::PreemptionGuard preemption;
  int rc = 0;
  try {
    comm::Communicator world = comm::Communicator::world();
    static_assert(train::RunConfig{}.comm_timeout == comm::kDefaultCommTimeoutS);
    const comm::CommWatchdog watchdog(world, run.comm_timeout);  // outlives every collective below
    const model::ModelConfig config = train::model_config_for_run(run);
    comm::Mesh mesh(world, train::mesh_degrees_for(run));
    train::validate_distributed_run(config, run, mesh.degrees());
    if (!skip_memory_check) {
      // Ranks on one host share its MemAvailable and cgroup: compare their sum.
      const std::vector<std::string> hosts = comm::gather_host_names(world);
      const auto local = std::count(hosts.begin(), hosts.end(), hosts[static_cast<size_t>(mesh.world_rank())]);
      train::check_memory_fits(config, run, local, available_memory());
    }
    const bool leader = mesh.world_rank() == 0;
    std::ostringstream host_map;
    comm::log_rank_host_map(mesh, host_map);
    const auto tokenizer = train::tokenizer_for_data(run.data, run.init, config.vocab_size());
    const train::TrainData data = train::open_train_data(run.data, config.vocab_size(), tokenizer.get());
    if (leader) {
      out << host_map.str();
      out << data.summary_line() << std::endl;
    }
    train::Trainer trainer(mesh, config, run, data, {.log = leader ? &out : nullptr});
    trainer.run();
    // Every rank agreed on the same signal at the same step (and saved together).
    if (trainer.preempted_signal() != 0) rc = train::kPreemptedExitCode;
  } catch (const std::exception& e) {
    out.flush();
    comm::abort_job(one_line_message(e.what()));
  }
  return rc;
}

int cmd_train(train::RunConfig run, bool skip_memory_check, std::ostream& out) {
  if (!run.resume.empty() && !fs::is_directory(run.resume)) {
    TSP_THROW(IoError, "--resume: checkpoint directory ", run.resume, " does not exist");
  }
  // Without --checkpoint-dir a resume saves where it resumed from: a plain checkpoint directory is
  // replaced; a run directory (or a step directory of one) continues its history with the saved
  // --keep-checkpoints unless one is given.
  if (!run.resume.empty() && run.checkpoint_dir.empty()) {
    if (const auto run_dir = checkpoint_run_dir_of(run.resume)) {
      run.checkpoint_dir = run_dir->string();
      if (run.keep_checkpoints == 0) {
        const fs::path state = resolve_checkpoint_dir(run.resume) / train::kTrainStateFileName;
        if (fs::exists(state)) run.keep_checkpoints = train::read_train_state_info(state).run.keep_checkpoints;
        if (run.keep_checkpoints == 0) run.keep_checkpoints = 1;
      }
    } else {
      run.checkpoint_dir = run.resume;
    }
  }
  run.expand_layout_name();
  run.validate();
  if (!run.init.empty() && !fs::is_directory(run.init)) {
    TSP_THROW(IoError, "--init: checkpoint directory ", run.init, " does not exist");
  }
  train::tokenizer_files_of(run.init, run.data);  // the tokenizer checkpoints will carry: refused now, not at a save
  if (run.layout != "single") return cmd_train_distributed(run, skip_memory_check, out);
  const model::ModelConfig config = train::model_config_for_run(run);
  if (!skip_memory_check) train::check_memory_fits(config, run, 1, available_memory());
  const auto tokenizer = train::tokenizer_for_data(run.data, run.init, config.vocab_size());
  const train::TrainData data = train::open_train_data(run.data, config.vocab_size(), tokenizer.get());
  out << data.summary_line() << std::endl;
  const train::PreemptionGuard preemption;
  train::Trainer trainer(config, run, data, {.log = &out});
  trainer.run();
  return trainer.preempted_signal() != 0 ? train::kPreemptedExitCode : 0;
}

struct EvalOptions {
  std::string checkpoint;
  std::string data;      // empty: the run's data, else "fortunes"
  int64_t batches = 0;   // 0: the run's --eval-batches, else 8
  int64_t batch = 0;     // 0: the run's --batch, else 16
  int64_t seq = 0;       // 0: the run's --seq, else 128
};

int cmd_eval(const EvalOptions& o, std::ostream& out) {
  if (!fs::is_directory(o.checkpoint)) {
    TSP_THROW(IoError, "--checkpoint: checkpoint directory ", o.checkpoint, " does not exist");
  }
  const fs::path dir = resolve_checkpoint_dir(o.checkpoint);  // a run directory: its latest
  const model::HfCheckpoint ckpt(dir);
  const model::ModelConfig& config = ckpt.config();
  // Settings of the run that wrote the checkpoint, when it is a tsp checkpoint.
  train::RunConfig run;
  int64_t step = 0;
  const fs::path state = dir / train::kTrainStateFileName;
  if (fs::exists(state)) {
    const train::TrainStateInfo info = train::read_train_state_info(state);
    run = info.run;
    step = info.step;
  }
  if (!o.data.empty()) run.data = o.data;
  if (o.batches > 0) run.eval_batches = o.batches;
  if (o.batch > 0) run.batch = o.batch;
  if (o.seq > 0) run.seq = o.seq;
  TSP_CHECK(o.batches >= 0 && o.batch >= 0 && o.seq >= 0, "--batches, --batch and --seq must be >= 0");
  TSP_CHECK(run.seq <= config.max_position_embeddings(), "--seq ", run.seq,
            " exceeds the model's max_position_embeddings ", config.max_position_embeddings());

  const DType dtype = config.compute_dtype();
  train::check_weights_fit(config, dtype, available_memory());
  model::ModelWeights weights(config, dtype, MemCategory::weights);
  for (const auto& [name, t] : weights.named()) ckpt.read_into(name, t);
  const auto tokenizer = train::tokenizer_for_data(run.data, dir.string(), config.vocab_size());
  const train::TrainData data = train::open_train_data(run.data, config.vocab_size(), tokenizer.get());
  const train::RunData split = train::prepare_run_data(data, run.val_fraction, run.seq, config.vocab_size());
  out << "model: " << config.summary() << " dtype=" << dtype
      << (dtype != config.torch_dtype() ? " (stored " + model::torch_dtype_name(config.torch_dtype()) + ", widened)" : "")
      << " from " << dir.string() << std::endl;
  out << "data: " << data.description << ", validation split " << split.val->size() << " tokens" << std::endl;
  model::Transformer model(config, {.dtype = dtype});
  train::EvalMetrics m = train::evaluate_loss(model, weights, *split.val, run.batch, run.seq, run.eval_batches);
  m.step = step;
  out << train::format_eval_line(m) << std::endl;
  return 0;
}

}  // namespace

std::string one_line_message(const std::string& what) {
  std::string s = what;
  const size_t at = s.rfind(" failed at ");
  const size_t open = s.rfind(" [", at);
  if (at != std::string::npos && open != std::string::npos && !s.empty() && s.back() == ']') s.erase(open);
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

int run_cli(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  CLI::App app{"tsp: train and evaluate Llama-style transformers on the CPU", "tsp"};
  app.require_subcommand(1);
  app.failure_message(CLI::FailureMessage::simple);

  train::RunConfig run;
  CLI::App* train_cmd = app.add_subcommand("train", "train a model (a preset, --config or --init) on --data");
  add_run_config_flags(*train_cmd, run);
  // Not a RunConfig field: it changes no result and is not saved with the run.
  bool skip_memory_check = false;
  train_cmd->add_flag("--skip-memory-check", skip_memory_check,
                      "start even when the predicted per-rank memory exceeds what this host has available");

  EvalOptions eval;
  CLI::App* eval_cmd = app.add_subcommand("eval", "validation loss of a checkpoint on the held-out split of --data");
  eval_cmd->add_option("--checkpoint", eval.checkpoint, "checkpoint directory (tsp or plain Hugging Face Llama)")
      ->required();
  eval_cmd->add_option("--data", eval.data, "'fortunes', a token file (.tok, llm.c or nanoGPT .bin), a manifest or its directory, a comma list "
                       "or a blend 'a:0.7,b:0.3' (default: the training run's data)");
  // Ranges as `tsp train`'s --eval-batches, --batch and --seq; left out, the run's values apply.
  const auto range_of = [](std::string_view flag) {
    const train::FlagRange r = train::run_flag_range(flag);
    return int_range(r.lo, r.hi);
  };
  eval_cmd->add_option("--batches", eval.batches, "validation batches (default: the run's --eval-batches, else 8)")
      ->check(range_of("eval-batches"));
  eval_cmd->add_option("--batch", eval.batch, "sequences per batch (default: the run's --batch, else 16)")
      ->check(range_of("batch"));
  eval_cmd->add_option("--seq", eval.seq, "tokens per sequence (default: the run's --seq, else 128)")
      ->check(range_of("seq"));
  GenerateArgs generate;
  CLI::App* generate_cmd = add_generate_command(app, generate);
  PlanArgs plan;
  CLI::App* plan_cmd = add_plan_command(app, plan);
  BenchArgs bench;
  CLI::App* bench_cmd = add_bench_command(app, bench);
  CompareArgs compare;
  CLI::App* compare_cmd = add_compare_command(app, compare);
  PlotArgs plot;
  CLI::App* plot_cmd = add_plot_command(app, plot);
  TokenizerArgs tokenizer;
  CLI::App* tokenizer_cmd = add_tokenizer_command(app, tokenizer);
  DataArgs data_args;
  CLI::App* data_cmd = add_data_command(app, data_args);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e, out, err);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e, out, err);
  } catch (const CLI::ParseError& e) {
    err << "tsp: error: " << one_line_message(e.what()) << " (see 'tsp --help')" << std::endl;
    return 2;
  }
  if (train_cmd->parsed()) return cmd_train(run, skip_memory_check, out);
  if (eval_cmd->parsed()) return cmd_eval(eval, out);
  if (generate_cmd->parsed()) return run_generate(generate, out);
  if (plan_cmd->parsed()) return run_plan(plan, out);
  if (bench_cmd->parsed()) return run_bench(bench, out);
  if (compare_cmd->parsed()) return run_compare(compare, out);
  if (plot_cmd->parsed()) return run_plot(plot, out);
  if (tokenizer_cmd->parsed()) return run_tokenizer(tokenizer, std::cin, out);
  if (data_cmd->parsed()) return run_data(data_args, out, err);
  return 2;
}

int guarded_main(int argc, char** argv) {
  // Before any thread exists: stop signals go to one thread that never runs compute code.
  train::route_stop_signals_to_one_thread();
  try {
    check_cpu_runs_build_target();
    return run_cli(argc, argv, std::cout, std::cerr);
  } catch (const Error& e) {
    std::cout.flush();
    std::cerr << "tsp: error: " << one_line_message(e.what()) << std::endl;
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << "tsp: error: " << one_line_message(e.what()) << std::endl;
  }
  return 1;
}

}  // namespace tsp::cli
