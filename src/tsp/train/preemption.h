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

// The first stop signal received by this process (0: none).
int preemption_signal();
// Clears the flag (tests).
void clear_preemption_signal();
// "SIGTERM", "SIGINT", "SIGUSR1", else "signal N".
std::string signal_name(int sig);

}  // namespace tsp::train
