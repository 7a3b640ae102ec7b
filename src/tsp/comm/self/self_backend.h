// The transport of a world of one process, without MPI: collectives are copies (or nothing), a
// message to oneself waits in a queue until received. A single-rank run uses it, so one trainer
// serves one process and a mesh (train/trainer.h); `tsp train` on one rank never initialises MPI.
#pragma once

#include <string>

#include "tsp/comm/communicator.h"

namespace tsp::comm {

// A communicator over the self transport (rank 0 of 1, world rank 0), named `name`.
Communicator self_communicator(std::string name = "world");

}  // namespace tsp::comm
