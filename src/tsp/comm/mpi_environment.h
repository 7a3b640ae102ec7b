// MPI as RAII: MpiEnvironment owns MPI's initialisation and finalisation; check_mpi turns MPI
// error codes into tsp::CommError (the only place in the engine where that happens); run_mpi_main
// is the top level of every MPI program: an exception on any rank prints "rank R: <message>" and
// aborts the MPI job, so the whole job ends with a non-zero exit instead of hanging.
#pragma once

#include <functional>
#include <string>

namespace tsp::comm {

// Throws CommError("<what>: <MPI error string>") unless `code` is MPI's success code (0).
void check_mpi(int code, const char* what);

class MpiEnvironment {
 public:
  // Initialises MPI with thread level MULTIPLE requested (the provided level is recorded) and
  // sets the errors-return handler on MPI's world communicator. Throws CommError if MPI is already initialised.
  MpiEnvironment(int* argc, char*** argv);
  ~MpiEnvironment();  // finalises unless finalize() was called; never throws
  MpiEnvironment(const MpiEnvironment&) = delete;
  MpiEnvironment& operator=(const MpiEnvironment&) = delete;

  // Explicit finalisation for callers who want its error as an exception.
  void finalize();

  int world_rank() const { return world_rank_; }
  int world_size() const { return world_size_; }
  int thread_level() const { return thread_level_; }  // MPI's thread level provided
  const std::string& processor_name() const { return processor_name_; }

  static bool is_initialized();
  static bool is_finalized();

 private:
  int world_rank_ = 0;
  int world_size_ = 1;
  int thread_level_ = 0;
  std::string processor_name_;
  bool finalized_ = false;
};

// The top level of an MPI main: initialises MPI, runs `body`, finalises, and returns its exit code.
// If `body` throws (tsp::Error, std::exception or anything else), prints "rank R: <message>" to
// stderr and aborts MPI's world communicator with code 1: every rank of the job stops, mpirun exits
// non-zero, and no rank waits forever in a collective its peer will never join.
int run_mpi_main(int argc, char** argv, const std::function<int(MpiEnvironment&)>& body);

// Prints "rank R: <message>" (R = world rank, or "?" before MPI is initialised) and aborts the job.
[[noreturn]] void abort_job(const std::string& message, int exit_code = 1);

}  // namespace tsp::comm
