#!/usr/bin/env python3
"""The peer of the mergeModels bench: the same merge with torch, tensor by tensor.

task_arithmetic: out = base + sum_j w_j * (m_j - base).
ties: each delta keeps its top floor(density * n) magnitudes (the threshold found by a
selection, torch.kthvalue; elements equal to the threshold are all kept, where the
workbench keeps exactly floor(density * n) in tensor order), then the sign of the
weighted sum elects, and the kept weighted deltas of that sign are divided by the sum
of their weights.
Arithmetic in float32 (--f64 for float64), written as BF16 through a streamed
safetensors file (header first, then each tensor as it is merged), so that memory
holds a few tensors, never the model.

Prints one JSON line: input bytes, wall and CPU seconds, peak RSS.
"""
import argparse
import json
import os
import resource
import struct
import sys
import time

import torch
from safetensors import safe_open


def shard_files(path):
    if os.path.isfile(path):
        return [path]
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            return sorted({os.path.join(path, v) for v in json.load(f)["weight_map"].values()})
    return [os.path.join(path, n) for n in sorted(os.listdir(path)) if n.endswith(".safetensors")]


class Model:
    def __init__(self, path):
        self.handles = [safe_open(f, framework="pt") for f in shard_files(path)]
        self.where = {k: h for h in self.handles for k in h.keys()}

    def get(self, name):
        return self.where[name].get_tensor(name)


def merge_tensor(method, base, models, weights, density, dtype):
    b = base.to(dtype)
    deltas = [m.to(dtype) - b for m in models]
    if method == "task_arithmetic":
        return b + sum(w * d for w, d in zip(weights, deltas))
    wds = []
    for w, d in zip(weights, deltas):
        n = d.numel()
        k = int(density * n)
        if k < n:
            if k == 0:
                d = torch.zeros_like(d)
            else:
                mag = d.abs().flatten()
                thr = torch.kthvalue(mag, n - k + 1).values
                d = torch.where(d.abs() >= thr, d, torch.zeros_like(d))
        wds.append(w * d)
    total = sum(wds)
    major = torch.where(total >= 0, 1.0, -1.0).to(dtype)
    mixed = torch.zeros_like(b)
    divisor = torch.zeros_like(b)
    for w, wd in zip(weights, wds):
        agree = torch.sign(wd) == major
        mixed += torch.where(agree, wd, torch.zeros_like(wd))
        divisor += agree.to(dtype) * w
    divisor = torch.where(divisor == 0, torch.ones_like(divisor), divisor)
    return b + mixed / divisor


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", choices=["task_arithmetic", "ties"], required=True)
    ap.add_argument("--base", required=True)
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--weight", action="append", type=float, required=True)
    ap.add_argument("--density", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--f64", action="store_true")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dtype = torch.float64 if a.f64 else torch.float32
    t0 = time.perf_counter()
    base = Model(a.base)
    models = [Model(p) for p in a.model]
    names = sorted(base.where.keys())
    header = {}
    offset = 0
    input_bytes = 0
    for name in names:
        with_shape = base.where[name].get_slice(name)
        shape = with_shape.get_shape()
        n = 1
        for s in shape:
            n *= s
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + 2 * n]}
        offset += 2 * n
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    tmp = a.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for name in names:
            b = base.get(name)
            ms = [m.get(name) for m in models]
            input_bytes += sum(t.numel() * t.element_size() for t in [b, *ms])
            out = merge_tensor(a.method, b, ms, a.weight, a.density, dtype).to(torch.bfloat16)
            f.write(out.contiguous().view(torch.int16).numpy().tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, a.out)
    seconds = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "inputBytes": input_bytes,
        "seconds": seconds,
        "cpuSeconds": ru.ru_utime + ru.ru_stime,
        "peakRssMB": ru.ru_maxrss / 1024,
        "torch": torch.__version__,
        "arithmetic": "float64" if a.f64 else "float32",
    }))


if __name__ == "__main__":
    sys.exit(main())
