// Deliberately stuck MPI program (not a GoogleTest) for the comm watchdog: the last rank stops
// while the others block in a collective on the "tsp" communicator, under a 2 s --comm-timeout.
// The watchdog must end the job with kCommTimeoutExitCode and one message naming the operation,
// the axis, the bytes and the rank not heard from. expect_comm_timeout.cmake runs it and checks.
//   stuck_rank_mpi stop <marker>   last rank SIGSTOPs itself; others in all_reduce
//   stuck_rank_mpi wait <marker>   last rank SIGSTOPs itself; others in Request::wait (iall_reduce)
//   stuck_rank_mpi sleep <marker>  last rank sleeps outside MPI (alive: it answers the pings)
// <marker> only makes the command line unique, so the script can find leftover processes.
#include <signal.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "tsp/comm/collectives.h"
#include "tsp/comm/mpi_environment.h"
#include "tsp/comm/watchdog.h"

int main(int argc, char** argv) {
  using namespace tsp::comm;
  const char* mode = argc > 1 ? argv[1] : "stop";
  return run_mpi_main(argc, argv, [mode](MpiEnvironment&) {
    Communicator world = Communicator::world();
    Communicator tsp = world.split(0, world.rank(), "tsp");
    CommWatchdog watchdog(world, 2.0);
    tsp::Tensor x = tsp::Tensor::zeros({16}, tsp::DType::f32, tsp::MemCategory::workspace);
    all_reduce(tsp, x);  // a healthy collective first: the watchdog leaves it alone
    if (tsp.rank() == tsp.size() - 1) {
      if (std::strcmp(mode, "sleep") == 0)
        std::this_thread::sleep_for(std::chrono::seconds(60));
      else
        raise(SIGSTOP);
    }
    if (std::strcmp(mode, "wait") == 0) {
      Request r = iall_reduce(tsp, x);
      r.wait();
    } else {
      all_reduce(tsp, x);
    }
    return 0;  // not reached: the watchdog aborts the job
  });
}
