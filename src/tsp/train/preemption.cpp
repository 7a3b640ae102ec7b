#include "tsp/train/preemption.h"

#include <atomic>
#include <csignal>
#include <mutex>
#include <thread>

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tsp/core/check.h"

namespace tsp::train {

namespace {

static_assert(std::atomic<int>::is_always_lock_free, "the signal flag must be lock-free");
std::atomic<int> g_signal{0};

constexpr int kSignals[] = {SIGTERM, SIGINT, SIGUSR1};
struct sigaction g_previous[3];

std::atomic<long> g_handler_tid{0};

long this_thread_tid() { return static_cast<long>(syscall(SYS_gettid)); }  // async-signal-safe

extern "C" void on_stop_signal(int sig) {
  g_handler_tid.store(this_thread_tid());
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

long route_stop_signals_to_one_thread() {
  static std::once_flag once;
  static std::atomic<long> signal_tid{0};
  std::call_once(once, [] {
    sigset_t stop;
    sigemptyset(&stop);
    for (int sig : kSignals) sigaddset(&stop, sig);
    TSP_CHECK(pthread_sigmask(SIG_BLOCK, &stop, nullptr) == 0, "cannot block the stop signals");
    std::thread([stop] {
      // This thread alone takes the stop signals: unblock them here and sleep between them.
      pthread_sigmask(SIG_UNBLOCK, &stop, nullptr);
      signal_tid.store(this_thread_tid());
      signal_tid.notify_all();
      for (;;) pause();
    }).detach();
    signal_tid.wait(0);
  });
  return signal_tid.load();
}

long last_stop_signal_thread() { return g_handler_tid.load(); }

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
