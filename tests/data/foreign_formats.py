#!/usr/bin/env python3
"""llm.c and nanoGPT token files, written as their own scripts write them, read by `tsp train`.

llm.c dev/data/data_common.py write_datafile: a header of 256 int32 (magic 20240520, version 1,
token count, zeros) then the tokens as uint16. nanoGPT data/*/prepare.py: np.uint16 ids .tofile()
(no header). numpy is not needed: struct packs the same little-endian bytes. Trains a few steps on
each, on a comma list of both and on a blend, and checks that a damaged llm.c header is refused
with one clear error.
"""
import argparse
import os
import random
import shutil
import struct
import subprocess
import sys

VOCAB = 259  # the tiny preset's vocabulary


def write_llmc(path, toks, magic=20240520, version=1, count=None):
    header = [0] * 256
    header[0], header[1], header[2] = magic, version, len(toks) if count is None else count
    with open(path, "wb") as f:
        f.write(struct.pack("<256i", *header))
        f.write(struct.pack("<%dH" % len(toks), *toks))


def write_nanogpt(path, toks):
    with open(path, "wb") as f:
        f.write(struct.pack("<%dH" % len(toks), *toks))


def tsp(a, work, data, expect_ok=True):
    cmd = [a.tsp, "train", "--data", data, "--preset", "tiny", "--steps", "3", "--batch", "4", "--seq", "32",
           "--warmup", "1", "--eval-batches", "1"]
    r = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=120)
    if expect_ok and r.returncode != 0:
        sys.exit("FAILED: %s\n%s\n%s" % (" ".join(cmd), r.stdout, r.stderr))
    if not expect_ok and r.returncode == 0:
        sys.exit("FAILED (accepted): %s\n%s" % (" ".join(cmd), r.stdout))
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tsp", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    rng = random.Random(1)
    toks = [rng.randrange(VOCAB) for _ in range(20000)]
    write_llmc(os.path.join(a.work, "shard_000000.bin"), toks)
    write_nanogpt(os.path.join(a.work, "train.bin"), toks[::-1])
    for data, what in [("shard_000000.bin", "llm.c shard"), ("train.bin", "nanoGPT uint16 file"),
                       ("shard_000000.bin,train.bin", "2 shards"),
                       ("shard_000000.bin:0.7,train.bin:0.3", "blend of 2")]:
        r = tsp(a, a.work, data)
        first = r.stdout.splitlines()[0]
        assert what in first and ("40000 tokens" in first or "20000 tokens" in first), first
        assert "done: 3 steps" in r.stdout, r.stdout
        print("%s: %s" % (data, first))
    write_llmc(os.path.join(a.work, "bad.bin"), toks, version=2)
    r = tsp(a, a.work, "bad.bin", expect_ok=False)
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "unsupported version 2" in err[0] and "bad.bin" in err[0], r.stderr
    print("refused: " + err[0])
    write_llmc(os.path.join(a.work, "short.bin"), toks, count=len(toks) + 1)
    r = tsp(a, a.work, "short.bin", expect_ok=False)
    assert "(truncated)" in r.stderr, r.stderr
    shutil.rmtree(a.work, ignore_errors=True)


if __name__ == "__main__":
    main()
