// `tsp train --layout tsp --tsp 2` with one rank on each of two emulated hosts (scripts/hosts.sh:
// network namespaces joined by a bridge, Open MPI over TCP only, its daemons started by
// scripts/hosts-agent.sh). Registered by tests/cluster/CMakeLists.txt as ctest test
// cross_host_tsp.np2 (label "hosts"); skipped, with the reason, where namespaces cannot be made.
//
// 1. The cross-host run trains like one rank: its losses match a single-rank run's within the
//    rounding bounds of tests/fp_bounds.h (the reasoning of tests/cli/tsp_cli_mpi_test.cpp), and
//    its checkpoint, evaluated by one rank, reproduces the validation loss it printed.
// 2. A remote rank killed mid-run ends the whole job, with a message, within a bound (no hang).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
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

#include <nlohmann/json.hpp>

#include "fp_bounds.h"
#include "scratch_dir.h"
#include "tsp/model/model_config.h"

namespace tsp::cluster {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// The test's own hosts, apart from a user's `hosts.sh up` (default name tsp, subnet 10.231.0).
constexpr const char* kName = "tspt";
constexpr const char* kSubnet = "10.231.77";

struct Result {
  int rc = -1;
  std::string out;
};

Result sh(const fs::path& dir, const std::string& command, int seconds) {
  const fs::path out = dir / "output.txt";
  const std::string cmd = "timeout -k 5 " + std::to_string(seconds) + " " + command + " > '" + out.string() +
                          "' 2>&1 < /dev/null";
  const int status = std::system(cmd.c_str());
  Result r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = testing::read_bytes(out);
  return r;
}

std::string q(const fs::path& p) {
  std::string s = "'";
  s += p.string();
  s += "'";
  return s;
}
std::string hosts_sh() { return q(fs::path(TSP_SOURCE_DIR) / "scripts" / "hosts.sh"); }
std::string tsp() { return q(TSP_BINARY); }

// mpirun over the two emulated hosts: TCP only, the agent instead of ssh, one rank per host, not
// bound (each host's daemon would pin its rank to core 0 of the one machine both share).
std::string mpirun_hosts() {
  const std::string subnet = std::string(kSubnet) + ".0/24";
  return q(TSP_MPIEXEC) + " --hostfile /run/tsp-hosts/" + kName + "/hostfile -np 2 --mca plm_rsh_agent " +
         q(fs::path(TSP_SOURCE_DIR) / "scripts" / "hosts-agent.sh") +
         " --mca plm_rsh_no_tree_spawn 1 --mca btl tcp,self --mca btl_tcp_if_include " + subnet +
         " --mca oob_tcp_if_include " + subnet + " --bind-to none -x OMP_NUM_THREADS=1 ";
}

// Removes the hosts when the test ends, however it ends (a failed ASSERT returns through here).
struct HostsDown {
  fs::path dir;
  ~HostsDown() {
    const Result r = sh(dir, hosts_sh() + " down --name " + kName, 60);
    if (r.rc != 0) ADD_FAILURE() << "hosts.sh down failed:\n" << r.out;
  }
};

// step -> (loss, lr, grad_norm) of the "train" records of a metrics file.
struct StepRecord {
  double loss = NAN, lr = NAN, grad_norm = NAN;
};
std::map<int, StepRecord> train_records(const fs::path& metrics) {
  std::map<int, StepRecord> m;
  std::ifstream in(metrics);
  std::string line;
  while (std::getline(in, line)) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j["type"] == "train")
      m[j["step"].get<int>()] = {j["loss"].get<double>(), j["lr"].get<double>(), j["grad_norm"].get<double>()};
  }
  return m;
}

double number_after(const std::string& text, const std::string& re) {
  std::smatch m;
  return std::regex_search(text, m, std::regex(re)) ? std::stod(m[1].str()) : NAN;
}

// Pids of the `tsp` processes inside network namespace `ns`.
std::vector<int> tsp_pids_in(const fs::path& dir, const std::string& ns) {
  const Result r = sh(dir, "ip netns pids " + ns, 10);
  std::vector<int> pids;
  std::istringstream in(r.out);
  int pid = 0;
  while (in >> pid) {
    std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
    std::string name;
    if (std::getline(comm, name) && name == "tsp") pids.push_back(pid);
  }
  return pids;
}

TEST(CrossHost, TspAcrossTwoHostsTrainsLikeOneRankAndAKilledRankEndsTheJob) {
  // Where namespaces cannot be made (not root, no iproute2, a chroot or container without the
  // privilege), hosts.sh says why and exits 77: skip with that reason, before touching anything.
  Result r;
  {
    const testing::ScratchDir probe;
    r = sh(probe.path(), hosts_sh() + " check", 60);
  }
  if (r.rc == 77) GTEST_SKIP() << "no emulated hosts here: " << r.out;
  ASSERT_EQ(r.rc, 0) << r.out;
  const fs::path work = fs::path(TSP_WORK_ROOT) / "cross_host_work";
  fs::remove_all(work);
  fs::create_directories(work);
  sh(work, hosts_sh() + " down --name " + kName, 60);  // what a killed earlier run left
  HostsDown guard{fs::path(TSP_WORK_ROOT)};
  r = sh(work, hosts_sh() + " up 2 --name " + kName + " --subnet " + kSubnet, 60);
  if (r.rc == 77) GTEST_SKIP() << "no emulated hosts here: " << r.out;
  ASSERT_EQ(r.rc, 0) << "hosts.sh up failed:\n" << r.out;

  // --- 1. the same training on one rank and across the two hosts ---------------------------------
  const int64_t B = 2, S = 64;
  const std::string common = " train --preset tiny --steps 2 --batch 2 --seq 64 --warmup 1 --eval-batches 1";
  const fs::path single_m = work / "single.jsonl", cross_m = work / "cross.jsonl";
  r = sh(work, "env OMP_NUM_THREADS=1 " + tsp() + common + " --metrics " + q(single_m), 120);
  ASSERT_EQ(r.rc, 0) << "single-rank training failed:\n" << r.out;
  const fs::path ckpt = work / "ckpt";
  const Result cross = sh(work, mpirun_hosts() + tsp() + common + " --layout tsp --tsp 2 --comm-timeout 60" +
                                    " --metrics " + q(cross_m) + " --checkpoint-dir " + q(ckpt), 180);
  ASSERT_EQ(cross.rc, 0) << "cross-host training failed:\n" << cross.out;
  // It really ran on two hosts: the engine's rank-to-host map (hostnames from the agent's UTS
  // namespaces) and its warning that the tsp group crosses the network.
  const std::string h0 = std::string(kName) + "-h0", h1 = std::string(kName) + "-h1";
  for (const std::string& needle : {"rank 0 -> host " + h0, "rank 1 -> host " + h1,
                                    "WARNING: tsp group {0,1} spans hosts " + h0 + ", " + h1})
    EXPECT_NE(cross.out.find(needle), std::string::npos) << "'" << needle << "' missing:\n" << cross.out;

  const std::map<int, StepRecord> single = train_records(single_m), dist = train_records(cross_m);
  ASSERT_TRUE(single.count(1) && single.count(2)) << testing::read_bytes(single_m);
  ASSERT_TRUE(dist.count(1) && dist.count(2)) << testing::read_bytes(cross_m);
  // Bounds as tests/cli/tsp_cli_mpi_test.cpp (BenchLayouts) derives them, here from the metrics'
  // full doubles (no printing term):
  //  - step 1 is the loss of the same initial weights on the same batch: each run's mean of
  //    non-negative per-token terms is within gamma_f of exact relative to itself, gamma_f the sum
  //    of the lengths of the chained fp32 reductions of the tiny preset's forward at S 64, T 128
  //    (+2 for the all-reduce over 2 ranks) times 2^-24: the runs differ by <= 2 gamma_f L1;
  //  - step 2 adds what one AdamW step on gradients rounded differently may do to the loss:
  //    <= 8 lr1 gamma_b sqrt(P) |G1|, gamma_b the forward+backward chain (+2 all-reduce, +2 clip).
  // TCP instead of shared memory changes no arithmetic: the same bound as on one host.
  const model::ModelConfig c = model::preset("tiny");
  const double gamma_f = testing::model_chain(c, S, B * S, /*backward=*/false, /*extra=*/2).gamma;
  const double gamma_b = testing::model_chain(c, S, B * S, /*backward=*/true, /*extra=*/4).gamma;
  const double l1 = single.at(1).loss, l2 = single.at(2).loss;
  EXPECT_NEAR(dist.at(1).loss, l1, 2 * gamma_f * l1) << cross.out;
  const double step_term =
      8 * single.at(1).lr * gamma_b * std::sqrt(static_cast<double>(c.total_params())) * single.at(1).grad_norm;
  EXPECT_NEAR(dist.at(2).loss, l2, 2 * gamma_f * l2 + step_term) << cross.out;
  // A run that does not train (or trains on other data) misses this: the first step lowers the
  // loss by far more than the bound.
  EXPECT_GT(l1 - l2, 2 * gamma_f * l2 + step_term) << "the bound would not tell training from none";

  // The checkpoint rank 0 wrote holds the cross-host run's weights: one rank evaluating it gets
  // the validation loss the two hosts printed, within the forward bound of the two evaluations
  // (2 gamma_f, the tiny preset's chain at the evaluation's S 64 and B 2) plus printing.
  const double dist_val = number_after(cross.out, R"(val step 2 \| val_loss (\d+\.\d+))");
  ASSERT_FALSE(std::isnan(dist_val)) << cross.out;
  r = sh(work, "env OMP_NUM_THREADS=1 " + tsp() + " eval --checkpoint " + q(ckpt), 60);
  ASSERT_EQ(r.rc, 0) << r.out;
  const double eval_val = number_after(r.out, R"(val_loss (\d+\.\d+))");
  EXPECT_NEAR(eval_val, dist_val, 2 * gamma_f * dist_val + 2 * testing::kPrinted6) << r.out;

  // --- 2. kill the remote rank after its first step -----------------------------------------------
  // The job runs in the background (its own time limit: a hang fails the test, never stalls it);
  // rank 1 (on host 1) gets SIGKILL once step 1 is printed. mpirun's daemon on host 1 sees its
  // child die and mpirun ends the job; should that notice get lost, rank 0's TCP connection to
  // the dead rank breaks, and the watchdog (--comm-timeout 10) is the last guard.
  const int comm_timeout = 10;
  const fs::path kill_out = work / "kill_output.txt", kill_rc = work / "kill_rc.txt";
  const std::string job = mpirun_hosts() + tsp() +
                          " train --preset tiny --steps 100000 --batch 2 --seq 256 --warmup 1 --eval-batches 1"
                          " --layout tsp --tsp 2 --comm-timeout " + std::to_string(comm_timeout);
  const std::string bg = "(timeout -k 5 150 " + job + " > " + q(kill_out) + " 2>&1 < /dev/null; echo $? > " +
                         q(kill_rc) + ") > /dev/null 2>&1 &";
  ASSERT_EQ(std::system(bg.c_str()), 0);
  auto wait_for = [](auto ready, double seconds) {
    const auto end = Clock::now() + std::chrono::duration<double>(seconds);
    while (Clock::now() < end) {
      if (ready()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return ready();
  };
  const bool stepped = wait_for([&] { return testing::read_bytes(kill_out).find("step 1/") != std::string::npos; }, 90);
  std::vector<int> victims = tsp_pids_in(work, h1);
  if (!stepped || victims.size() != 1) {
    wait_for([&] { return fs::exists(kill_rc); }, 160);
    FAIL() << "expected one tsp process on " << h1 << " after step 1, found " << victims.size()
           << " (step 1 printed: " << stepped << "):\n" << testing::read_bytes(kill_out);
  }
  const auto killed_at = Clock::now();
  ASSERT_EQ(::kill(victims[0], SIGKILL), 0);
  // Bound: the watchdog's timeout, plus its reaction (a check every timeout/8, a 2 s liveness
  // ping) and MPI_Abort's teardown, which take a few seconds: comm_timeout + 10 s. Either path
  // (mpirun noticing the dead process, or the watchdog) must end the job within it.
  const double bound_s = comm_timeout + 10;
  const bool ended = wait_for([&] { return fs::exists(kill_rc) && !testing::read_bytes(kill_rc).empty(); }, bound_s);
  const double took = std::chrono::duration<double>(Clock::now() - killed_at).count();
  const std::string out = testing::read_bytes(kill_out);
  ASSERT_TRUE(ended) << "the job did not end within " << bound_s << " s of killing rank 1:\n" << out;
  const int rc = std::stoi(testing::read_bytes(kill_rc));
  EXPECT_NE(rc, 0) << out;
  // mpirun names the dead process ("process rank 1 with PID ... exited on signal 9 (Killed)"), or
  // the watchdog the rank not heard from ("not heard from: rank 1"); never the survivor (rank 0
  // would die of SIGPIPE writing to the dead peer's socket if the engine did not ignore it).
  const bool named = (out.find("process rank 1 with PID") != std::string::npos &&
                      out.find("signal 9") != std::string::npos) ||
                     out.find("not heard from: rank 1") != std::string::npos;
  EXPECT_TRUE(named) << "no message naming the lost rank:\n" << out;
  EXPECT_TRUE(tsp_pids_in(work, h0).empty()) << "rank 0 outlived the job on " << h0;
  std::printf("[ cross-host ] killed rank 1 on %s after step 1; the job ended in %.1f s with exit code %d\n",
              h1.c_str(), took, rc);
  std::printf("%s", out.c_str());
  if (!::testing::Test::HasFailure()) fs::remove_all(work);
}

}  // namespace
}  // namespace tsp::cluster
