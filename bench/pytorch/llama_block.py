#!/usr/bin/python3
"""One Llama decoder block, forward + backward, in plain PyTorch (written for Debian's
python3-torch 1.13, which has no scaled_dot_product_attention): the same math as tsp's
block_forward / block_backward (src/tsp/model/decoder_block.h) for the side-by-side comparison of
bench/compare_block.sh.

  n     = rmsnorm(x)          x * rsqrt(mean(x^2) + eps) * g, eps = 1e-6 (tsp's ModelConfig default)
  q,k,v = n Wq^T, n Wk^T, n Wv^T        no bias
  q,k   = RoPE (HF rotate_half, theta 10000, positions 0..S-1)
  a     = softmax(q k^T / sqrt(d) + causal mask) v     matmul + masked_fill + softmax
  x_mid = x + a Wo^T
  x_out = x_mid + (silu(m Wg^T) * (m Wu^T)) Wd^T      with m = rmsnorm(x_mid)

Default h = 512, H = 8 (d = 64), F = 2048, S = 2048, B = 1. Weights, input and all activations are
in the chosen dtype (float32 or bfloat16; bf16 is "model and inputs in torch.bfloat16", PyTorch's
usual way, so its gradients are bf16 too). One timed iteration = forward, loss = out.sum(),
backward (weight gradients and the input gradient), gradients zeroed (set to None) between
iterations. After --warmup iterations, timed iterations run until both --iters and --min-time are
reached; rates are from the mean iteration time (process CPU time; wall clock too). Prints one JSON object on stdout:
  {"torch": ..., "threads": 1, "S": 2048, ..., "results": {"f32": {"tokens_per_s": ..., ...}, ...}}

Run with /usr/bin/python3 (Debian's interpreter, where python3-torch lives).
"""
import argparse
import json
import math
import os
import sys
import time

import torch


class RMSNorm(torch.nn.Module):
    def __init__(self, h, eps):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(h))
        self.eps = eps

    def forward(self, x):
        # Statistics in x's dtype (no fp32 upcast): the plain formula of the brief. For bf16 the
        # HF module upcasts to fp32; doing so would only add conversions to PyTorch's time.
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rope_tables(seq, head_dim, theta, dtype):
    # Computed in double and rounded once, as tsp's RopeTable does.
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    ang = torch.arange(seq, dtype=torch.float64)[:, None] * inv_freq[None, :]
    emb = torch.cat((ang, ang), dim=-1)  # [S, d]
    return emb.cos().to(dtype), emb.sin().to(dtype)


class LlamaBlock(torch.nn.Module):
    def __init__(self, h, heads, inter, eps=1e-6):
        super().__init__()
        self.h, self.heads, self.d = h, heads, h // heads
        self.input_layernorm = RMSNorm(h, eps)
        self.q_proj = torch.nn.Linear(h, h, bias=False)
        self.k_proj = torch.nn.Linear(h, h, bias=False)
        self.v_proj = torch.nn.Linear(h, h, bias=False)
        self.o_proj = torch.nn.Linear(h, h, bias=False)
        self.post_attention_layernorm = RMSNorm(h, eps)
        self.gate_proj = torch.nn.Linear(h, inter, bias=False)
        self.up_proj = torch.nn.Linear(h, inter, bias=False)
        self.down_proj = torch.nn.Linear(inter, h, bias=False)

    def forward(self, x, cos, sin, mask):
        B, S, _ = x.shape
        n = self.input_layernorm(x)
        q = self.q_proj(n).view(B, S, self.heads, self.d).transpose(1, 2)  # [B, H, S, d]
        k = self.k_proj(n).view(B, S, self.heads, self.d).transpose(1, 2)
        v = self.v_proj(n).view(B, S, self.heads, self.d).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.d)  # [B, H, S, S]
        scores = scores.masked_fill(mask, float("-inf"))
        p = torch.softmax(scores, dim=-1)
        a = torch.matmul(p, v).transpose(1, 2).reshape(B, S, self.h)
        x_mid = x + self.o_proj(a)
        m = self.post_attention_layernorm(x_mid)
        mlp = self.down_proj(torch.nn.functional.silu(self.gate_proj(m)) * self.up_proj(m))
        return x_mid + mlp


def bench_dtype(dtype, args):
    torch.manual_seed(0)
    blk = LlamaBlock(args.hidden, args.heads, args.inter, args.eps)
    with torch.no_grad():  # Llama-style init: N(0, 0.02) projections, unit norm gains
        for name, p in blk.named_parameters():
            if "layernorm" not in name:
                p.normal_(0.0, 0.02)
    blk = blk.to(dtype)
    cos, sin = rope_tables(args.seq, args.hidden // args.heads, args.theta, dtype)
    mask = torch.ones(args.seq, args.seq, dtype=torch.bool).triu(1)
    x = torch.randn(args.batch, args.seq, args.hidden).to(dtype).requires_grad_(True)

    def step():
        out = blk(x, cos, sin, mask)
        out.sum().backward()
        x.grad = None
        for p in blk.parameters():
            p.grad = None

    wall, cpu = [], []

    def timed():
        w0, c0 = time.perf_counter(), time.process_time()
        step()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)

    for _ in range(args.warmup):
        timed()
    # One iteration that takes longer than --long seconds (bf16 here: PyTorch 1.13 has no fast
    # bf16 GEMM on an AVX2 CPU) is its own measurement: keep the warm-up sample (its one-time
    # allocation cost is negligible next to it) instead of paying for another iteration.
    warm_counted = args.warmup > 0 and wall[-1] >= args.long
    if warm_counted:
        wall, cpu = wall[-1:], cpu[-1:]
    else:
        wall, cpu = [], []
        while len(wall) < args.iters or sum(wall) < args.min_time:
            timed()
    tokens = args.batch * args.seq
    cpu_s, wall_s = sum(cpu) / len(cpu), sum(wall) / len(wall)
    # Means over the timed iterations, like Google Benchmark's per-iteration times. tokens_per_s
    # uses process CPU time (what tsp's counter uses: robust to being descheduled on a loaded
    # machine; equal to wall time when a core is free), tokens_per_s_wall the wall clock.
    return {
        "tokens_per_s": tokens / cpu_s,
        "tokens_per_s_wall": tokens / wall_s,
        "cpu_ms": cpu_s * 1e3,
        "wall_ms": wall_s * 1e3,
        "iters": len(wall),
        "warm_up_counted": warm_counted,
    }


def read_safetensors(path):
    """Minimal safetensors reader (Debian has no python3-safetensors): F32, F64, BF16 tensors."""
    import struct
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    base = 8 + n
    kinds = {"F32": (torch.float32, 4), "F64": (torch.float64, 8), "BF16": (torch.bfloat16, 2)}
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dtype, _ = kinds[meta["dtype"]]
        lo, hi = meta["data_offsets"]
        raw = bytearray(blob[base + lo:base + hi])
        if dtype == torch.bfloat16:
            t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16)
        else:
            t = torch.frombuffer(raw, dtype=dtype)
        out[name] = t.reshape(meta["shape"]).clone()
    return out


HF_NAMES = {  # module parameter -> suffix of model.layers.<i>.
    "input_layernorm.weight": "input_layernorm.weight",
    "q_proj.weight": "self_attn.q_proj.weight",
    "k_proj.weight": "self_attn.k_proj.weight",
    "v_proj.weight": "self_attn.v_proj.weight",
    "o_proj.weight": "self_attn.o_proj.weight",
    "post_attention_layernorm.weight": "post_attention_layernorm.weight",
    "gate_proj.weight": "mlp.gate_proj.weight",
    "up_proj.weight": "mlp.up_proj.weight",
    "down_proj.weight": "mlp.down_proj.weight",
}


def check(args):
    """Cross-check mode: --check FILE.safetensors holding layer --layer's weights under their HF
    names (model.layers.<i>.self_attn.q_proj.weight, ..., as tsp's HF checkpoints write them) and
    the block input "x" [S, h] (or [B, S, h]). Runs the block in float64 and prints JSON: loss =
    sum(out), mean(out^2), and the norms of dL/dx and of each weight gradient, for comparison
    with tsp's block_forward / block_backward on the same file (dL/dout = 1 everywhere)."""
    data = read_safetensors(args.check)
    dtype = torch.float64
    x = data["x"].to(dtype)
    if x.dim() == 2:
        x = x.unsqueeze(0)
    S, h = x.shape[-2], x.shape[-1]
    pre = f"model.layers.{args.layer}."
    inter = data[pre + "mlp.down_proj.weight"].shape[1]
    blk = LlamaBlock(h, args.heads, inter, args.eps).to(dtype)
    with torch.no_grad():
        for name, p in blk.named_parameters():
            p.copy_(data[pre + HF_NAMES[name]].to(dtype))
    cos, sin = rope_tables(S, h // args.heads, args.theta, dtype)
    mask = torch.ones(S, S, dtype=torch.bool).triu(1)
    x.requires_grad_(True)
    out = blk(x, cos, sin, mask)
    loss = out.sum()
    loss.backward()
    res = {"loss": loss.item(), "out_mean_sq": out.detach().pow(2).mean().item(),
           "dx_norm": x.grad.norm().item()}
    for name, p in blk.named_parameters():
        res["d_" + name.split(".")[0] + "_norm"] = p.grad.norm().item()
    print(json.dumps(res, indent=1))


def cpu_capability():
    for line in torch.__config__.show().splitlines():
        if "CPU capability usage" in line:
            return line.split(":", 1)[1].strip()
    return "?"


def blas_library():
    """The BLAS shared object this process actually loaded (Debian's torch uses whatever
    libblas.so.3 the alternatives system points to: the reference BLAS unless e.g.
    libopenblas0-pthread is installed)."""
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
        return ", ".join(sorted(os.path.realpath(p) for p in libs)) or "?"
    except OSError:
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtype", choices=["f32", "bf16", "both"], default="both")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--inter", type=int, default=2048)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--eps", type=float, default=1e-6)
    ap.add_argument("--theta", type=float, default=10000.0)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=2, help="at least this many timed iterations")
    ap.add_argument("--min-time", type=float, default=4.0, help="and at least this many seconds")
    ap.add_argument("--long", type=float, default=10.0,
                    help="a warm-up iteration this long (s) counts as the measurement")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--check", metavar="FILE.safetensors",
                    help="cross-check mode: HF-named layer weights + input x, float64 (see check())")
    ap.add_argument("--layer", type=int, default=0, help="layer index of the --check weights")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    if args.check:
        check(args)
        return

    dtypes = {"f32": torch.float32, "bf16": torch.bfloat16}
    names = ["f32", "bf16"] if args.dtype == "both" else [args.dtype]
    results = {n: bench_dtype(dtypes[n], args) for n in names}
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "cpu_capability": cpu_capability(),
        "blas": blas_library(),
        "B": args.batch, "S": args.seq, "h": args.hidden, "heads": args.heads, "F": args.inter,
        "results": results,
    }))


if __name__ == "__main__":
    sys.exit(main())
