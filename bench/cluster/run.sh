#!/usr/bin/env bash
# The cluster benchmark: TSP 2, TP 2, SP 2 and FSDP-SP 2 trained across two emulated hosts (one
# rank per host, scripts/hosts.sh) over links shaped to 1 and 10 Gbit/s, each row beside
# `tsp plan`'s prediction for a cluster file describing that link (docs/cluster.md).
#
#   sudo bench/cluster/run.sh [--steps K] [--seqs "512 1024 ..."] [--rates "1gbit 10gbit"]
#                             [--layouts "tsp2 tp2 sp2 fsdp-sp2"] [--out DIR] [--replan]
#
# --replan: keep the link and training measurements already in DIR; redo the compute calibration,
# the cluster files, the predictions and the report (to check a change of the time model).
#
# Per link rate: hosts.sh up 2 --rate R; the link's latency and bandwidth fitted (t = a + S/b,
# least squares) to tsp_bench_comm's ring-shift times over it (both directions loaded, as the
# planner's max(sent, received) / bandwidth assumes); a cluster file with one device per node (so
# every group crosses the link), that bandwidth and latency, "inter_node_progress": "in_calls"
# (Open MPI's TCP transport), and the matmul rates of `tsp plan --calibrate` scaled to this
# model's measured single-rank step (below); then for every S and layout one `tsp train` of the tiny preset (batch 1,
# fp32, 1 warm-up step + K timed) whose per-step metrics give the measured step time (median of
# the K, with min and max), the comm wait (exposed communication) and the bytes sent, and one
# `tsp plan` with the same workload. bench/cluster/report.py writes the table (markdown) and the
# SVG. Defaults: K = 2, S = 512..16384, both rates: about 6 minutes on the quiet 2-vCPU Xeon
# (364 s with the compute fits; the S = 16384 rows are about half of it; docs/cluster.md).
# Needs root, the release build (build/release) and python3.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
build=${TSP_BUILD:-$top/build/release}
steps=2
seqs="512 1024 2048 4096 8192 16384"
rates="1gbit 10gbit"
layouts="tsp2 tp2 sp2 fsdp-sp2"
out=$top/build/cluster-bench
replan=0
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) steps=$2; shift 2 ;;
    --seqs) seqs=$2; shift 2 ;;
    --rates) rates=$2; shift 2 ;;
    --layouts) layouts=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --replan) replan=1; shift ;;
    *) echo "run.sh: unknown argument '$1' (see the header)" >&2; exit 2 ;;
  esac
done
tsp=$build/src/tsp/cli/tsp
comm_bench=$build/bench/comm/tsp_bench_comm
[ -x "$tsp" ] && [ -x "$comm_bench" ] || { echo "run.sh: build first (cmake --preset release && cmake --build --preset release)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "run.sh: needs python3 for the report" >&2; exit 1; }
"$top/scripts/hosts.sh" check >/dev/null

name=tspb
subnet=10.231.50
hosts() { "$top/scripts/hosts.sh" "$@" --name "$name"; }
trap 'hosts down >/dev/null 2>&1 || true' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
# shellcheck disable=SC2054  # "tcp,self" is one MCA value
mpirun_hosts=(mpirun --hostfile "/run/tsp-hosts/$name/hostfile" -np 2
  --mca plm_rsh_agent "$top/scripts/hosts-agent.sh" --mca plm_rsh_no_tree_spawn 1
  --mca btl tcp,self --mca btl_tcp_if_include "$subnet.0/24" --mca oob_tcp_if_include "$subnet.0/24"
  --mca mpi_yield_when_idle 1 --bind-to none -x OMP_NUM_THREADS=1)

mkdir -p "$out"
start=$SECONDS
echo "cluster bench: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc --all) cores; steps $steps; S: $seqs; rates: $rates"
"$tsp" plan --calibrate --out "$out/local.json" | head -1
# The tiny preset (h 128, L 4, V 320, fp32) with positions up to the longest S (RoPE: no learned
# positions; the preset's own limit is 1024). TSP moves fewer bytes than TP from B S = 8h = 1024.
longest=$(echo "$seqs 8192" | tr ' ' '\n' | sort -n | tail -1)   # 8192: the calibration's (below)
config=$out/tiny_long.json
cat > "$config" <<EOT
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
 "hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 4,
 "num_key_value_heads": 4, "head_dim": 32, "vocab_size": 320, "max_position_embeddings": $longest,
 "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": false, "torch_dtype": "float32",
 "attention_bias": false, "mlp_bias": false, "rope_scaling": null}
EOT

# Compute, calibrated on this model's own single-rank steps: the GEMM rate of --calibrate (a
# 2048x1536x512 product) is an upper bound that h = 128's small products, the norms, the
# optimizer and the embedding do not reach, and the attention (head dimension 32) runs at a rate
# of its own. Two single-rank runs at once (one per core, as the two hosts' ranks run) at
# S = 512 and at S = 8192 (attention 1/4 and 4x the matmul FLOPs: a well-conditioned fit); their median steps fit t = matmul FLOPs / r_m + attention FLOPs / r_a
# (report.py), the cluster file's matmul and attention rates. Measured once per link rate, right
# before its rows (about half a minute).
calibrate() {
  local dest=$1 S k
  for S in 512 8192; do
    for k in 0 1; do
      "$tsp" train --config "$config" --seq "$S" --batch 1 --steps $((steps + 1)) --warmup 1 --eval-batches 1 \
          --val-fraction 0.05 --metrics "$dest.$S.$k" > "$dest.$S.$k.txt" 2>&1 &
    done
    wait
    cat "$dest.$S.0" "$dest.$S.1" > "${dest}_$S.jsonl"
    rm -f "$dest.$S.0" "$dest.$S.1" "$dest.$S.0.txt" "$dest.$S.1.txt"
  done
}

for rate in $rates; do
  dir=$out/$rate
  if [ "$replan" -eq 0 ]; then
    rm -rf "$dir"
    mkdir -p "$dir"
    hosts down >/dev/null 2>&1 || true
    hosts up 2 --rate "$rate" --subnet "$subnet" >/dev/null
    # The link: ring-shift times from 4 KiB to 16 MiB, fitted.
    "${mpirun_hosts[@]}" "$comm_bench" --ops ring_shift --min-bytes 4096 --max-bytes 16777216 --rounds 3 \
        --batch-s 0.05 > "$dir/comm.txt"
  fi
  # (--replan keeps a calibration it finds; data without one gets it measured now.)
  [ "$replan" -eq 1 ] && [ -f "$dir/calib_8192.jsonl" ] || calibrate "$dir/calib"
  for S in $seqs; do
    # Two descriptions of the link: transfers progress only inside MPI calls (Open MPI over TCP;
    # the prediction the table checks) and, for comparison, in the background (the default).
    for progress in in_calls background; do
      python3 "$top/bench/cluster/report.py" cluster --comm "$dir/comm.txt" --local "$out/local.json" \
          --config "$config" --single "512:$dir/calib_512.jsonl" --single "8192:$dir/calib_8192.jsonl" \
          --progress "$progress" --name "hosts-$rate" > "$dir/cluster_${progress}_$S.json"
      "$tsp" plan --model "$config" --seq "$S" --batch 1 --dtype fp32 --cluster "$dir/cluster_${progress}_$S.json" \
          --devices 2 --layouts "$(echo "$layouts" | tr ' ' ,)" --format json > "$dir/plan_${progress}_$S.json"
    done
    [ "$S" != "$(echo "$seqs" | cut -d' ' -f1)" ] ||
      echo "link $rate: $(python3 -c "import json; c = json.load(open('$dir/cluster_in_calls_$S.json')); print(f\"{c['inter_node_bandwidth_gbs']:.4f} GB/s, {c['inter_node_latency_us']:.1f} us\")") (fitted to tsp_bench_comm's ring shift)"
    [ "$replan" -eq 0 ] || continue
    for layout in $layouts; do
      kind=${layout%2}
      case "$kind" in
        tsp) flags="--layout tsp --tsp 2" ;;
        tp) flags="--layout tp --tp 2" ;;
        sp) flags="--layout sp --sp 2" ;;
        fsdp-sp) flags="--layout fsdp-sp --sp 2" ;;
        *) echo "run.sh: unknown layout $layout" >&2; exit 2 ;;
      esac
      m=$dir/train_${layout}_$S.jsonl
      rm -f "$m"
      t0=$SECONDS
      # shellcheck disable=SC2086
      "${mpirun_hosts[@]}" "$tsp" train --config "$config" --seq "$S" --batch 1 --steps $((steps + 1)) --warmup 1 \
          --eval-batches 1 --val-fraction 0.05 --dtype f32 $flags --metrics "$m" --comm-timeout 300 \
          > "$dir/train_${layout}_$S.txt" 2>&1 ||
        { echo "run.sh: $layout at S=$S failed:"; tail -20 "$dir/train_${layout}_$S.txt"; exit 1; }
      echo "  $rate S=$S $layout: $((SECONDS - t0)) s"
    done
  done
  [ "$replan" -eq 1 ] || hosts down >/dev/null
done
python3 "$top/bench/cluster/report.py" report --dir "$out" --rates "$rates" --seqs "$seqs" --layouts "$layouts" \
    --markdown "$out/cluster.md" --svg "$out/cluster.svg"
echo "wrote $out/cluster.md and $out/cluster.svg; the whole run took $((SECONDS - start)) s"
