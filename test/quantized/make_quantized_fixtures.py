"""Writes quantized safetensors checkpoints, one folder per scheme and convention, and what their
reference dequantizers make of them.

usage: python3 make_quantized_fixtures.py OUT_DIR
Each case OUT_DIR/<case>/ holds model.safetensors, config.json (when the scheme has one) and
expected.json: {"logical": {name: {scheme, shape, parts, ref, stats}}, "raw": [names]}, where
ref names a file of the reference's float32 values (little-endian, row-major) and stats are
torch's statistics of them. The packers follow each format's writer (compressed-tensors'
pack_to_int32, AutoGPTQ's and AutoAWQ's pack loops); the dequantizers are written from the
formats' definitions, and Transformers' own functions run where they exist (MXFP4, FP8 blocks).
"""
import json
import os
import struct
import sys

import torch

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
g = torch.Generator().manual_seed(17)

ST_DTYPE = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32",
    torch.int8: "I8", torch.uint8: "U8", torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
}
E2M1 = torch.tensor([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], dtype=torch.float32)

try:
    from transformers.integrations.finegrained_fp8 import Fp8Dequantize
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors
except Exception:  # Transformers absent: the hand-written references still run.
    Fp8Dequantize = None
    convert_moe_packed_tensors = None


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        b = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": ST_DTYPE[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def stats_of(x):
    x = x.double().flatten()
    fin = x[torch.isfinite(x)]
    return {
        "count": x.numel(), "finite": fin.numel(), "nan": int(torch.isnan(x).sum()),
        "posInf": int((x == float("inf")).sum()), "negInf": int((x == float("-inf")).sum()), "zeros": int((x == 0).sum()),
        "min": float(fin.min()) if fin.numel() else None, "max": float(fin.max()) if fin.numel() else None,
        "mean": float(fin.mean()) if fin.numel() else None, "std": float(fin.std(unbiased=False)) if fin.numel() else None,
    }


class Case:
    def __init__(self, name, config=None):
        self.name, self.config, self.tensors, self.logical, self.raw = name, config, {}, {}, []
        self.dir = os.path.join(out, name)
        os.makedirs(self.dir, exist_ok=True)

    def add(self, name, t):
        self.tensors[name] = t

    def expect(self, name, scheme, ref, parts, also=None):
        ref = ref.to(torch.float32).contiguous()
        f = name.replace("/", "_") + ".f32"
        ref.numpy().tofile(os.path.join(self.dir, f))
        e = {"scheme": scheme, "shape": list(ref.shape), "parts": parts, "ref": f, "stats": stats_of(ref)}
        if also is not None:
            a = name.replace("/", "_") + ".lib.f32"
            also.to(torch.float32).contiguous().numpy().tofile(os.path.join(self.dir, a))
            e["lib"] = a
        self.logical[name] = e

    def save(self):
        write_safetensors(os.path.join(self.dir, "model.safetensors"), self.tensors)
        if self.config is not None:
            with open(os.path.join(self.dir, "config.json"), "w") as f:
                json.dump({"model_type": "fixture", "quantization_config": self.config}, f)
        with open(os.path.join(self.dir, "expected.json"), "w") as f:
            json.dump({"logical": self.logical, "raw": self.raw}, f)


def randn(*shape):
    return torch.randn(*shape, generator=g)


def fp8_block_ref(w8, s, bh, bw):
    """DeepSeek-V3's definition: each bh × bw block of the FP8 weight times its weight_scale_inv entry."""
    rows, cols = w8.shape
    full = s.float().repeat_interleave(bh, 0)[:rows].repeat_interleave(bw, 1)[:, :cols]
    return w8.float() * full


def fp8_cases():
    c = Case("fp8_block", {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [128, 128]})
    # 256 × 384: whole blocks, so Transformers' own dequantizer runs too.
    w = (randn(256, 384) * 40).to(torch.float8_e4m3fn)
    s = torch.rand(2, 3, generator=g) * 1e-3 + 1e-5
    c.add("model.layers.0.self_attn.q_proj.weight", w)
    c.add("model.layers.0.self_attn.q_proj.weight_scale_inv", s)
    lib = Fp8Dequantize(None)._dequantize_one(w, s, torch.float32) if Fp8Dequantize else None
    c.expect("model.layers.0.self_attn.q_proj.weight", "fp8-block", fp8_block_ref(w, s, 128, 128), ["weight", "scale_inv"], lib)
    # 300 × 200: partial blocks at both edges (ceil(300/128) = 3 by ceil(200/128) = 2 scales).
    w2 = (randn(300, 200) * 100).to(torch.float8_e4m3fn)
    s2 = torch.rand(3, 2, generator=g) + 0.5
    c.add("model.layers.0.mlp.down_proj.weight", w2)
    c.add("model.layers.0.mlp.down_proj.weight_scale_inv", s2)
    c.expect("model.layers.0.mlp.down_proj.weight", "fp8-block", fp8_block_ref(w2, s2, 128, 128), ["weight", "scale_inv"])
    c.add("model.layers.0.input_layernorm.weight", randn(256).to(torch.bfloat16))
    c.raw.append("model.layers.0.input_layernorm.weight")
    c.save()

    # config.json says 64 × 64 blocks, the scales are 2 × 2 over 256 × 256: the tensors win.
    d = Case("fp8_block_disagree", {"quant_method": "fp8", "weight_block_size": [64, 64]})
    w3 = (randn(256, 256) * 10).to(torch.float8_e4m3fn)
    s3 = torch.rand(2, 2, generator=g) + 0.1
    d.add("q_proj.weight", w3)
    d.add("q_proj.weight_scale_inv", s3)
    d.expect("q_proj.weight", "fp8-block", fp8_block_ref(w3, s3, 128, 128), ["weight", "scale_inv"])
    d.save()

    # compressed-tensors float-quantized: value = fp8 × weight_scale (per channel, per tensor; E4M3 and E5M2).
    ct = Case("fp8_ct", {"quant_method": "compressed-tensors", "format": "float-quantized",
                         "config_groups": {"group_0": {"weights": {"num_bits": 8, "type": "float", "strategy": "channel"}}}})
    a = (randn(64, 48) * 50).to(torch.float8_e4m3fn)
    sa = (torch.rand(64, 1, generator=g) * 0.01).to(torch.bfloat16)
    ct.add("k_proj.weight", a)
    ct.add("k_proj.weight_scale", sa)
    ct.expect("k_proj.weight", "fp8-channel", a.float() * sa.float(), ["weight", "scale"])
    b = (randn(32, 40) * 1000).to(torch.float8_e5m2)
    sb = torch.tensor([0.0123], dtype=torch.float32)
    ct.add("v_proj.weight", b)
    ct.add("v_proj.weight_scale", sb)
    ct.add("v_proj.input_scale", torch.tensor([0.5], dtype=torch.float32))
    ct.raw.append("v_proj.input_scale")
    ct.expect("v_proj.weight", "fp8-tensor", b.float() * sb, ["weight", "scale"])
    # naive-quantized int8, asymmetric per channel: (q − zero) × scale.
    q = torch.randint(-128, 128, (16, 24), generator=g, dtype=torch.int8)
    sq = torch.rand(16, 1, generator=g) * 0.1
    zq = torch.randint(-5, 6, (16, 1), generator=g, dtype=torch.int8)
    ct.add("o_proj.weight", q)
    ct.add("o_proj.weight_scale", sq)
    ct.add("o_proj.weight_zero_point", zq)
    ct.expect("o_proj.weight", "int8-scaled", (q.float() - zq.float()) * sq, ["weight", "scale", "zero_point"])
    ct.save()


def mxfp4_cases():
    c = Case("mxfp4", {"quant_method": "mxfp4"})
    E, rows, G = 2, 8, 3
    blocks = torch.randint(0, 256, (E, rows, G, 16), generator=g, dtype=torch.uint8)
    scales = torch.randint(100, 140, (E, rows, G), generator=g, dtype=torch.uint8)
    # The E8M0 extremes that are numbers: 2^-127 and 2^127 (times 6: past float32's range, so ±inf).
    scales[0, 0, 0] = 0
    scales[0, 1, 2] = 254
    scales[1, 7, 1] = 1
    c.add("model.layers.0.mlp.experts.down_proj_blocks", blocks)
    c.add("model.layers.0.mlp.experts.down_proj_scales", scales)
    ref = mxfp4_ref(blocks, scales).transpose(1, 2)
    lib = convert_moe_packed_tensors(blocks, scales, dtype=torch.float32) if convert_moe_packed_tensors else None
    c.expect("model.layers.0.mlp.experts.down_proj", "mxfp4", ref, ["blocks", "scales"], lib)
    # 0xFF is NaN in the OCP MX spec (Transformers' ldexp would make it 2^128 instead): stored order, rank 3.
    b2 = torch.randint(0, 256, (4, 2, 16), generator=g, dtype=torch.uint8)
    s2 = torch.randint(120, 130, (4, 2), generator=g, dtype=torch.uint8)
    s2[2, 1] = 255
    c.add("model.layers.0.mlp.router_proj_blocks", b2)
    c.add("model.layers.0.mlp.router_proj_scales", s2)
    c.expect("model.layers.0.mlp.router_proj", "mxfp4", mxfp4_ref(b2, s2), ["blocks", "scales"])
    c.save()


def mxfp4_ref(blocks, scales):
    """OCP MX: element 2j is the low nibble of byte j; scale 2^(e − 127), e = 255 is NaN."""
    lo = E2M1[(blocks & 15).long()]
    hi = E2M1[(blocks >> 4).long()]
    vals = torch.stack([lo, hi], dim=-1).reshape(*blocks.shape[:-1], 32).double()
    e = scales.double()
    m = torch.where(e == 255, torch.tensor(float("nan"), dtype=torch.float64), torch.pow(2.0, e - 127))
    v = (vals * m.unsqueeze(-1)).float()
    return v.reshape(*blocks.shape[:-2], blocks.shape[-2] * 32)


def pack_e2m1(codes):
    """Two E2M1 codes a byte, the first in the low nibble (compressed-tensors and ModelOpt alike)."""
    c = codes.reshape(*codes.shape[:-1], codes.shape[-1] // 2, 2).to(torch.uint8)
    return (c[..., 0] | (c[..., 1] << 4)).to(torch.uint8)


def nvfp4_cases():
    rows, cols = 32, 64
    codes = torch.randint(0, 16, (rows, cols), generator=g)
    scale = (torch.rand(rows, cols // 16, generator=g) * 400 + 1).to(torch.float8_e4m3fn)
    c = Case("nvfp4_ct", {"quant_method": "compressed-tensors", "format": "nvfp4-pack-quantized",
                          "config_groups": {"group_0": {"weights": {"num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16}}}})
    gs = torch.tensor([448.0 * 6.0 / 3.7], dtype=torch.float32)
    c.add("mlp.up_proj.weight_packed", pack_e2m1(codes))
    c.add("mlp.up_proj.weight_scale", scale)
    c.add("mlp.up_proj.weight_global_scale", gs)
    # compressed-tensors: scale = weight_scale / global_scale (float32), then value = e2m1 × scale.
    s = scale.float() / gs
    ref = E2M1[codes] * s.repeat_interleave(16, 1)
    c.expect("mlp.up_proj.weight", "nvfp4", ref, ["weight_packed", "scale", "global_scale"])
    c.save()
    m = Case("nvfp4_modelopt", {"quant_method": "modelopt", "quant_algo": "NVFP4", "group_size": 16})
    s2 = torch.tensor(3.7 / (448.0 * 6.0), dtype=torch.float32)
    m.add("mlp.up_proj.weight", pack_e2m1(codes))
    m.add("mlp.up_proj.weight_scale", scale)
    m.add("mlp.up_proj.weight_scale_2", s2)
    m.add("mlp.up_proj.input_scale", torch.tensor(0.25, dtype=torch.float32))
    m.raw.append("mlp.up_proj.input_scale")
    # ModelOpt: the block scale times weight_scale_2 (float32), then value = e2m1 × that.
    ref2 = E2M1[codes] * (scale.float() * s2).repeat_interleave(16, 1)
    m.expect("mlp.up_proj.weight", "nvfp4", ref2, ["weight", "scale", "scale_2"])
    m.save()


def pack_int32(q, bits, dim):
    """compressed-tensors' pack_to_int32: offset to unsigned, then 32/bits values a word, first in the low bits."""
    per = 32 // bits
    u = (q.to(torch.int64) + (1 << (bits - 1))) & ((1 << bits) - 1)
    if dim == 0:
        u = u.t()
    n = u.shape[1]
    pad = (-n) % per
    u = torch.nn.functional.pad(u, (0, pad))
    u = u.reshape(u.shape[0], -1, per)
    word = torch.zeros(u.shape[:2], dtype=torch.int64)
    for i in range(per):
        word |= u[:, :, i] << (bits * i)
    word = torch.where(word >= 2**31, word - 2**32, word).to(torch.int32)
    return word.t().contiguous() if dim == 0 else word


def ct_pack_cases():
    c = Case("ct_pack", {"quant_method": "compressed-tensors", "format": "pack-quantized",
                         "config_groups": {"group_0": {"weights": {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": 32}}}})
    # int4, symmetric, groups of 32 over 128 columns.
    q = torch.randint(-8, 8, (64, 128), generator=g)
    s = (torch.rand(64, 4, generator=g) * 0.02 + 1e-3).to(torch.bfloat16)
    c.add("q_proj.weight_packed", pack_int32(q, 4, 1))
    c.add("q_proj.weight_scale", s)
    c.add("q_proj.weight_shape", torch.tensor([64, 128], dtype=torch.int64))
    c.expect("q_proj.weight", "int-packed", q.float() * s.float().repeat_interleave(32, 1), ["weight_packed", "scale"])
    # int4, asymmetric, per channel, 100 columns (the last word half padding), 20 rows (zero points padded too).
    q2 = torch.randint(-8, 8, (20, 100), generator=g)
    s2 = torch.rand(20, 1, generator=g, dtype=torch.float32) * 0.05
    z2 = torch.randint(-8, 8, (20, 1), generator=g)
    c.add("k_proj.weight_packed", pack_int32(q2, 4, 1))
    c.add("k_proj.weight_scale", s2)
    c.add("k_proj.weight_zero_point", pack_int32(z2, 4, 0))
    c.add("k_proj.weight_shape", torch.tensor([20, 100], dtype=torch.int64))
    c.expect("k_proj.weight", "int-packed", (q2.float() - z2.float()) * s2, ["weight_packed", "scale", "zero_point"])
    # int8, symmetric, per channel (config says 4 bits: the tensors win).
    q3 = torch.randint(-128, 128, (12, 40), generator=g)
    s3 = (torch.rand(12, 1, generator=g) * 0.01).to(torch.float16)
    c.add("v_proj.weight_packed", pack_int32(q3, 8, 1))
    c.add("v_proj.weight_scale", s3)
    c.add("v_proj.weight_shape", torch.tensor([12, 40], dtype=torch.int64))
    c.expect("v_proj.weight", "int-packed", q3.float() * s3.float(), ["weight_packed", "scale"])
    c.save()


def gptq_pack(q, bits):
    """AutoGPTQ's pack: qweight [in/per, out] packs input rows, first row in the low bits."""
    per = 32 // bits
    i, o = q.shape
    u = q.to(torch.int64).reshape(i // per, per, o)
    w = torch.zeros(i // per, o, dtype=torch.int64)
    for k in range(per):
        w |= u[:, k, :] << (bits * k)
    return torch.where(w >= 2**31, w - 2**32, w).to(torch.int32)


def pack_cols(z, bits, order=None):
    """Packs columns into int32 words (GPTQ's qzeros; AWQ's qweight and qzeros with its column order)."""
    per = 32 // bits
    r, n = z.shape
    u = (z.to(torch.int64) & ((1 << bits) - 1)).reshape(r, n // per, per)
    w = torch.zeros(r, n // per, dtype=torch.int64)
    for k in range(per):
        col = order[k] if order else k
        w |= u[:, :, col] << (bits * k)
    return torch.where(w >= 2**31, w - 2**32, w).to(torch.int32)


def gptq_cases():
    c = Case("gptq", {"quant_method": "gptq", "bits": 4, "group_size": 16, "desc_act": True, "sym": False})
    cin, out_f, gsz = 64, 48, 16
    groups = cin // gsz
    q = torch.randint(0, 16, (cin, out_f), generator=g)
    zeros = torch.randint(0, 16, (groups, out_f), generator=g)
    zeros[0, :8] = 0  # stored as −1 & 15 = 15: the +1 wraps back to 0
    scales = (torch.rand(groups, out_f, generator=g) * 0.01 + 1e-3).to(torch.float16)
    perm = torch.randperm(cin, generator=g)
    g_idx = (perm // gsz).to(torch.int32)  # act-order: input rows in any order of groups
    c.add("layers.0.q_proj.qweight", gptq_pack(q, 4))
    c.add("layers.0.q_proj.qzeros", pack_cols(zeros - 1, 4))
    c.add("layers.0.q_proj.scales", scales)
    c.add("layers.0.q_proj.g_idx", g_idx)
    c.add("layers.0.q_proj.bias", randn(out_f).to(torch.float16))
    c.raw.append("layers.0.q_proj.bias")
    gi = g_idx.long()
    w = (q.float() - zeros[gi].float()) * scales[gi].float()  # [in, out]
    c.expect("layers.0.q_proj.weight", "gptq", w.t(), ["qweight", "qzeros", "scales", "g_idx"])
    c.save()
    v2 = Case("gptq_v2_8bit", {"quant_method": "gptq", "bits": 8, "group_size": -1, "checkpoint_format": "gptq_v2"})
    q8 = torch.randint(0, 256, (32, 16), generator=g)
    z8 = torch.randint(0, 256, (1, 16), generator=g)
    s8 = (torch.rand(1, 16, generator=g) * 0.01).to(torch.float16)
    v2.add("fc.qweight", gptq_pack(q8, 8))
    v2.add("fc.qzeros", pack_cols(z8, 8))
    v2.add("fc.scales", s8)
    v2.expect("fc.weight", "gptq", ((q8.float() - z8.float()) * s8.float()).t(), ["qweight", "qzeros", "scales"])
    v2.save()


AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]


def awq_cases():
    c = Case("awq", {"quant_method": "awq", "bits": 4, "group_size": 32, "version": "gemm", "zero_point": True})
    cin, out_f, gsz = 64, 48, 32
    q = torch.randint(0, 16, (cin, out_f), generator=g)
    zeros = torch.randint(0, 16, (cin // gsz, out_f), generator=g)
    scales = (torch.rand(cin // gsz, out_f, generator=g) * 0.01 + 1e-3).to(torch.float16)
    c.add("layers.0.mlp.gate_proj.qweight", pack_cols(q, 4, AWQ_ORDER))
    c.add("layers.0.mlp.gate_proj.qzeros", pack_cols(zeros, 4, AWQ_ORDER))
    c.add("layers.0.mlp.gate_proj.scales", scales)
    gi = torch.arange(cin) // gsz
    w = (q.float() - zeros[gi].float()) * scales[gi].float()
    c.expect("layers.0.mlp.gate_proj.weight", "awq", w.t(), ["qweight", "qzeros", "scales"])
    c.save()


def unrecognised_case():
    c = Case("unrecognised")
    c.add("a.weight_scale", torch.ones(4, 1))
    c.add("b.qweight", torch.zeros(8, 16, dtype=torch.int32))
    c.add("c.weight", torch.zeros(4, 4, dtype=torch.float8_e4m3fn))
    c.add("c.weight_scale_inv", torch.ones(3, 5))
    c.raw += ["a.weight_scale", "b.qweight", "c.weight", "c.weight_scale_inv"]
    c.save()


fp8_cases()
mxfp4_cases()
nvfp4_cases()
ct_pack_cases()
gptq_cases()
awq_cases()
unrecognised_case()
print(json.dumps({"transformers": Fp8Dequantize is not None}))
