// The `tsp` command line: subcommands train, eval, generate, plan, bench and compare, their flags
// (RunConfig's field list for `train`), and the top-level error handling. MPI is initialised only
// by the distributed paths (train/generate with a parallel --layout, bench), never by main().
#pragma once

#include <ostream>
#include <string>

namespace tsp::cli {

// Parses argv and runs the chosen subcommand, writing normal output to `out`. A usage error
// (unknown flag, missing value, no subcommand) prints one line "tsp: error: ..." to `err` and
// returns 2; --help prints the help to `out` and returns 0. Errors of the run itself (tsp::Error,
// std::exception) propagate to the caller.
int run_cli(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

// One-line user message of an exception text: the " [cond failed at file:line]" suffix of
// TSP_CHECK is dropped and newlines become spaces.
std::string one_line_message(const std::string& what);

// main(): run_cli with every tsp::Error and std::exception caught and printed as
// "tsp: error: <message>" (one line) on stderr; returns 1 for those.
int guarded_main(int argc, char** argv);

}  // namespace tsp::cli
