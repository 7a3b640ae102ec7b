// Comm watchdog: a blocking wait in MPI that lasts longer than the timeout (--comm-timeout) ends
// the whole job with one message instead of hanging (a peer stopped by SIGSTOP, wedged, or dead).
//
// Design. Every place where this process can block in MPI opens an InFlight guard (collectives,
// point to point, Request waits, barriers, communicator dup/split, the watchdog's own barrier at
// exit): operation, mesh axis (the communicator's name), bytes, the group's world ranks and the
// start time. One watchdog thread per process sleeps on a condition variable for a tick
// (timeout / 8, between 50 ms and 1 s), answers the liveness pings of other ranks, and compares
// the open guard's age with the timeout. A guard costs one coarse monotonic clock read (vDSO, no
// syscall) and an uncontended mutex (no syscall): ~0.1 us measured on a loaded machine, against
// >= 7 us for the smallest all-reduce; the thread wakes at most 20 times a second.
// Chosen over nonblocking collectives polled with a deadline because the blocking calls stay
// MPI's own (same algorithms, no polling loop of ours beside MPI's) and one thread, written once,
// owns the timeout and the message. Calling MPI from that thread needs MPI's THREAD_MULTIPLE,
// which MpiEnvironment requests (Open MPI 4.1 provides it); with less, the thread does not ping
// and the message says the peers were not probed.
//
// On timeout the thread pings every other world rank on a communicator of its own (a dup of the
// world) and waits a grace period (max(2 s, 4 ticks)) for answers, which the watchdog thread of
// every live rank sends, with what that rank is doing. A stopped or dead process cannot answer:
// those ranks are "not heard from". If the operation completed meanwhile nothing happens;
// otherwise the thread prints one line (operation, axis, bytes, group, elapsed, timeout, ranks
// not heard from, the live peers' state, what to do) and aborts the job with
// kCommTimeoutExitCode (abort_job). docs/running.md, "A stuck or dead peer".
//
// Process-wide on purpose (like MemoryLedger::process()): the process has one thread that drives
// MPI, and every collective in every layer must be watched without a handle through each call.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tsp/comm/communicator.h"

namespace tsp::comm {

// The exit status of a job aborted by the watchdog (that of timeout(1): "timed out"). Distinct
// from 0 (done), 1 (error), 2 (usage) and 75 (preempted).
inline constexpr int kCommTimeoutExitCode = 124;
// --comm-timeout's default: NCCL's and torch.distributed's 10 minutes; long enough for a slow
// checkpoint write or a first-step warm-up on a loaded machine, short against a lost job.
inline constexpr double kDefaultCommTimeoutS = 600;

// Marks this process as blocked in `op` on a communicator for the guard's lifetime. Inactive
// (nothing recorded) when no watchdog runs or when another guard is already open (the outer
// operation is the one that waits). `axis` and `group_world_ranks` must outlive the guard;
// group_world_ranks may be null (unknown group: e.g. the communicator being duplicated).
class InFlight {
 public:
  InFlight(const Communicator& comm, const char* op, int64_t bytes) noexcept
      : InFlight(op, comm.name(), &comm.world_ranks(), bytes) {}
  InFlight(const char* op, const std::string& axis, const std::vector<int>* group_world_ranks,
           int64_t bytes) noexcept;
  ~InFlight();
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

 private:
  bool armed_ = false;
};

// What a peer's watchdog answered to a liveness ping.
struct PeerReply {
  int world_rank = -1;
  bool heard = false;
  // "in all_reduce on 'tsp' (4096 bytes, world ranks 0-3) for 3.1 s" or "not in a communication call"
  std::string state;
};

class CommWatchdog {
 public:
  // Collective over `world` (dups it for the pings) unless timeout_s == 0, which disables the
  // watchdog (no thread, no communicator). Throws InvalidArgument unless timeout_s is finite and
  // >= 0, and CommError if another watchdog is running in this process.
  CommWatchdog(const Communicator& world, double timeout_s);
  // Unless unwinding an exception: a watched barrier of all ranks (so a peer that stops at the
  // very end is reported instead of hanging MPI's finalisation), then stops the thread. Never
  // throws.
  ~CommWatchdog();
  CommWatchdog(const CommWatchdog&) = delete;
  CommWatchdog& operator=(const CommWatchdog&) = delete;

  bool enabled() const { return ping_.valid(); }
  double timeout_s() const { return timeout_s_; }
  std::chrono::duration<double> tick() const { return tick_; }
  std::chrono::duration<double> grace() const { return grace_; }

  // Pings every other world rank and waits up to `grace_s` for the answers (one entry per other
  // rank, in rank order). The ranks must be running a watchdog. Used by the thread on timeout;
  // public for tests.
  std::vector<PeerReply> probe_peers(double grace_s);

 private:
  void run();
  void answer_pings();
  void on_timeout(uint64_t generation, const std::string& what, double elapsed_s,
                  std::vector<int> group);

  double timeout_s_ = 0;
  std::chrono::duration<double> tick_{1.0};
  std::chrono::duration<double> grace_{2.0};
  bool can_ping_ = false;  // MPI provides THREAD_MULTIPLE
  Communicator ping_;      // dup of the world: pings and answers, the barrier at exit
  int seq_ = 0;            // probe round, echoed by the answers (a late answer is not taken)
  int ping_payload_ = 0;   // read by MPI until each ping completes
  std::mutex answer_mu_;   // one thread at a time answers pings
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::thread thread_;
};

// "1, 4-7, 9": world ranks as sorted ranges (for the message).
std::string format_rank_ranges(std::vector<int> ranks);

}  // namespace tsp::comm
