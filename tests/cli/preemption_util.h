// Helpers of the preemption tests (preemption_test.cpp, preemption_mpi_test.cpp): run `tsp` (or
// mpirun) as a child process whose pid the test knows, read the metrics file while it runs, wait
// with a time limit.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace tsp::testing {

// A child process in its own process group (so a timeout can kill all of it, mpirun's ranks
// included), stdout and stderr into `out`.
struct Child {
  pid_t pid = -1;
  bool exited = false;
  int status = 0;
};

inline Child spawn(const std::vector<std::string>& argv, const std::filesystem::path& out) {
  setenv("OMP_NUM_THREADS", "1", 1);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const std::string out_path = out.string();
  Child c;
  c.pid = fork();
  if (c.pid == 0) {
    setpgid(0, 0);
    const int fd = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) _exit(126);
    dup2(fd, 1);
    dup2(fd, 2);
    execv(args[0], args.data());
    _exit(127);
  }
  if (c.pid > 0) setpgid(c.pid, c.pid);
  return c;
}

// Reaps the child if it has ended; true when it has.
inline bool poll_exit(Child& c) {
  if (c.exited) return true;
  int st = 0;
  if (waitpid(c.pid, &st, WNOHANG) == c.pid) {
    c.exited = true;
    c.status = st;
  }
  return c.exited;
}

// Waits up to `seconds` for the child to end; on timeout kills its whole process group and
// returns false.
inline bool wait_exit(Child& c, double seconds) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!poll_exit(c)) {
    if (std::chrono::steady_clock::now() > until) {
      kill(-c.pid, SIGKILL);
      waitpid(c.pid, &c.status, 0);
      c.exited = true;
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// step -> loss of the "train" records of a metrics file (JSON lines).
inline std::map<int64_t, double> train_losses(const std::filesystem::path& metrics) {
  std::map<int64_t, double> losses;
  std::ifstream in(metrics);
  std::string line;
  const std::regex step_re(R"("step":(\d+))"), loss_re(R"("loss":([-+0-9.eE]+))");
  while (std::getline(in, line)) {
    if (line.find(R"("type":"train")") == std::string::npos || line.back() != '}') continue;
    std::smatch s, l;
    if (std::regex_search(line, s, step_re) && std::regex_search(line, l, loss_re))
      losses[std::stoll(s[1].str())] = std::stod(l[1].str());
  }
  return losses;
}

// Waits until the metrics file shows >= `steps` train steps; false when the child ends first or
// after `seconds`.
inline bool wait_for_steps(Child& c, const std::filesystem::path& metrics, int64_t steps, double seconds) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < until) {
    if (static_cast<int64_t>(train_losses(metrics).size()) >= steps) return true;
    if (poll_exit(c)) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::string describe(const Child& c) {
  if (WIFEXITED(c.status)) return "exit code " + std::to_string(WEXITSTATUS(c.status));
  if (WIFSIGNALED(c.status)) return "killed by signal " + std::to_string(WTERMSIG(c.status));
  return "status " + std::to_string(c.status);
}

// Expects the losses of `resumed` for every step after `from` up to `to` to equal those of
// `uninterrupted` (the resume is exact: equal doubles; 1e-6 leaves room for nothing but noise).
inline int64_t count_equal_losses(const std::map<int64_t, double>& resumed,
                                  const std::map<int64_t, double>& uninterrupted, int64_t from, int64_t to,
                                  std::string& report) {
  int64_t equal = 0;
  for (int64_t s = from + 1; s <= to; ++s) {
    const auto r = resumed.find(s);
    const auto u = uninterrupted.find(s);
    if (r == resumed.end() || u == uninterrupted.end()) {
      report += "step " + std::to_string(s) + " missing; ";
      continue;
    }
    if (std::abs(r->second - u->second) <= 1e-6) {
      ++equal;
    } else {
      report += "step " + std::to_string(s) + ": " + std::to_string(r->second) + " vs " + std::to_string(u->second) + "; ";
    }
  }
  return equal;
}

// The pid of the process running `binary` as world rank `rank` of an Open MPI job whose command
// line contains `marker` (read from /proc: argv[0] and OMPI_COMM_WORLD_RANK); -1 if none.
inline pid_t mpi_rank_pid(const std::string& binary, const std::string& marker, int rank) {
  const std::string want = "OMPI_COMM_WORLD_RANK=" + std::to_string(rank);
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string cmdline = slurp(e.path() / "cmdline");
    if (cmdline.substr(0, cmdline.find('\0')) != binary || cmdline.find(marker) == std::string::npos) continue;
    const std::string environ = slurp(e.path() / "environ");
    for (size_t at = 0; at < environ.size();) {
      const size_t end = std::min(environ.find('\0', at), environ.size());
      if (environ.compare(at, end - at, want) == 0) return static_cast<pid_t>(std::stol(name));
      at = end + 1;
    }
  }
  return -1;
}

}  // namespace tsp::testing
