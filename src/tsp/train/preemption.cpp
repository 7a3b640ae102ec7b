#include "tsp/train/preemption.h"

#include <atomic>
#include <csignal>

#include <signal.h>

#include "tsp/core/check.h"

namespace tsp::train {

namespace {

static_assert(std::atomic<int>::is_always_lock_free, "the signal flag must be lock-free");
std::atomic<int> g_signal{0};

constexpr int kSignals[] = {SIGTERM, SIGINT, SIGUSR1};
struct sigaction g_previous[3];

extern "C" void on_stop_signal(int sig) {
  int expected = 0;
  if (!g_signal.compare_exchange_strong(expected, sig)) {
    // Second signal: exit at once with the default action (128 + sig).
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}

}  // namespace

PreemptionGuard::PreemptionGuard() {
  g_signal.store(0);
  for (int i = 0; i < 3; ++i) {
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    TSP_CHECK(sigaction(kSignals[i], &sa, &g_previous[i]) == 0, "cannot install the handler of signal ",
              kSignals[i]);
  }
}

PreemptionGuard::~PreemptionGuard() {
  for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &g_previous[i], nullptr);
  g_signal.store(0);
}

int preemption_signal() { return g_signal.load(); }

void clear_preemption_signal() { g_signal.store(0); }

std::string signal_name(int sig) {
  switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGUSR1: return "SIGUSR1";
    default: return "signal " + std::to_string(sig);
  }
}

}  // namespace tsp::train
