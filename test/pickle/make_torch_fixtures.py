"""Writes PyTorch checkpoints with real torch, and what torch.load(weights_only=True) reads back.

usage: python3 make_torch_fixtures.py OUT_DIR
For each checkpoint X it writes X and X.expected.json: {name: {dtype, shape, sha256}} where the
digest is of the tensor's contiguous little-endian bytes, as a safetensors file would hold them.
"""
import hashlib
import json
import os
import sys
from collections import OrderedDict

import torch

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
g = torch.Generator().manual_seed(7)

DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL", torch.complex64: "C64", torch.uint16: "U16", torch.uint32: "U32", torch.uint64: "U64",
    torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
}


def rnd(shape, dtype):
    x = torch.randn(*shape, generator=g) * 3
    if dtype.is_floating_point or dtype.is_complex:
        return x.to(dtype)
    if dtype == torch.bool:
        return x > 0
    if dtype in (torch.uint16, torch.uint32, torch.uint64):
        return (x.abs() * 1000).to(torch.int64).to(dtype)
    return (x * 10).to(dtype)


def expected(tensors):
    res = {}
    for name, t in tensors.items():
        c = t.detach().contiguous().reshape(-1)
        raw = c.to(torch.uint8).numpy().tobytes() if c.dtype == torch.bool else c.view(torch.uint8).numpy().tobytes()
        res[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "sha256": hashlib.sha256(raw).hexdigest()}
    return res


def flat(obj, prefix=""):
    """The tensors of a nested checkpoint, named by dotted path (how the reader names them)."""
    items = {}
    if isinstance(obj, torch.Tensor):
        items[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            items.update(flat(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            items.update(flat(v, f"{prefix}.{i}" if prefix else str(i)))
    return items


def save(name, obj, model_part=None, **kw):
    path = os.path.join(out, name)
    torch.save(obj, path, **kw)
    # torch's weights-only loader has no FRAME opcode (protocol 4); that file was written just above, by us.
    back = torch.load(path, weights_only=kw.get("pickle_protocol", 2) < 4)
    part = back if model_part is None else back[model_part]
    tensors = flat(part)
    with open(path + ".expected.json", "w") as f:
        json.dump(expected(tensors), f)


every = OrderedDict((f"t_{v}", rnd((3, 5), k)) for k, v in DTYPES.items())
every["scalar"] = torch.tensor(2.5)
every["empty"] = torch.zeros(0, 4)
every["param"] = torch.nn.Parameter(torch.randn(4, 4, generator=g))
save("every_dtype.pt", every)
save("every_dtype_legacy.pt", {k: v for k, v in every.items() if v.dtype not in (torch.uint16, torch.uint32, torch.uint64, torch.float8_e4m3fn, torch.float8_e5m2)}, _use_new_zipfile_serialization=False)
save("protocol4.pt", every, pickle_protocol=4)

base = torch.randn(8, 6, generator=g)
views = OrderedDict()
views["base"] = base
views["row"] = base[2]  # a view with a storage offset
views["tied"] = base  # the same view twice: written once
views["transposed"] = base.t()  # non-contiguous
views["strided"] = base[::2, 1::3]  # non-contiguous with offset
views["expanded_like"] = torch.randn(1, 5, generator=g)
save("views.pt", views)
save("views_legacy.pt", dict(views), _use_new_zipfile_serialization=False)

lightning = {
    "epoch": 3,
    "global_step": 1200,
    "state_dict": OrderedDict((f"model.layers.{i}.weight", torch.randn(4, 4, generator=g)) for i in range(3)),
    "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(4, 4)}}, "param_groups": [{"lr": 0.001}]}],
    "hyper_parameters": {"lr": 0.001, "name": "tiny"},
}
save("lightning.ckpt", lightning, model_part="state_dict")

# A Hugging Face-style pytorch_model.bin with tied embeddings.
emb = torch.randn(16, 8, generator=g).to(torch.bfloat16)
hf = OrderedDict([("model.embed_tokens.weight", emb), ("model.norm.weight", torch.ones(8, dtype=torch.bfloat16)), ("lm_head.weight", emb)])
save("pytorch_model.bin", hf)

# A sharded Hugging Face checkpoint: pytorch_model-0000i-of-00002.bin and its index.
sharded = os.path.join(out, "sharded")
os.makedirs(sharded, exist_ok=True)
layers = OrderedDict((f"model.layers.{i}.mlp.weight", torch.randn(6, 4, generator=g).to(torch.float16)) for i in range(4))
names = list(layers)
weight_map = {}
expect = {}
for k, part in enumerate([names[:2], names[2:]]):
    shard = f"pytorch_model-0000{k + 1}-of-00002.bin"
    torch.save(OrderedDict((n, layers[n]) for n in part), os.path.join(sharded, shard))
    for n in part:
        weight_map[n] = shard
with open(os.path.join(sharded, "pytorch_model.bin.index.json"), "w") as f:
    json.dump({"metadata": {"total_size": sum(t.numel() * 2 for t in layers.values())}, "weight_map": weight_map}, f)
with open(os.path.join(sharded, "pytorch_model.bin.index.json.expected.json"), "w") as f:
    json.dump(expected(layers), f)
