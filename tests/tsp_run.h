// Runs the built `tsp` binary (TSP_BINARY, defined by the test target) in a shell from a test, with
// one OpenMP thread, stdin from a file, and stdout/stderr captured through files in a scratch dir.
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <string>

#include "scratch_dir.h"

namespace tsp::testing {

struct TspResult {
  int rc = -1;  // exit status, -1 when killed by a signal
  std::string out, err;
};

inline TspResult run_tsp(const ScratchDir& dir, const std::string& args, const std::string& stdin_text = "") {
  write_bytes(dir / "stdin.txt", stdin_text);
  const std::string cmd = std::string("OMP_NUM_THREADS=1 '") + TSP_BINARY + "' " + args + " < '" +
                          (dir / "stdin.txt").string() + "' > '" + (dir / "stdout.txt").string() + "' 2> '" +
                          (dir / "stderr.txt").string() + "'";
  const int status = std::system(cmd.c_str());
  TspResult r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_bytes(dir / "stdout.txt");
  r.err = read_bytes(dir / "stderr.txt");
  return r;
}

}  // namespace tsp::testing
