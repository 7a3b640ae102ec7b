#!/usr/bin/env python3
"""The cluster benchmark's arithmetic (bench/cluster/run.sh calls it).

  report.py cluster --comm comm.txt --local local.json --config config.json
                    --single S1:metrics1 --single S2:metrics2 --progress in_calls|background
                    --name NAME   > cluster.json
      fits t = a + S / b (least squares) to tsp_bench_comm's ring-shift rows ("wrapper us"
      column): latency a (us) and bandwidth b (GB/s) of the emulated link; writes a planner cluster
      file with one device per node (every group crosses the link), the given progress, and the
      matmul and attention rates fitted to single-rank steps at two S.
  report.py report --dir DIR --rates R --seqs S --layouts L --markdown F --svg F
      reads the train metrics and plan JSON of every row; writes the table and the SVG chart
      (step time vs S per layout: measured solid, predicted dashed; one panel per link rate).
"""
import argparse
import json
import math
import statistics
import sys


def fit_link(comm_path):
    xs, ys = [], []
    for line in open(comm_path):
        f = line.split()
        if len(f) >= 7 and f[0] == "ring_shift":
            size = int(f[1]) * (1 << 20 if f[2] == "MiB" else 1 << 10)
            xs.append(size)
            ys.append(float(f[-1]) * 1e-6)
    if len(xs) < 2:
        sys.exit(f"report.py: fewer than two ring_shift rows in {comm_path}")
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    a = my - slope * mx
    # A negative intercept (noise on a latency far below the large messages' time): the smallest
    # message's time bounds the latency from above; take half of it.
    if a <= 0:
        a = ys[0] / 2
    return a, 1.0 / slope  # seconds, bytes per second


def step_flops(cfg, seq):
    """(matmul, attention) FLOPs of one single-rank training step at batch 1, as the planner counts
    them (src/tsp/plan/time_model.cpp: layers 3x forward, LM head 4x forward)."""
    h, F, L, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    qd = cfg["num_attention_heads"] * cfg["head_dim"]
    kvd = cfg["num_key_value_heads"] * cfg["head_dim"]
    W = (2 * qd + 2 * kvd) * h + 3 * F * h
    matmul = 3 * L * 2 * W * seq + 4 * 2 * V * h * seq
    attention = 3 * L * 2 * seq * seq * qd
    return matmul, attention


def fit_rates(cfg, singles):
    """Matmul and attention FLOP/s from the median steps at two S: t = M / r_m + A / r_a."""
    (s1, t1), (s2, t2) = [(s, statistics.median(r["seconds"] for r in train_rows(p) if r["step"] > 1))
                          for s, p in singles]
    (m1, a1), (m2, a2) = step_flops(cfg, s1), step_flops(cfg, s2)
    det = m1 * a2 - m2 * a1
    x = (t1 * a2 - t2 * a1) / det   # 1 / r_m
    y = (m1 * t2 - m2 * t1) / det   # 1 / r_a
    if x <= 0 or y <= 0:            # noise beyond the model: one rate for both, from the longer run
        x = y = t2 / (m2 + a2)
    return 1 / x, 1 / y


def cmd_cluster(args):
    a, b = fit_link(args.comm)
    local = json.load(open(args.local))
    cfg = json.load(open(args.config))
    singles = [(int(x.split(":", 1)[0]), x.split(":", 1)[1]) for x in args.single]
    r_m, r_a = fit_rates(cfg, singles)
    k = r_m / 1e12 / local["matmul_tflops_fp32"]
    c = {
        "name": args.name,
        "description": "two emulated hosts (scripts/hosts.sh), one rank each; link fitted to "
                       "tsp_bench_comm's ring shift over it; compute: matmul and attention rates "
                       "fitted to the model's single-rank steps at two S (bf16 scaled as fp32)",
        "devices_per_node": 1,
        "memory_per_device_gib": local["memory_per_device_gib"],
        "matmul_tflops_bf16": local["matmul_tflops_bf16"] * k,
        "matmul_tflops_fp32": r_m / 1e12,
        "attention_tflops_bf16": r_a / 1e12 * local["matmul_tflops_bf16"] / local["matmul_tflops_fp32"],
        "attention_tflops_fp32": r_a / 1e12,
        "intra_node_topology": "switch",
        "intra_node_bandwidth_gbs": b / 1e9,
        "intra_node_latency_us": a * 1e6,
        "inter_node_bandwidth_gbs": b / 1e9,
        "inter_node_latency_us": a * 1e6,
        "inter_node_progress": args.progress,
    }
    json.dump(c, sys.stdout, indent=2)
    print()


def train_rows(path):
    rows = [json.loads(l) for l in open(path)]
    return [r for r in rows if r.get("type") == "train"]


def plan_of(plan_json, layout):
    for p in plan_json["plans"]:
        if p["layout"] == layout:
            return p
    raise KeyError(layout)


def predicted_bytes_sent(p, layers):
    t = p["traffic"]
    per_layer = sum(e["bytes_sent"] for ph in ("forward", "backward", "recompute") for e in t["layer"][ph])
    rest = sum(e["bytes_sent"] for ph in t["step"] for e in t["step"][ph])
    return layers * per_layer + rest


def collect(args):
    data = {}
    for rate in args.rates.split():
        d = f"{args.dir}/{rate}"
        for s in map(int, args.seqs.split()):
            plan = json.load(open(f"{d}/plan_in_calls_{s}.json"))
            plan_bg = json.load(open(f"{d}/plan_background_{s}.json"))
            cluster = json.load(open(f"{d}/cluster_in_calls_{s}.json"))
            layers = plan["model"]["num_hidden_layers"]
            for layout in args.layouts.split():
                steps = train_rows(f"{d}/train_{layout}_{s}.jsonl")[1:]  # the first is the warm-up
                if not steps:
                    sys.exit(f"report.py: no timed steps in {d}/train_{layout}_{s}.jsonl")
                secs = [r["seconds"] for r in steps]
                waits = [r["comm_wait_seconds"] for r in steps]
                p = plan_of(plan, layout)
                t = p["time"]
                data[(rate, s, layout)] = {
                    "step": statistics.median(secs), "step_min": min(secs), "step_max": max(secs),
                    "wait": statistics.median(waits), "sent": steps[-1]["comm_bytes_sent"],
                    "p_step": t["step_s"], "p_compute": t["terms_s"].get("compute", 0.0),
                    "p_exposed": t["step_s"] - t["terms_s"].get("compute", 0.0),
                    "p_sent": predicted_bytes_sent(p, layers),
                    "p_step_bg": plan_of(plan_bg, layout)["time"]["step_s"],
                    "bw": cluster["inter_node_bandwidth_gbs"], "lat": cluster["inter_node_latency_us"],
                    "gflops": cluster["matmul_tflops_fp32"] * 1e3,
                    "att_gflops": cluster.get("attention_tflops_fp32", cluster["matmul_tflops_fp32"]) * 1e3,
                }
    return data


def crossover(data, rate, seqs, key):
    """Smallest S of the grid from which TSP's step is faster than TP's at every larger S."""
    faster = [data[(rate, s, "tsp2")][key] < data[(rate, s, "tp2")][key] for s in seqs]
    for i in range(len(seqs)):
        if all(faster[i:]):
            return seqs[i]
    return None


def write_markdown(args, data):
    seqs = list(map(int, args.seqs.split()))
    out = []
    worst = 0.0
    for rate in args.rates.split():
        any_row = data[(rate, seqs[0], args.layouts.split()[0])]
        out.append(f"### Link {rate}: fitted {any_row['bw']:.4f} GB/s per direction, "
                   f"{any_row['lat']:.0f} us per message\n")
        out.append(f"Compute fitted to single-rank steps at S = 512 and 8192: matmuls {any_row['gflops']:.1f}, "
                   f"attention {any_row['att_gflops']:.1f} GFLOP/s per rank (fp32)\n")
        out.append("| S | layout | step s (median [min, max]) | predicted | error | comm wait s | "
                   "predicted exposed | MiB sent/step | predicted | predicted, background progress |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for s in seqs:
            for layout in args.layouts.split():
                r = data[(rate, s, layout)]
                err = r["p_step"] / r["step"] - 1
                worst = max(worst, abs(err))
                out.append(f"| {s} | {layout} | {r['step']:.3f} [{r['step_min']:.3f}, {r['step_max']:.3f}] | "
                           f"{r['p_step']:.3f} | {err * 100:+.0f}% | {r['wait']:.3f} | {r['p_exposed']:.3f} | "
                           f"{r['sent'] / 2**20:.2f} | {r['p_sent'] / 2**20:.2f} | "
                           f"{r['p_step_bg']:.3f} ({(r['p_step_bg'] / r['step'] - 1) * 100:+.0f}%) |")
        m, p = crossover(data, rate, seqs, "step"), crossover(data, rate, seqs, "p_step")
        q = crossover(data, rate, seqs, "p_step_bg")
        out.append(f"\nTSP faster than TP from S = {m} measured, S = {p} predicted "
                   f"(S = {q} with background progress).\n")
    out.append(f"Largest |predicted / measured - 1| over all rows: {worst * 100:.0f}%.\n")
    open(args.markdown, "w").write("\n".join(out))
    print("\n".join(out))


COLORS = {"tsp2": "#d62728", "tp2": "#1f77b4", "sp2": "#2ca02c", "fsdp-sp2": "#9467bd"}


def write_svg(args, data):
    seqs = list(map(int, args.seqs.split()))
    rates = args.rates.split()
    layouts = args.layouts.split()
    W, H, pad_l, pad_r, pad_t, pad_b = 460, 340, 60, 110, 40, 45
    vals = [v for r in data.values() for v in (r["step"], r["p_step"])]
    lo, hi = math.log10(min(vals)), math.log10(max(vals))
    lo, hi = math.floor(lo * 2) / 2, math.ceil(hi * 2) / 2
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W * len(rates)}" height="{H}" '
           f'font-family="sans-serif" font-size="11">']
    for k, rate in enumerate(rates):
        x0 = k * W

        def px(s):
            return x0 + pad_l + (math.log2(s) - math.log2(seqs[0])) / max(1e-9, math.log2(seqs[-1] / seqs[0])) * (W - pad_l - pad_r)

        def py(v):
            return pad_t + (hi - math.log10(v)) / (hi - lo) * (H - pad_t - pad_b)

        svg.append(f'<text x="{x0 + W / 2}" y="20" text-anchor="middle" font-size="13">'
                   f'step time vs S, link {rate} (measured solid, predicted dashed)</text>')
        svg.append(f'<line x1="{x0 + pad_l}" y1="{H - pad_b}" x2="{x0 + W - pad_r}" y2="{H - pad_b}" stroke="black"/>')
        svg.append(f'<line x1="{x0 + pad_l}" y1="{pad_t}" x2="{x0 + pad_l}" y2="{H - pad_b}" stroke="black"/>')
        for s in seqs:
            svg.append(f'<text x="{px(s):.1f}" y="{H - pad_b + 15}" text-anchor="middle">{s}</text>')
        svg.append(f'<text x="{x0 + (W - pad_r + pad_l) / 2}" y="{H - 8}" text-anchor="middle">S (tokens)</text>')
        e = lo
        while e <= hi + 1e-9:
            v = 10 ** e
            svg.append(f'<line x1="{x0 + pad_l - 4}" y1="{py(v):.1f}" x2="{x0 + W - pad_r}" y2="{py(v):.1f}" stroke="#ddd"/>')
            svg.append(f'<text x="{x0 + pad_l - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{v:.3g} s</text>')
            e += 0.5
        for i, layout in enumerate(layouts):
            c = COLORS.get(layout, "black")
            for key, dash in (("step", ""), ("p_step", ' stroke-dasharray="5,4"')):
                pts = " ".join(f"{px(s):.1f},{py(data[(rate, s, layout)][key]):.1f}" for s in seqs)
                svg.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="2"{dash}/>')
            ly = pad_t + 10 + 16 * i
            svg.append(f'<line x1="{x0 + W - pad_r + 10}" y1="{ly}" x2="{x0 + W - pad_r + 30}" y2="{ly}" stroke="{c}" stroke-width="2"/>')
            svg.append(f'<text x="{x0 + W - pad_r + 34}" y="{ly + 4}">{layout}</text>')
    svg.append("</svg>")
    open(args.svg, "w").write("\n".join(svg) + "\n")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cluster")
    c.add_argument("--comm", required=True)
    c.add_argument("--local", required=True)
    c.add_argument("--name", required=True)
    c.add_argument("--config", required=True)
    c.add_argument("--single", action="append", required=True, help="S:metrics.jsonl (two of them)")
    c.add_argument("--progress", choices=["in_calls", "background"], required=True)
    r = sub.add_parser("report")
    for f in ("--dir", "--rates", "--seqs", "--layouts", "--markdown", "--svg"):
        r.add_argument(f, required=True)
    args = ap.parse_args()
    if args.cmd == "cluster":
        cmd_cluster(args)
    else:
        data = collect(args)
        write_markdown(args, data)
        write_svg(args, data)


if __name__ == "__main__":
    main()
