#!/usr/bin/env bash
# Side by side: one Llama decoder block forward + backward (h = 512, 8 heads, intermediate 2048,
# S = 2048, B = 1, one core) in tsp (build/release/bench/model/tsp_bench_model, BM_DecoderBlock
# with bwd:1) and in PyTorch 1.13 from Debian (bench/pytorch/llama_block.py, the same block), fp32
# and bf16. Runs both in one invocation, alternating tsp and PyTorch for ROUNDS rounds so that
# machine noise hits both, then prints per dtype the medians over rounds of tokens/s and the
# ratio tsp / PyTorch (issue #3 asks for >= 2x).
#
#   bench/compare_block.sh            # ROUNDS=3 by default
#   ROUNDS=5 TORCH_ITERS=3 TORCH_MIN_TIME=6 bench/compare_block.sh
#   TSP_BENCH=path/to/tsp_bench_model PYTHON=/usr/bin/python3 bench/compare_block.sh
#
# Needs: the release build of tsp_bench_model (cmake --preset release && cmake --build
# build/release -j2 --target tsp_bench_model) and Debian's python3-torch (scripts/install-deps.sh
# --bench installs it), run with /usr/bin/python3. Both sides run with OMP_NUM_THREADS=1 (PyTorch also
# torch.set_num_threads(1)). Rates use CPU time on both sides (Google Benchmark's counter default,
# time.process_time in the script); the wall-clock rates are printed too. Per-round raw JSON is
# kept in $OUT_DIR (default: a temporary directory, removed at exit unless KEEP=1).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TSP_BENCH="${TSP_BENCH:-$ROOT/build/release/bench/model/tsp_bench_model}"
PYTHON="${PYTHON:-/usr/bin/python3}"
ROUNDS="${ROUNDS:-3}"
TORCH_WARMUP="${TORCH_WARMUP:-1}"
TORCH_ITERS="${TORCH_ITERS:-2}"
TORCH_MIN_TIME="${TORCH_MIN_TIME:-4}"
PY_SCRIPT="$ROOT/bench/pytorch/llama_block.py"

die() { echo "compare_block.sh: error: $*" >&2; exit 1; }

[[ -x "$TSP_BENCH" ]] || die "tsp benchmark binary not found at $TSP_BENCH
  build it: cmake --preset release && cmake --build build/release -j2 --target tsp_bench_model"
[[ -x "$PYTHON" ]] || die "$PYTHON not found: scripts/install-deps.sh --bench installs Debian's python3 and PyTorch"
"$PYTHON" -c 'import torch' 2>/dev/null || die "$PYTHON cannot import torch
  install Debian's PyTorch: scripts/install-deps.sh --bench (apt-get install python3-torch)"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer (got '$ROUNDS')"

if [[ -n "${OUT_DIR:-}" ]]; then
  mkdir -p "$OUT_DIR"
else
  OUT_DIR="$(mktemp -d /tmp/compare_block.XXXXXX)"
  [[ "${KEEP:-0}" == 1 ]] || trap 'rm -rf "$OUT_DIR"' EXIT
fi

export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
echo "load before: $(uptime)"
echo "tsp:     $TSP_BENCH"
echo "pytorch: $("$PYTHON" -c 'import torch; print(torch.__version__)') ($PYTHON)"
echo "rounds:  $ROUNDS (tsp: Google Benchmark min_time 2 s per dtype; PyTorch: $TORCH_WARMUP warm-up + >= $TORCH_ITERS timed iterations and >= $TORCH_MIN_TIME s per dtype)"
# Debian's torch calls whatever libblas.so.3 the alternatives system selects. The default
# (libblas3) is the unoptimized reference BLAS, ~20x slower than OpenBLAS for PyTorch's fp32 GEMMs:
# comparing against it would flatter tsp, so say which one PyTorch gets.
blas="$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || echo '?')"
echo "pytorch BLAS: $blas"
if [[ "$blas" == */blas/libblas.so* ]]; then
  echo "WARNING: PyTorch runs on the reference BLAS (libblas3): its fp32 numbers are not representative." >&2
  echo "         install an optimized one: apt-get install -y libopenblas0-pthread" >&2
fi
# Debian 12's OpenBLAS 0.3.21 does not know AMD Zen 4/5 and falls back to its Haswell (AVX2)
# kernels there (seen on Zen 5: 54 GFLOP/s for a 2048x512x1536 fp32 GEMM, 72 with SkylakeX).
# Give PyTorch its best: the AVX-512 kernels wherever the CPU has AVX-512, unless the caller chose.
if [[ -z "${OPENBLAS_CORETYPE:-}" ]] && grep -qw avx512f /proc/cpuinfo; then
  export OPENBLAS_CORETYPE=SkylakeX
fi
echo "pytorch OpenBLAS core: ${OPENBLAS_CORETYPE:-auto-detected}"

for ((r = 1; r <= ROUNDS; r++)); do
  # Alternate which side goes first so that a slow stretch does not always land on the same one.
  if ((r % 2)); then order="tsp torch"; else order="torch tsp"; fi
  for side in $order; do
    echo "round $r/$ROUNDS: $side ..." >&2
    if [[ $side == tsp ]]; then
      "$TSP_BENCH" --benchmark_filter='^BM_DecoderBlock/bf16:[01]/bwd:1' \
        --benchmark_format=json >"$OUT_DIR/tsp_$r.json" 2>"$OUT_DIR/tsp_$r.err" ||
        die "tsp_bench_model failed (see $OUT_DIR/tsp_$r.err)"
    else
      "$PYTHON" "$PY_SCRIPT" --dtype both --threads 1 --warmup "$TORCH_WARMUP" \
        --iters "$TORCH_ITERS" --min-time "$TORCH_MIN_TIME" >"$OUT_DIR/torch_$r.json" 2>"$OUT_DIR/torch_$r.err" ||
        die "llama_block.py failed (see $OUT_DIR/torch_$r.err)"
    fi
  done
done

echo "load after:  $(uptime)"

"$PYTHON" - "$OUT_DIR" "$ROUNDS" <<'EOF'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
tokens = 2048  # B * S of both benchmarks
ours = {"f32": {"cpu": [], "wall": []}, "bf16": {"cpu": [], "wall": []}}
theirs = {"f32": {"cpu": [], "wall": []}, "bf16": {"cpu": [], "wall": []}}
scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
for r in range(1, rounds + 1):
    for b in json.load(open(f"{out}/tsp_{r}.json"))["benchmarks"]:
        dt = "bf16" if "/bf16:1/" in b["name"] else "f32"
        u = scale[b.get("time_unit", "ns")]
        ours[dt]["cpu"].append(tokens / (b["cpu_time"] * u))
        ours[dt]["wall"].append(tokens / (b["real_time"] * u))
    t = json.load(open(f"{out}/torch_{r}.json"))
    for dt, v in t["results"].items():
        theirs[dt]["cpu"].append(v["tokens_per_s"])
        theirs[dt]["wall"].append(v["tokens_per_s_wall"])
med = statistics.median
print()
print(f"One decoder block fwd+bwd, h=512, 8 heads, F=2048, S=2048, B=1, one thread; "
      f"medians over {rounds} rounds; PyTorch {t['torch']} ({t.get('cpu_capability', '?')})")
print(f"{'dtype':<6} {'tsp tok/s':>10} {'PyTorch tok/s':>14} {'ratio':>7}   "
      f"{'(wall: tsp':>11} {'PyTorch':>8} {'ratio)':>7}")
for dt in ("f32", "bf16"):
    o, p = med(ours[dt]["cpu"]), med(theirs[dt]["cpu"])
    ow, pw = med(ours[dt]["wall"]), med(theirs[dt]["wall"])
    print(f"{dt:<6} {o:>10.0f} {p:>14.0f} {o / p:>6.2f}x   {ow:>11.0f} {pw:>8.0f} {ow / pw:>6.2f}x")
print()
print(f"PyTorch BLAS: {t.get('blas', '?')}")
print("per round (CPU-time tokens/s):")
for dt in ("f32", "bf16"):
    print(f"  {dt:<5} tsp     " + " ".join(f"{v:8.0f}" for v in ours[dt]["cpu"]))
    print(f"  {dt:<5} PyTorch " + " ".join(f"{v:8.0f}" for v in theirs[dt]["cpu"]))
    ratios = [o / p for o, p in zip(ours[dt]["cpu"], theirs[dt]["cpu"])]
    print(f"  {dt:<5} ratio   " + " ".join(f"{v:7.2f}x" for v in ratios)
          + f"   (median of per-round ratios {med(ratios):.2f}x)")
EOF
