// MPI initialisation, finalisation, error translation and the abort-on-exception top level.
#include "tsp/comm/mpi_environment.h"

#include <mpi.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>

#include "tsp/core/check.h"

namespace tsp::comm {

void check_mpi(int code, const char* what) {
  if (code == MPI_SUCCESS) [[likely]]
    return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) std::snprintf(text, sizeof text, "code %d", code);
  TSP_THROW(CommError, what, ": ", text);
}

bool MpiEnvironment::is_initialized() {
  int flag = 0;
  MPI_Initialized(&flag);
  return flag != 0;
}

bool MpiEnvironment::is_finalized() {
  int flag = 0;
  MPI_Finalized(&flag);
  return flag != 0;
}

MpiEnvironment::MpiEnvironment(int* argc, char*** argv) {
  if (is_initialized()) TSP_THROW(CommError, "MpiEnvironment: MPI is already initialised");
  check_mpi(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &thread_level_), "MPI_Init_thread");
  // Across hosts MPI talks TCP: a write to the socket of a peer that died raises SIGPIPE, whose
  // default action would kill this rank silently ("rank 0 exited on signal 13"), and mpirun would
  // blame the survivor. Ignored, the write fails with EPIPE, MPI reports the lost peer, and
  // mpirun names the rank that really died (or the watchdog names it).
  std::signal(SIGPIPE, SIG_IGN);
  check_mpi(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &world_size_), "MPI_Comm_size");
  char name[MPI_MAX_PROCESSOR_NAME] = {};
  int len = 0;
  check_mpi(MPI_Get_processor_name(name, &len), "MPI_Get_processor_name");
  processor_name_.assign(name, static_cast<size_t>(len));
}

MpiEnvironment::~MpiEnvironment() {
  if (!finalized_ && !is_finalized()) MPI_Finalize();
}

void MpiEnvironment::finalize() {
  if (finalized_) return;
  finalized_ = true;
  check_mpi(MPI_Finalize(), "MPI_Finalize");
}

void abort_job(const std::string& message, int exit_code) {
  int rank = -1;
  const bool mpi_up = MpiEnvironment::is_initialized() && !MpiEnvironment::is_finalized();
  if (mpi_up) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank >= 0)
    std::fprintf(stderr, "rank %d: %s\n", rank, message.c_str());
  else
    std::fprintf(stderr, "rank ?: %s\n", message.c_str());
  std::fflush(stderr);
  if (mpi_up) MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);
}

// The environment lives outside the try block: on failure abort_job() ends the process before
// ~MpiEnvironment could call MPI_Finalize (which would wait for ranks that are not coming).
int run_mpi_main(int argc, char** argv, const std::function<int(MpiEnvironment&)>& body) {
  std::optional<MpiEnvironment> env;
  try {
    env.emplace(&argc, &argv);
  } catch (const std::exception& e) {
    abort_job(e.what());
  }
  try {
    const int rc = body(*env);
    env->finalize();
    return rc;
  } catch (const std::exception& e) {
    abort_job(e.what());
  } catch (...) {
    abort_job("unknown exception (not derived from std::exception)");
  }
}

}  // namespace tsp::comm
