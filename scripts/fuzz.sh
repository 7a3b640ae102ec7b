#!/usr/bin/env bash
# `make fuzz`: builds the fuzz targets (fuzz/) with clang, libFuzzer, ASan and UBSan in build/fuzz,
# writes their seeds with the engine's own writers, and fuzzes each target in turn for
# FUZZ_SECONDS, printing executions, coverage (libFuzzer's final cov/ft) and what it found.
#   FUZZ_SECONDS=600 FUZZ_TARGETS="safetensors config_json token_file train_state tokenizer_json" scripts/fuzz.sh
# The corpus grows in build/fuzz/corpus/<target>/ across runs. A crash, leak, UB report, timeout
# or out-of-memory is copied to tests/fuzz-crashes/<target>/ (ctest replays that folder in
# `make test`) and the script exits 1 after the remaining targets ran. Needs clang and libFuzzer:
# scripts/install-deps.sh --fuzz.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
seconds=${FUZZ_SECONDS:-600}
targets=${FUZZ_TARGETS:-safetensors config_json token_file train_state tokenizer_json}
jobs=${JOBS:-$(nproc)}
build=build/fuzz

# Largest input per target: a few times its biggest seed (tiny model, states of that model).
declare -A max_len=([safetensors]=8192 [config_json]=4096 [token_file]=1024 [train_state]=16384 [tokenizer_json]=4096)
for t in $targets; do
  [ -n "${max_len[$t]:-}" ] || { echo "fuzz: unknown target '$t' (use: ${!max_len[*]})" >&2; exit 2; }
done
case "$seconds" in ''|*[!0-9]*) echo "fuzz: FUZZ_SECONDS must be a positive integer, got '$seconds'" >&2; exit 2 ;; esac
[ "$seconds" -gt 0 ] || { echo "fuzz: FUZZ_SECONDS must be a positive integer, got '$seconds'" >&2; exit 2; }
command -v clang++ >/dev/null && ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 ||
  { echo "fuzz: needs clang and libFuzzer: run scripts/install-deps.sh --fuzz" >&2; exit 1; }

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
# TSP_SANITIZE adds ASan + UBSan (aborting on UB) to every tsp library; fuzzer-no-link adds
# libFuzzer's coverage instrumentation to them; only the targets link libFuzzer itself.
CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link" \
  -DTSP_SANITIZE=ON -DTSP_BUILD_BENCH=OFF -DTSP_FUZZ_ENGINE=libfuzzer "${launcher[@]}" >/dev/null
cmake --build "$build" -j"$jobs" --target tsp_fuzz_seeds $(for t in $targets; do echo tsp_fuzz_$t; done)
ASAN_OPTIONS=detect_leaks=0 "$build/fuzz/tsp_fuzz_seeds" "$build/seeds" >/dev/null

found=0
summary=()
for t in $targets; do
  corpus="$build/corpus/$t" artifacts="$build/artifacts/$t" log="$build/logs/$t.log"
  mkdir -p "$corpus" "$artifacts" "$build/logs" "tests/fuzz-crashes/$t"
  rm -f "$artifacts"/*
  dict=()
  [ -f "fuzz/$t.dict" ] && dict=(-dict="fuzz/$t.dict")
  echo "fuzz: $t for $seconds s (log $log)"
  rc=0
  # The first folder collects new inputs; the others (seeds, committed crashes) are read only.
  "$build/fuzz/tsp_fuzz_$t" "$corpus" "$build/seeds/$t" "fuzz/seeds/$t" "tests/fuzz-crashes/$t" \
    -max_total_time="$seconds" -max_len="${max_len[$t]}" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 "${dict[@]}" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1)
  units=$(find "$corpus" -type f | wc -l)
  result="no crash, leak or UB"
  for a in "$artifacts"/crash-* "$artifacts"/leak-* "$artifacts"/timeout-* "$artifacts"/oom-*; do
    [ -f "$a" ] || continue
    cp "$a" "tests/fuzz-crashes/$t/"
    echo "fuzz: $t: FOUND $(basename "$a"), copied to tests/fuzz-crashes/$t/ (ctest replays it): fix the" \
         "reader, then commit the file; details in $log" >&2
    result="FOUND $(basename "$a")"
    found=1
  done
  if [ "$rc" -ne 0 ] && [ "$result" = "no crash, leak or UB" ]; then
    echo "fuzz: $t: libFuzzer exited $rc without an artifact; see $log" >&2
    tail -20 "$log" >&2
    result="libFuzzer exit $rc"
    found=1
  fi
  summary+=("$(printf '%-12s %8s s %12s execs %8s exec/s  %-22s corpus %6s  %s' "$t" "$seconds" "${execs:-?}" \
    "${rate:-?}" "${cov:-cov: ?}" "$units" "$result")")
done
echo "fuzz: summary"
printf '  %s\n' "${summary[@]}"
exit "$found"
