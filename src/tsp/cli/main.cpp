// The `tsp` binary. MPI-free for now; the MPI version will be
//   return tsp::comm::run_mpi_main(argc, argv, [&](auto&) { return tsp::cli::run_cli(...); });
#include "tsp/cli/commands.h"

int main(int argc, char** argv) { return tsp::cli::guarded_main(argc, argv); }
