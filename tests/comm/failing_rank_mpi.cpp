// Deliberately failing MPI program (not a GoogleTest): the last rank throws while the others wait
// in an all-reduce it will never join. run_mpi_main must print "rank R: <message>" and MPI_Abort,
// so the job ends quickly with a non-zero exit on every rank. expect_abort.cmake runs it and checks
// the exit code, the message and the elapsed time.
#include "tsp/comm/collectives.h"
#include "tsp/comm/mpi_environment.h"
#include "tsp/core/error.h"

int main(int argc, char** argv) {
  using namespace tsp::comm;
  return run_mpi_main(argc, argv, [](MpiEnvironment&) {
    Communicator world = Communicator::world();
    world.barrier();
    if (world.rank() == world.size() - 1)
      throw tsp::CommError("deliberate failure on the last rank");
    tsp::Tensor x = tsp::Tensor::zeros({16}, tsp::DType::f32, tsp::MemCategory::workspace);
    all_reduce(world, x);  // never completes: the failing rank aborts the job
    return 0;
  });
}
