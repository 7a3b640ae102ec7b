// Stop signals are taken by one thread that runs no compute code (route_stop_signals_to_one_thread):
// a forked child runs oneDNN GEMMs on its main thread while a second thread sends it thousands of
// SIGUSR1; every one must be handled on the signal thread and every GEMM result stay bit-identical.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

#include "tsp/core/tensor.h"
#include "tsp/kernels/gemm.h"
#include "tsp/train/preemption.h"

namespace tsp::train {
namespace {

// Exit codes of the child, so the parent's assertion says what went wrong.
constexpr int kOk = 0, kWrongThread = 3, kWrongResult = 4, kNoSignal = 5;

int child_body(int signals) {
  const long signal_tid = route_stop_signals_to_one_thread();
  const PreemptionGuard guard;
  // A small f32 GEMM (T=512, 128 -> 384: the tiny preset's QKV shape), where oneDNN 2.6 picks its
  // generated gemm:jit kernel, the one that moves rsp into the heap (oneDNN issue #4845).
  Tensor a = Tensor::empty({512, 128}, DType::f32, MemCategory::activations);
  Tensor b = Tensor::empty({128, 384}, DType::f32, MemCategory::weights);
  for (int64_t i = 0; i < a.numel(); ++i) a.data<float>()[i] = static_cast<float>((i * 37) % 101) / 101.0f - 0.5f;
  for (int64_t i = 0; i < b.numel(); ++i) b.data<float>()[i] = static_cast<float>((i * 53) % 97) / 97.0f - 0.5f;
  Tensor expected = Tensor::empty({512, 384}, DType::f32, MemCategory::activations);
  kernels::gemm(a, b, expected);

  std::atomic<bool> done{false};
  std::atomic<int> verdict{kOk};
  std::thread sender([&] {
    for (int i = 0; i < signals && verdict.load() == kOk; ++i) {
      kill(getpid(), SIGUSR1);
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      while (preemption_signal() == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
      if (preemption_signal() == 0) verdict.store(kNoSignal);
      else if (last_stop_signal_thread() != signal_tid) verdict.store(kWrongThread);
      clear_preemption_signal();
    }
    done.store(true);
  });
  Tensor c = Tensor::empty({512, 384}, DType::f32, MemCategory::activations);
  while (!done.load()) {
    kernels::gemm(a, b, c);
    if (std::memcmp(c.raw(), expected.raw(), c.nbytes()) != 0) verdict.store(kWrongResult);
  }
  sender.join();
  return verdict.load();
}

TEST(StopSignalThread, SignalsNeverInterruptComputeThreads) {
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) _exit(child_body(3000));
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died of signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0)
                                 << " (heap corrupted by a signal handled on a compute thread?)";
  EXPECT_EQ(WEXITSTATUS(status), kOk) << "3: handled on another thread, 4: GEMM result changed, 5: signal lost";
}

}  // namespace
}  // namespace tsp::train
