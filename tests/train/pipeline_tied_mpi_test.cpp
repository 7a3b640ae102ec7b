// Tied embeddings across pipeline stages under mpirun at 6 ranks (dp 3 x pp 2): the first stage's
// embedding and the last stage's copy (its LM head) stay bit-equal step after step, and the run's
// losses equal the one-process run's. With dp 3, Open MPI's all-reduce adds an element of the two
// end stages' dp buffers (packed with different neighbours) in different orders, so the copies
// drifted apart by a few elements per step until the tied sum moved after the dp sum
// (Layout::sync_grads).
#include <gtest/gtest.h>

#include <cstring>

#include "tsp/comm/collectives.h"
#include "tsp/comm/mesh.h"
#include "tsp/train/trainer.h"
#include "train/train_test_util.h"

namespace tsp::train {
namespace {

TEST(PipelineTiedEmbedding, CopiesStayBitEqualAcrossDataParallelReplicas) {
  comm::Communicator world = comm::Communicator::world();
  if (world.size() % 2 != 0) GTEST_SKIP() << "needs pp 2 x dp (an even number of ranks)";
  const int dp = world.size() / 2;
  model::ModelConfigFields f = testing::tiny_config({.gqa = true, .tied = true}).fields();
  f.vocab_size = 384;  // the size at which the drift showed (review of b7c50c7)
  const model::ModelConfig config(f);
  const std::vector<int32_t> tokens = testing::pattern_tokens(6000, 90);
  for (const char* layout : {"dp", "tsp"}) {
    SCOPED_TRACE(layout);
    RunConfig run = testing::tiny_run(6);
    run.layout = layout;
    run.tsp = 1;
    run.dp = dp;
    run.pp = 2;
    run.batch = 2 * dp;
    run.grad_accum = 2;
    run.clip = 0;
    RunConfig single = run;
    single.layout = "single";
    single.dp = single.pp = 1;
    Trainer reference(config, single, tokens);
    comm::Mesh mesh(world, mesh_degrees_for(run));
    Trainer trainer(mesh, config, run, tokens);
    comm::Communicator& pp = mesh.axis(comm::MeshAxis::pp);
    for (int s = 0; s < 6; ++s) {
      const double got = trainer.train_step().loss, want = reference.train_step().loss;
      EXPECT_NEAR(got, want, 1e-4 * want) << "step " << s + 1;  // summation order only (f32)
      Tensor mine;
      for (const parallel::ParamShard& p : trainer.layout().weights())
        if (p.name == "model.embed_tokens.weight") mine = p.local;
      // Every rank of pp 2 holds the matrix (stage 0 the embedding, stage 1 its copy); a rank
      // without it fails here on every rank at once, so no peer waits in the exchange below.
      Tensor held = Tensor::empty({1}, DType::i64, MemCategory::workspace);
      held.data<int64_t>()[0] = mine.defined() ? 1 : 0;
      comm::all_reduce(world, held, comm::ReduceOp::min);
      ASSERT_EQ(held.data<int64_t>()[0], 1) << "a rank holds no embedding";
      Tensor other = Tensor::empty(mine.shape(), mine.dtype(), MemCategory::workspace);
      comm::sendrecv(pp, mine, 1 - pp.rank(), other, 1 - pp.rank(), 77);
      int64_t differ = 0;
      for (int64_t i = 0; i < mine.numel(); ++i)
        differ += std::memcmp(mine.data<float>() + i, other.data<float>() + i, sizeof(float)) != 0;
      EXPECT_EQ(differ, 0) << "step " << s + 1 << ": elements of the embedding that differ between the "
                           << "first stage and the last stage's copy, of " << mine.numel();
    }
  }
}

}  // namespace
}  // namespace tsp::train
