// The in-flight slot, the watchdog thread, the liveness pings and the timeout message.
#include "tsp/comm/watchdog.h"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <sstream>

#include <time.h>

#include "tsp/comm/mpi/mpi_backend.h"
#include "tsp/comm/mpi_environment.h"
#include "tsp/core/check.h"

namespace tsp::comm {
namespace {

using Clock = std::chrono::steady_clock;

// Start and age of the open guard: CLOCK_MONOTONIC_COARSE (vDSO, a few ns, no syscall; ticks of a
// few ms, plenty for a timeout in seconds), 3x cheaper here than steady_clock's 50 ns.
int64_t coarse_now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// Tags on the watchdog's own communicator (nothing else is sent on it).
constexpr int kPingTag = 1;
constexpr int kAnswerTag = 2;

// A ping's answer: the probe round it answers and what the answering rank is doing.
struct Answer {
  int seq = 0;
  char state[124] = {};
};

// The open InFlight guard of this process (at most one: the outer operation).
struct Slot {
  std::mutex mu;
  bool active = false;
  uint64_t generation = 0;
  const char* op = "";
  const std::string* axis = nullptr;
  const std::vector<int>* group = nullptr;
  int64_t bytes = 0;
  int64_t start_ns = 0;  // coarse_now_ns()
};

Slot& slot() {
  static Slot s;
  return s;
}

std::atomic<bool> g_watching{false};

// A copy of the slot (taken under its lock, so the communicator's name and group are alive).
struct Snapshot {
  bool active = false;
  uint64_t generation = 0;
  std::string what;  // "all_reduce on 'tsp' (4096 bytes, world ranks 0-1)"
  std::vector<int> group;
  double elapsed_s = 0;
};

Snapshot snapshot(bool describe) {
  Slot& s = slot();
  const int64_t now_ns = coarse_now_ns();
  std::lock_guard lock(s.mu);
  Snapshot out;
  out.active = s.active;
  if (!s.active) return out;
  out.generation = s.generation;
  out.elapsed_s = static_cast<double>(now_ns - s.start_ns) * 1e-9;
  if (describe) {
    std::ostringstream os;
    os << s.op << " on '" << (s.axis ? *s.axis : std::string("?")) << "' (" << s.bytes << " bytes";
    if (s.group) {
      out.group = *s.group;
      os << ", world ranks " << format_rank_ranges(out.group);
    }
    os << ")";
    out.what = os.str();
  }
  return out;
}

std::string seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", s);
  return buf;
}

// Signals go to the main thread (the preemption handlers), never to the watchdog's.
void block_async_signals() {
  sigset_t all;
  sigfillset(&all);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) sigdelset(&all, sig);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
}

}  // namespace

std::string format_rank_ranges(std::vector<int> ranks) {
  std::sort(ranks.begin(), ranks.end());
  ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
  std::ostringstream os;
  for (size_t i = 0; i < ranks.size();) {
    size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    if (i > 0) os << ", ";
    os << ranks[i];
    if (j > i) os << "-" << ranks[j];
    i = j + 1;
  }
  return os.str();
}

// ---------------------------------------------------------------------------------------------
// InFlight

InFlight::InFlight(const char* op, const std::string& axis, const std::vector<int>* group,
                   int64_t bytes) noexcept {
  if (!g_watching.load(std::memory_order_relaxed)) return;
  const int64_t now_ns = coarse_now_ns();
  Slot& s = slot();
  std::lock_guard lock(s.mu);
  if (s.active) return;
  s.active = true;
  s.generation += 1;
  s.op = op;
  s.axis = &axis;
  s.group = group;
  s.bytes = bytes;
  s.start_ns = now_ns;
  armed_ = true;
}

InFlight::~InFlight() {
  if (!armed_) return;
  Slot& s = slot();
  std::lock_guard lock(s.mu);
  s.active = false;
}

// ---------------------------------------------------------------------------------------------
// CommWatchdog

CommWatchdog::CommWatchdog(const Communicator& world, double timeout_s) : timeout_s_(timeout_s) {
  TSP_CHECK(std::isfinite(timeout_s) && timeout_s >= 0,
            "--comm-timeout must be a number of seconds >= 0 (0: off), got ", timeout_s);
  if (timeout_s == 0) return;
  TSP_CHECK(world.valid(), "CommWatchdog: null world communicator");
  if (g_watching.load()) TSP_THROW(CommError, "CommWatchdog: a watchdog is already running");
  tick_ = std::chrono::duration<double>(std::clamp(timeout_s / 8, 0.05, 1.0));
  grace_ = std::chrono::duration<double>(std::max(2.0, 4 * tick_.count()));
  int level = 0;
  check_mpi(MPI_Query_thread(&level), "MPI_Query_thread");
  can_ping_ = level == MPI_THREAD_MULTIPLE;
  ping_ = world.dup("watchdog");
  g_watching.store(true);
  thread_ = std::thread([this] { run(); });
}

CommWatchdog::~CommWatchdog() {
  if (!enabled()) return;
  if (std::uncaught_exceptions() == 0 && !MpiEnvironment::is_finalized()) {
    const InFlight watch("barrier at exit (before MPI_Finalize)", ping_.name(),
                         &ping_.world_ranks(), 0);
    MPI_Barrier(mpi::handle_of(ping_));  // an error here changes nothing at exit: ignored
  }
  {
    std::lock_guard lock(stop_mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  thread_.join();
  g_watching.store(false);
  // A probe's pings to a dead rank may never complete; freeing the communicator is still legal
  // (MPI frees it once they do), so nothing here can block.
  ping_ = Communicator{};
}

void CommWatchdog::run() {
  block_async_signals();
  std::unique_lock lock(stop_mu_);
  while (!stop_) {
    stop_cv_.wait_for(lock, tick_);
    if (stop_) break;
    lock.unlock();
    if (can_ping_) answer_pings();
    const Snapshot now = snapshot(false);
    if (now.active && now.elapsed_s > timeout_s_) {
      const Snapshot stuck = snapshot(true);
      if (stuck.active && stuck.generation == now.generation)
        on_timeout(stuck.generation, stuck.what, stuck.elapsed_s, stuck.group);
    }
    lock.lock();
  }
}

// Answers every pending ping with this rank's state. Matched probes (MPI_Improbe / MPI_Mrecv), so
// a concurrent receive on another thread can never take the message between probe and receive.
void CommWatchdog::answer_pings() {
  std::lock_guard lock(answer_mu_);
  const MPI_Comm ping = mpi::handle_of(ping_);
  for (;;) {
    int flag = 0;
    MPI_Message msg = MPI_MESSAGE_NULL;
    MPI_Status status;
    const int rc = MPI_Improbe(MPI_ANY_SOURCE, kPingTag, ping, &flag, &msg, &status);
    if (rc != MPI_SUCCESS || !flag) return;
    int seq = 0;
    if (MPI_Mrecv(&seq, 1, MPI_INT, &msg, MPI_STATUS_IGNORE) != MPI_SUCCESS) return;
    Answer a;
    a.seq = seq;
    const Snapshot s = snapshot(true);
    const std::string state = s.active ? "in " + s.what + " for " + seconds(s.elapsed_s)
                                       : std::string("not in a communication call");
    std::snprintf(a.state, sizeof a.state, "%s", state.c_str());
    // A few bytes: sent eagerly, so this returns at once (the pinging rank has its receive posted).
    MPI_Send(&a, sizeof a, MPI_BYTE, status.MPI_SOURCE, kAnswerTag, ping);
  }
}

std::vector<PeerReply> CommWatchdog::probe_peers(double grace_s) {
  TSP_CHECK(enabled() && can_ping_,
            "probe_peers: the watchdog is off or MPI lacks MPI_THREAD_MULTIPLE");
  const int me = ping_.rank(), n = ping_.size();
  const int seq = ++seq_;
  ping_payload_ = seq;
  std::vector<PeerReply> replies;
  std::vector<Answer> answers(static_cast<size_t>(n));
  std::vector<MPI_Request> recvs(static_cast<size_t>(n), MPI_REQUEST_NULL);
  const MPI_Comm ping = mpi::handle_of(ping_);
  for (int r = 0; r < n; ++r) {
    if (r == me) continue;
    replies.push_back(
        {.world_rank = ping_.world_ranks()[static_cast<size_t>(r)], .heard = false, .state = {}});
    MPI_Irecv(&answers[static_cast<size_t>(r)], sizeof(Answer), MPI_BYTE, r, kAnswerTag,
              ping, &recvs[static_cast<size_t>(r)]);
    MPI_Request send = MPI_REQUEST_NULL;
    MPI_Isend(&ping_payload_, 1, MPI_INT, r, kPingTag, ping, &send);
    MPI_Request_free(&send);  // completes on its own (eager); a dead peer's never matters
  }
  const Clock::time_point until =
      Clock::now() +
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(grace_s));
  int pending = n - 1;
  while (pending > 0 && Clock::now() < until) {
    answer_pings();  // peers that time out at the same moment ping us too
    for (int r = 0; r < n; ++r) {
      MPI_Request& req = recvs[static_cast<size_t>(r)];
      if (req == MPI_REQUEST_NULL) continue;
      int done = 0;
      if (MPI_Test(&req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS || !done) continue;
      const Answer& a = answers[static_cast<size_t>(r)];
      if (a.seq != seq) {  // a late answer to an earlier round: wait for this round's
        MPI_Irecv(&answers[static_cast<size_t>(r)], sizeof(Answer), MPI_BYTE, r, kAnswerTag,
                  ping, &req);
        continue;
      }
      PeerReply& p = replies[static_cast<size_t>(r < me ? r : r - 1)];
      p.heard = true;
      p.state.assign(a.state, strnlen(a.state, sizeof a.state));
      --pending;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (MPI_Request& req : recvs) {
    if (req == MPI_REQUEST_NULL) continue;
    MPI_Cancel(&req);  // the peer did not answer in time: withdraw the receive
    MPI_Wait(&req, MPI_STATUS_IGNORE);
  }
  return replies;
}

void CommWatchdog::on_timeout(uint64_t generation, const std::string& what, double elapsed_s,
                              std::vector<int> group) {
  std::sort(group.begin(), group.end());
  std::vector<PeerReply> replies;
  if (can_ping_) replies = probe_peers(grace_.count());
  const Snapshot after = snapshot(false);
  if (!after.active || after.generation != generation) return;  // it completed after all
  std::ostringstream os;
  os << "comm timeout: " << what << " has waited " << seconds(elapsed_s)
     << ", more than --comm-timeout " << timeout_s_ << " s; ";
  if (!can_ping_) {
    os << "peers not probed (MPI lacks MPI_THREAD_MULTIPLE); the operation's group is world ranks "
       << (group.empty() ? std::string("unknown") : format_rank_ranges(group)) << "; ";
  } else {
    std::vector<int> silent;
    for (const PeerReply& p : replies)
      if (!p.heard) silent.push_back(p.world_rank);
    if (silent.empty())
      os << "every rank answered a liveness ping (none is stopped or dead: a peer is elsewhere, "
            "or slow); ";
    else
      os << "not heard from: rank" << (silent.size() > 1 ? "s " : " ") << format_rank_ranges(silent)
         << " (no answer to a liveness ping within " << seconds(grace_.count())
         << ": stopped, hung or dead); ";
    int listed = 0, more = 0;
    for (const PeerReply& p : replies) {
      const bool in_group =
          group.empty() || std::binary_search(group.begin(), group.end(), p.world_rank);
      if (!p.heard || !in_group) continue;
      if (listed == 8) {
        ++more;
        continue;
      }
      os << (listed++ == 0 ? "peers in the group: " : ", ") << "rank " << p.world_rank << " "
         << p.state;
    }
    if (more > 0) os << " and " << more << " more";
    if (listed > 0) os << "; ";
  }
  os << "aborting every rank (exit code " << kCommTimeoutExitCode
     << "). If the peers are only slow (a long checkpoint write, a loaded machine), raise "
        "--comm-timeout (0: off)";
  abort_job(os.str(), kCommTimeoutExitCode);
}

}  // namespace tsp::comm
