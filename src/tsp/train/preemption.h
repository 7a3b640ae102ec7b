// Graceful preemption: on the first SIGTERM, SIGINT or SIGUSR1 the training loop finishes the
// current step, saves a checkpoint (when --checkpoint-dir is set), prints one "preempted:" line
// and `tsp train` exits with kPreemptedExitCode. A second signal ends the process at once (the
// default action: exit status 128 + signal). Under mpirun the ranks agree on the stop at each step
// end (TrainLoopHost::agree_stop_signal), so a signal to any one rank stops all of them at the
// same step. docs/training.md, "Preemption".
#pragma once

#include <string>

namespace tsp::train {

// The exit status of `tsp train` stopped by a signal after saving (EX_TEMPFAIL of sysexits.h:
// "try again later", i.e. resume). Distinct from 0 (done), 1 (error) and 2 (usage).
inline constexpr int kPreemptedExitCode = 75;

// Installs the handlers for SIGTERM, SIGINT and SIGUSR1 for its lifetime (restoring the previous
// ones and clearing the flag when destroyed). The handler only records the signal number in an
// atomic flag; the second signal restores the default action and re-raises itself.
class PreemptionGuard {
 public:
  PreemptionGuard();
  ~PreemptionGuard();
  PreemptionGuard(const PreemptionGuard&) = delete;
  PreemptionGuard& operator=(const PreemptionGuard&) = delete;
};

// Call first thing in main(), before any other thread exists: blocks SIGTERM, SIGINT and SIGUSR1
// in the calling thread, so every thread created later (OpenMP, oneDNN, MPI, the watchdog)
// inherits the block, and starts one thread that keeps them unblocked and sleeps. The kernel then
// delivers these process-directed signals to that thread only, so a handler never runs on a
// compute thread. Why: oneDNN 2.6's generated GEMM kernels (gemm:jit, AVX2 and AVX-512) point rsp
// at a heap workspace while they run; a signal handled on such a thread writes its frame into the
// heap and corrupts it (oneDNN issue #4845, fixed upstream in 3.11.1; Debian 12 ships 2.6.3).
// Without a PreemptionGuard the default actions still apply (the process ends as before).
// Idempotent; returns the Linux thread id of the signal thread.
long route_stop_signals_to_one_thread();

// The Linux thread id on which the most recent stop signal was handled (0: none yet; tests).
long last_stop_signal_thread();

// The first stop signal received by this process (0: none).
int preemption_signal();
// Clears the flag (tests).
void clear_preemption_signal();
// "SIGTERM", "SIGINT", "SIGUSR1", else "signal N".
std::string signal_name(int sig);

}  // namespace tsp::train
