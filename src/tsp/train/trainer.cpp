// Trainer: run_training_loop's host over a Layout on a mesh (one process: the self transport and
// the single layout), with sharded optimizer state and shard-streamed checkpoints.
#include "tsp/train/trainer.h"

#include "tsp/train/data_source.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "tsp/comm/collectives.h"
#include "tsp/comm/self/self_backend.h"
#include "tsp/core/check.h"
#include "tsp/core/checkpoint_history.h"
#include "tsp/core/memory.h"
#include "tsp/data/corpus.h"
#include "tsp/model/hf_checkpoint.h"
#include "tsp/parallel/fsdp_sp_block.h"
#include "tsp/parallel/fsdp_sp_layout.h"
#include "tsp/parallel/sharded_checkpoint.h"
#include "tsp/parallel/sharded_grad.h"
#include "tsp/parallel/single_layout.h"
#include "tsp/parallel/tp_sp_block.h"
#include "tsp/parallel/tp_sp_layout.h"
#include "tsp/parallel/tsp_block.h"
#include "tsp/parallel/tsp_layout.h"
#include "tsp/parallel/tsp_model.h"
#include "tsp/train/lr_schedule.h"
#include "tsp/train/resume_check.h"
#include "tsp/train/sharded_train_state.h"

namespace tsp::train {

namespace {

using Clock = std::chrono::steady_clock;
using comm::MeshAxis;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Exact and deterministic: the values are all-gathered as bit patterns and added in rank order,
// so every rank gets the same doubles (an f32 all-reduce would round the loss sums).
std::vector<double> sum_in_rank_order(comm::Communicator& c, const std::vector<double>& values) {
  const auto n = static_cast<int64_t>(values.size());
  Tensor in = Tensor::empty({n}, DType::i64, MemCategory::workspace);
  std::memcpy(in.raw(), values.data(), values.size() * sizeof(double));
  Tensor all = Tensor::empty({n * c.size()}, DType::i64, MemCategory::workspace);
  comm::all_gather(c, in, all);
  std::vector<double> sum(values.size(), 0.0);
  for (int r = 0; r < c.size(); ++r)
    for (int64_t i = 0; i < n; ++i) {
      double v;
      std::memcpy(&v, all.data<int64_t>() + r * n + i, sizeof v);
      sum[static_cast<size_t>(i)] += v;
    }
  return sum;
}

// Bytes this rank has sent over the mesh's axes and, across pipeline stages, over the layout's
// own replica group (the gradient norm's all-gather runs there).
int64_t bytes_sent(const comm::Mesh& mesh, parallel::Layout& layout) {
  int64_t n = 0;
  for (MeshAxis a : comm::kMeshAxes) n += mesh.axis(a).ledger().total().bytes_sent;
  if (layout.stage().pipelined()) n += layout.replica_group().ledger().total().bytes_sent;
  return n;
}


// Runs `check` on the ranks where `mine` is true and makes a failure everyone's: after one
// all-gather of (failed, message length) the first failing rank broadcasts its message, and every
// rank throws the same exception type with the same message (no rank is left waiting). Alone,
// the check's own exception propagates as it is.
template <class F>
void agree_on(comm::Communicator& world, bool mine, F&& check) {
  if (world.size() == 1) {
    if (mine) check();
    return;
  }
  int64_t kind = 0;  // 0 ok, 1 InvalidArgument, 2 IoError, 3 other
  std::string message;
  if (mine) {
    try {
      check();
    } catch (const InvalidArgument& e) {
      kind = 1, message = e.what();
    } catch (const IoError& e) {
      kind = 2, message = e.what();
    } catch (const std::exception& e) {
      kind = 3, message = e.what();
    }
  }
  if (kind != 0 && message.empty()) message = "unknown error";
  Tensor head = Tensor::empty({2}, DType::i64, MemCategory::comm);
  head.data<int64_t>()[0] = kind;
  head.data<int64_t>()[1] = static_cast<int64_t>(message.size());
  Tensor all = Tensor::empty({2 * world.size()}, DType::i64, MemCategory::comm);
  comm::all_gather(world, head, all);
  for (int r = 0; r < world.size(); ++r) {
    const int64_t k = all.data<int64_t>()[2 * r];
    if (k == 0) continue;
    const int64_t length = all.data<int64_t>()[2 * r + 1];
    Tensor text = Tensor::zeros({(length + 7) / 8}, DType::i64, MemCategory::comm);
    if (world.rank() == r) std::memcpy(text.raw(), message.data(), static_cast<size_t>(length));
    comm::broadcast(world, text, r);
    const std::string agreed(static_cast<const char*>(text.raw()), static_cast<size_t>(length));
    if (k == 1) throw InvalidArgument(agreed);
    if (k == 2) throw IoError(agreed);
    throw Error(agreed);
  }
}

// Validates the run on the mesh and checks its checkpoint destination on the rank that writes
// (world rank 0: rank 0 of the primary replica group in every layout), before anything is
// allocated; a refusal is every rank's.
const RunConfig& checked(const model::ModelConfig& config, const RunConfig& run, comm::Mesh& mesh) {
  validate_distributed_run(config, run, mesh.degrees());
  agree_on(mesh.world(), mesh.world_rank() == 0, [&] { check_checkpoint_dir_for_run(config, run); });
  return run;
}

// The one-process constructors' mesh: degree 1 on every axis over the self transport.
std::unique_ptr<comm::Mesh> one_process_mesh() {
  return std::make_unique<comm::Mesh>(comm::self_communicator(), comm::MeshDegrees{});
}

}  // namespace

comm::MeshDegrees mesh_degrees_for(const RunConfig& run) {
  return comm::mesh_degrees_of(run.layout_spec());
}

void validate_distributed_run(const model::ModelConfig& config, const RunConfig& run,
                              const comm::MeshDegrees& degrees) {
  run.validate();
  TSP_CHECK(run.layout != "single" || degrees.product() == 1, "--layout single runs on one "
            "process, not under mpirun with ", degrees.product(), " ranks; choose tsp, tp, sp, "
            "tp+sp, dp or fsdp-sp");
  const comm::MeshDegrees want = mesh_degrees_for(run);
  TSP_CHECK(degrees.dp == want.dp && degrees.sp == want.sp && degrees.tp == want.tp &&
                degrees.tsp == want.tsp && degrees.pp == want.pp,
            "the mesh ", degrees.str(), " does not match the run's degrees ", want.str());
  if (want.pp > 1) (void)parallel::stage_layers(config.num_hidden_layers(), want.pp, 0);  // refuses an uneven split
  TSP_CHECK(run.seq <= config.max_position_embeddings(), "--seq ", run.seq,
            " exceeds the model's max_position_embeddings ", config.max_position_embeddings());
  if (run.layout == "single") return;  // the plain model takes any sequence length
  const LayoutSpec layout = run.layout_spec();
  switch (layout.kind) {
    case LayoutKind::tsp: parallel::validate_tsp(config, static_cast<int>(layout.tsp), run.seq); break;
    case LayoutKind::fsdp_sp: parallel::validate_fsdp_sp(config, static_cast<int>(layout.sp), run.seq); break;
    case LayoutKind::tp:
    case LayoutKind::sp:
    case LayoutKind::tp_sp:
    case LayoutKind::dp:
      parallel::validate_tp_sp(config, static_cast<int>(layout.tp), static_cast<int>(layout.sp), run.seq);
      break;
  }
}

std::unique_ptr<parallel::Layout> make_layout(comm::Mesh& mesh, const model::ModelConfig& config,
                                              const RunConfig& run) {
  validate_distributed_run(config, run, mesh.degrees());
  const DType dtype = run.model_dtype();
  const model::TransformerOptions options{.dtype = dtype, .recompute = run.recompute};
  const auto seed = static_cast<uint64_t>(run.seed);
  const bool from_hf = !run.init.empty();
  const std::filesystem::path init = from_hf ? resolve_checkpoint_dir(run.init) : std::filesystem::path();
  const LayoutKind kind = run.layout_spec().kind;
  if (run.layout == "single") {
    comm::Communicator& group = mesh.world();
    if (from_hf) return std::make_unique<parallel::SingleLayout>(group, config, options, init);
    return std::make_unique<parallel::SingleLayout>(group, config, options, seed);
  }
  if (kind == LayoutKind::fsdp_sp) {
    if (from_hf) return parallel::FsdpSpLayout::from_hf(mesh, options, config, dtype, init);
    return std::make_unique<parallel::FsdpSpLayout>(mesh, options, config, dtype, seed);
  }
  if (kind != LayoutKind::tsp) {  // tp, sp, tp+sp and dp: TpSpLayout at their degrees
    if (from_hf) return std::make_unique<parallel::TpSpLayout>(mesh, config, options, init);
    return std::make_unique<parallel::TpSpLayout>(mesh, config, options, seed);
  }
  const int tsp = mesh.degree(MeshAxis::tsp), rank = mesh.coord(MeshAxis::tsp);
  const model::StageRange stage = parallel::stage_layers_on(mesh, config.num_hidden_layers());
  if (!from_hf) {
    return std::make_unique<parallel::TspLayout>(
        mesh, options, parallel::TpWeights::initialize(config, dtype, seed, tsp, rank, stage));
  }
  parallel::TpWeights w(config, dtype, tsp, rank, MemCategory::weights, stage);
  parallel::load_shards_from_hf(init, w.params());
  return std::make_unique<parallel::TspLayout>(mesh, options, std::move(w));
}

Trainer::Trainer(comm::Mesh& mesh, const model::ModelConfig& config, const RunConfig& run,
                 std::vector<int32_t> tokens, TrainerOutput output)
    : Trainer(mesh, config, run, TrainData::in_memory(std::move(tokens)), output) {}

Trainer::Trainer(const model::ModelConfig& config, const RunConfig& run, std::vector<int32_t> tokens,
                 TrainerOutput output)
    : Trainer(config, run, TrainData::in_memory(std::move(tokens)), output) {}

Trainer::Trainer(const model::ModelConfig& config, const RunConfig& run, const TrainData& data,
                 TrainerOutput output)
    : own_mesh_(one_process_mesh()),
      mesh_(*own_mesh_),
      config_(config),
      run_(checked(config, run, mesh_)),
      out_(output),
      data_(run_data_for(data, run, config)),
      loader_(loader_for_run(data_, run)),
      layout_(make_layout(mesh_, config, run)),
      optimizer_(layout_->weights(), adamw_config(run)) {
  finish_construction();
}

Trainer::Trainer(comm::Mesh& mesh, const model::ModelConfig& config, const RunConfig& run,
                 const TrainData& data, TrainerOutput output)
    : mesh_(mesh),
      config_(config),
      run_(checked(config, run, mesh)),
      out_(output),
      data_(run_data_for(data, run, config)),
      loader_(loader_for_run(data_, run)),
      layout_(make_layout(mesh, config, run)),
      optimizer_(layout_->weights(), adamw_config(run)) {
  finish_construction();
}

void Trainer::finish_construction() {
  // checked() asked world rank 0 about the checkpoint destination: it must be the writer.
  TSP_ASSERT(writes_checkpoint_files() == (mesh_.world_rank() == 0),
             "the rank that writes checkpoints is world rank ", mesh_.world_rank(), ", not 0");
  TSP_CHECK(config_.torch_dtype() == run_.model_dtype(), "model config torch_dtype ",
            config_.torch_dtype(), " differs from --dtype ", run_.dtype);
  // Each rank verifies the checksums of what it reads; a refusal on any rank is every rank's.
  // load_checkpoint is local (reads and copies, no collective), so every rank reaches agree_on.
  if (!run_.resume.empty()) agree_on(mesh_.world(), true, [&] { load_checkpoint(run_.resume); });
  if (!run_.metrics.empty() && mesh_.world_rank() == 0) metrics_ = std::make_unique<MetricsFile>(run_.metrics);
}

Trainer::~Trainer() = default;

void Trainer::say(const std::string& line) const {
  if (out_.log) *out_.log << line << std::endl;
}

double Trainer::lr_for_step(int64_t step) const {
  return lr_at({.peak_lr = run_.lr, .min_lr = run_.min_lr, .warmup_steps = run_.warmup,
                .total_steps = run_.steps},
               step);
}

StepMetrics Trainer::train_step() {
  const auto t0 = Clock::now();
  const int64_t bytes0 = bytes_sent(mesh_, *layout_);
  const double wait0 = layout_->comm_wait_seconds();
  // Every rank advances through the same global batch but reads only its replica's rows (a
  // contiguous block of it): whole rows of S + 1 tokens from the mapped files, shared page cache for
  // the ranks of one replica, which then take their own sequence chunks (docs/training.md,
  // "Reading at scale").
  const data::Batch batch =
      loader_.next(data::DataShard{.rank = mesh_.coord(MeshAxis::dp), .world = run_.dp}, MemCategory::activations);
  const Tensor inputs = batch.inputs(), targets = batch.targets();
  // Normalised by the valid targets of the whole global batch. Loader tokens are ids in
  // [0, vocab_size) (prepare_run_data checks every one), so every target is valid and the global
  // count is B x S without a collective; the check keeps that assumption honest.
  const int64_t n_valid = run_.batch * run_.seq;
  TSP_CHECK(model::count_valid_targets(targets) == targets.numel(), "batch has invalid targets");
  const float grad_scale = static_cast<float>(1.0 / static_cast<double>(n_valid));
  layout_->zero_grads();
  // The micro-batches go to the layout together: with pipeline stages they are in flight at once
  // (1F1B), without they run one after the other.
  const int64_t mb = run_.micro_batch();
  std::vector<parallel::MicroBatch> micro_batches;
  for (int64_t i = 0; i < run_.grad_accum; ++i) {
    micro_batches.push_back({Tensor::copy_of(inputs.slice(0, i * mb, mb), DType::i32, MemCategory::activations),
                             Tensor::copy_of(targets.slice(0, i * mb, mb), DType::i32, MemCategory::activations)});
  }
  const model::LossSum mine = layout_->forward_backward(micro_batches, grad_scale);
  layout_->sync_grads(mesh_.axis(MeshAxis::dp));
  const std::vector<double> total =
      sum_in_rank_order(mesh_.world(), {mine.loss_sum, static_cast<double>(mine.n_valid)});
  const double mean = total[0] / total[1];
  if (!std::isfinite(mean)) {
    TSP_THROW(Error, "training diverged: loss is ", mean, " at step ", step() + 1, " (try a lower --lr)");
  }
  const parallel::ClipResult clip = parallel::clip_grad_norm(
      layout_->replica_group(), layout_->replica_shards(layout_->grads()), layout_->grads(), run_.clip);
  if (!std::isfinite(clip.norm)) {
    TSP_THROW(Error, "training diverged: gradient norm is ", clip.norm, " at step ", step() + 1);
  }
  const double lr = lr_for_step(step() + 1);
  optimizer_.step(layout_->weights(), layout_->grads(), lr);
  tokens_seen_ += static_cast<int64_t>(total[1]);

  StepMetrics m;
  m.step = step();
  m.total_steps = run_.steps;
  m.loss = mean;
  m.lr = lr;
  m.grad_norm = clip.norm;
  m.clipped = clip.clipped;
  m.tokens = static_cast<int64_t>(total[1]);
  m.seconds = seconds_since(t0);
  m.peak_bytes = MemoryLedger::process().total().peak_bytes;
  m.peak_rss_bytes = process_peak_rss_bytes();
  last_step_bytes_sent_ = bytes_sent(mesh_, *layout_) - bytes0;
  m.comm_bytes_sent = last_step_bytes_sent_;
  m.comm_wait_seconds = layout_->comm_wait_seconds() - wait0;
  return m;
}

EvalMetrics Trainer::validate() {
  // Every dp replica evaluates the same windows (the validation split is small): the sum of the
  // ranks' shares over the mesh counts each token once per replica.
  EvalMetrics m = evaluate_loss(
      [this](const Tensor& in, const Tensor& tg) {
        const model::LossSum l = layout_->forward(in, tg);
        const std::vector<double> s =
            sum_in_rank_order(mesh_.world(), {l.loss_sum, static_cast<double>(l.n_valid)});
        const double replicas = static_cast<double>(mesh_.degree(MeshAxis::dp));
        return model::LossSum{s[0] / replicas, static_cast<int64_t>(std::llround(s[1] / replicas))};
      },
      *data_.val, run_.batch, run_.seq, run_.eval_batches);
  m.step = step();
  return m;
}

void Trainer::save_checkpoint(const std::filesystem::path& dir) const {
  // The replicas hold the same values: the primary replica group writes, the others wait.
  if (layout_->primary()) {
    comm::Communicator& group = layout_->replica_group();
    TrainStateInfo info;
    info.step = step();
    info.tokens_seen = tokens_seen_;
    info.model_dtype = run_.model_dtype();
    info.loader = loader_.state();
    info.run = run_;
    info.model_config = model::config_to_json(config_);
    info.data_fingerprint = data_.fingerprint;
    const parallel::ShardedFile state = sharded_train_state_file(
        group, info, optimizer_, [this](const std::vector<parallel::ParamShard>& list) { return layout_->replica_shards(list); });
    parallel::save_sharded_hf_checkpoint(group, config_, layout_->replica_shards(layout_->weights()), dir,
                                         tokenizer_files_of(run_.init, run_.data),
                                         {{kTrainStateFileName, state}});
  }
  mesh_.world().barrier();
}

bool Trainer::writes_checkpoint_files() const {
  return layout_->primary() && layout_->replica_group().rank() == 0;
}

void Trainer::load_checkpoint(const std::filesystem::path& given) {
  const std::filesystem::path dir = resolve_checkpoint_dir(given);
  const model::HfCheckpoint ckpt(dir);
  const std::filesystem::path state_path =
      checked_train_state(dir, ckpt.config(), run_, config_, data_.fingerprint);
  const int64_t model_tensors =
      layout_->stage().pipelined() ? static_cast<int64_t>(model::weight_specs(config_).size()) : -1;
  const TrainStateInfo info = load_sharded_train_state(state_path, optimizer_, model_tensors);
  if (optimizer_.has_masters()) {
    optimizer_.sync_weights_from_masters(layout_->weights());
  } else {
    parallel::load_shards_from_hf(dir, layout_->weights());
  }
  try {
    loader_.restore(info.loader);
  } catch (const InvalidArgument& e) {
    TSP_THROW(InvalidArgument, "cannot resume from ", dir.string(), ": its data position does not fit this data: ",
              e.what());
  }
  tokens_seen_ = info.tokens_seen;
}

std::string Trainer::per_rank_report() {
  // Per rank: peak bytes of each category, process peak RSS, bytes sent in the last step, gathered
  // on rank 0, which prints them as a table and writes one "memory" record per rank.
  const RankMemory own = this_process_memory(mesh_.world_rank(), mesh_.world_size(), "", last_step_bytes_sent_);
  const int64_t n = kNumMemCategories + 2;
  Tensor mine = Tensor::empty({n}, DType::i64, MemCategory::workspace);
  for (int c = 0; c < kNumMemCategories; ++c) mine.data<int64_t>()[c] = own.peak_bytes[c];
  mine.data<int64_t>()[kNumMemCategories] = own.peak_rss_bytes;
  mine.data<int64_t>()[kNumMemCategories + 1] = own.bytes_sent_per_step;
  Tensor all = Tensor::empty({n * mesh_.world_size()}, DType::i64, MemCategory::workspace);
  comm::all_gather(mesh_.world(), mine, all);
  if (mesh_.world_rank() != 0) return {};
  // The axes this run uses, e.g. "(dp,tsp)", and each rank's coordinates on them.
  std::vector<MeshAxis> used;
  for (MeshAxis a : comm::kMeshAxes)
    if (mesh_.degree(a) > 1) used.push_back(a);
  std::vector<RankMemory> ranks;
  for (int r = 0; r < mesh_.world_size(); ++r) {
    const int64_t* v = all.data<int64_t>() + r * n;
    const comm::MeshCoords co = comm::mesh_coords_of(mesh_.degrees(), r);
    RankMemory m;
    m.rank = r;
    m.world_size = mesh_.world_size();
    for (MeshAxis a : used) {
      if (!m.coords.empty()) m.coords += ',';
      m.coords.append(comm::mesh_axis_name(a)).append("=").append(std::to_string(co[static_cast<int>(a)]));
    }
    for (int c = 0; c < kNumMemCategories; ++c) m.peak_bytes[c] = v[c];
    m.peak_rss_bytes = v[kNumMemCategories];
    m.bytes_sent_per_step = v[kNumMemCategories + 1];
    if (metrics_) metrics_->write(metrics_json(m));
    ranks.push_back(std::move(m));
  }
  std::ostringstream os;
  auto mib = [](int64_t b) { return static_cast<double>(b) / (1 << 20); };
  os << "per-rank peak memory (MiB) and bytes sent per step:\n";
  char buf[64];
  std::string axes;
  for (MeshAxis a : used) axes += (axes.empty() ? "" : ",") + std::string(comm::mesh_axis_name(a));
  std::snprintf(buf, sizeof buf, "  %-17s", ("rank (" + axes + ")").c_str());
  os << buf;
  for (int c = 0; c < kNumMemCategories; ++c) {
    std::snprintf(buf, sizeof buf, " %11s", std::string(mem_category_name(static_cast<MemCategory>(c))).c_str());
    os << buf;
  }
  std::snprintf(buf, sizeof buf, " %9s %12s", "rss", "sent/step");
  os << buf;
  for (const RankMemory& m : ranks) {
    const comm::MeshCoords co = comm::mesh_coords_of(mesh_.degrees(), m.rank);
    std::string at;
    for (MeshAxis a : used) {
      if (!at.empty()) at += ',';
      at += std::to_string(co[static_cast<int>(a)]);
    }
    std::snprintf(buf, sizeof buf, "\n  %-4d %-12s", m.rank, ("(" + at + ")").c_str());
    os << buf;
    for (int c = 0; c < kNumMemCategories; ++c) {
      std::snprintf(buf, sizeof buf, " %11.2f", mib(m.peak_bytes[c]));
      os << buf;
    }
    std::snprintf(buf, sizeof buf, " %9.2f %8.2f MiB", mib(m.peak_rss_bytes), mib(m.bytes_sent_per_step));
    os << buf;
  }
  return os.str();
}

MfuBasis Trainer::mfu_basis() {
  if (mesh_.world_rank() != 0 || (!out_.log && !metrics_)) return {};
  return measure_mfu_basis(config_, run_, mesh_.world_size());
}

int Trainer::agree_stop_signal(int mine) {
  Tensor flag = Tensor::empty({1}, DType::i64, MemCategory::comm);
  flag.data<int64_t>()[0] = mine;
  comm::all_reduce(mesh_.world(), flag, comm::ReduceOp::max);
  return static_cast<int>(flag.data<int64_t>()[0]);
}

EvalMetrics Trainer::run() {
  say("model: " + config_.summary() + " dtype=" + run_dtype_origin(run_) + (run_.recompute ? " recompute" : ""));
  const bool one_process = run_.layout == "single";  // else: the layout line, per-rank table
  if (!one_process) say("layout: " + mesh_.degrees().str() + " (" + layout_->describe() + " on rank 0)");
  std::ostringstream head;
  head << "data: " << loader_.num_tokens() << " train tokens, " << data_.val->size()
       << " validation tokens; unigram entropy " << format_loss(data_.unigram_nats) << " nats/token";
  say(head.str());
  std::ostringstream cfg;
  cfg << "run: steps=" << run_.steps << " batch=" << run_.batch << " (";
  if (!one_process) cfg << "dp " << run_.dp << " x ";
  cfg << "micro " << run_.micro_batch() << " x " << run_.grad_accum << ") seq=" << run_.seq << " lr=" << run_.lr
      << "->" << run_.min_lr << " warmup=" << run_.warmup << " clip=" << run_.clip
      << " seed=" << run_.seed;
  if (step() > 0) cfg << " (resumed at step " << step() << ")";
  say(cfg.str());
  const EvalMetrics e = run_training_loop(*this, run_, data_.unigram_nats, metrics_.get(),
                                          [this](const std::string& line) { say(line); },
                                          out_.print_every_step, &preempted_signal_);
  if (one_process) {  // the ledger by category, and one memory record
    say(MemoryLedger::process().report());
    if (metrics_) metrics_->write(metrics_json(this_process_memory(0, 1, "", 0)));
    return e;
  }
  const std::string report = per_rank_report();
  if (!report.empty()) say(report);
  return e;
}

}  // namespace tsp::train
