"""Oracles for the fp8-block and mxfp4 quantizers and for dequantizing conversion.

usage:
  python3 block_schemes_oracle.py llama DIR          a tiny Llama in BF16 (Transformers' save_pretrained)
  python3 block_schemes_oracle.py ragged DIR         one file: weights whose sides are not multiples of 128
  python3 block_schemes_oracle.py gptoss DIR         a tiny gpt-oss (MoE experts [E, in, out]) in BF16
  python3 block_schemes_oracle.py fp8 ORIG OURS DEQ   compares OURS (quantize --scheme fp8-block of ORIG) with
                                                       Transformers' FineGrainedFP8 quantizer, DEQ (convert
                                                       --dtype f32 of OURS) with its dequantizer and loader
  python3 block_schemes_oracle.py mxfp4 ORIG OURS DEQ the same for MXFP4: the OCP Microscaling definition as
                                                       the quantizer, Transformers' gpt-oss dequantizer
  python3 block_schemes_oracle.py dequant FP8 OUT     writes OUT: FP8 with each weight_scale_inv weight as
                                                       Transformers' dequantized float32 values, the other
                                                       tensors as stored, config.json without quantization_config,
                                                       tokenizer.model copied
Prints one JSON object: mismatch counts (0 expected) and numpy's relL2 / SNR / cosine per tensor.

The FP8 reference quantizer is Transformers' own `Fp8Quantize._quantize_one`; for sides that are not
multiples of 128 (which it leaves unquantized) the same arithmetic runs on a zero-padded copy, which
changes no block's absMax. Transformers ships no CPU MXFP4 quantizer (it needs Triton), so the MXFP4
reference is written here from the OCP MX v1.0 definition: shared exponent floor(log2(absMax)) - 2
clamped to [-127, 127] (a zero block takes the smallest, as the spec's reference code does), E2M1
rounded to nearest even with saturation at 6.
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file

BLOCK = 128


def llama(out):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    c = LlamaConfig(vocab_size=128, hidden_size=256, intermediate_size=384, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False)
    m = LlamaForCausalLM(c).to(torch.bfloat16)
    # A spike, so that one block's scale differs much from its neighbours'.
    with torch.no_grad():
        m.model.layers[0].mlp.down_proj.weight[5, 7] = 3.0
    m.save_pretrained(out)


def ragged(out):
    g = torch.Generator().manual_seed(5)
    os.makedirs(out, exist_ok=True)
    t = {
        "a.weight": (torch.randn(200, 320, generator=g) * 0.05).bfloat16(),
        "b.weight": (torch.randn(130, 96, generator=g) * 0.3).bfloat16(),
        "z.weight": torch.zeros(64, 160).bfloat16(),
    }
    t["a.weight"][150, 300] = -7.5
    save_file(t, os.path.join(out, "model.safetensors"))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump({"model_type": "test"}, f)


def load_dir(d):
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            out.update(load_file(os.path.join(d, f)))
    return out


def cost(a, b):
    a = a.double().numpy().ravel()
    b = b.double().numpy().ravel()
    d = b - a
    na, nd, nb = np.linalg.norm(a), np.linalg.norm(d), np.linalg.norm(b)
    if na == 0 or nd == 0:
        return None  # an all-zero weight (or an exact one): no relative error to compare
    return {"relL2": nd / na, "snrDb": 20 * np.log10(na / nd), "cosine": float(a @ b / (na * nb))}


def bits_differ(a, b):
    # Transformers' MXFP4 loader dequantizes to BF16 on the CPU whatever dtype is asked; E2M1 times
    # a power of two is exact in BF16, so widening it back to float32 loses nothing.
    a, b = a.float(), b.float()
    return int((a.contiguous().view(torch.int32) != b.contiguous().view(torch.int32)).sum())


class _Config:
    weight_block_size = (BLOCK, BLOCK)
    scale_fmt = None

    def get(self, k, d=None):
        return getattr(self, k, d)


class _Quantizer:
    quantization_config = _Config()


def fp8_reference(w):
    """Transformers' quantizer; ragged sides padded with zeros to whole blocks, then cut."""
    from transformers.integrations.finegrained_fp8 import Fp8Quantize

    rows, cols = w.shape
    pr, pc = -rows % BLOCK, -cols % BLOCK
    padded = torch.nn.functional.pad(w.float(), (0, pc, 0, pr)).to(w.dtype) if pr or pc else w
    r = Fp8Quantize(_Quantizer())._quantize_one("x.weight", padded)
    return r["x.weight"][:rows, :cols], r["x.weight_scale_inv"]


def fp8(orig, ours, deq):
    from transformers.integrations.finegrained_fp8 import Fp8Dequantize

    o, q, d = load_dir(orig), load_dir(ours), load_dir(deq)
    report = {"tensors": {}, "codeMismatch": 0, "scaleMismatch": 0, "dequantMismatch": 0, "quantized": 0}
    for name, w in o.items():
        stem = name[: -len(".weight")] if name.endswith(".weight") else None
        if stem is None or f"{stem}.weight_scale_inv" not in q:
            continue
        report["quantized"] += 1
        codes, inv = fp8_reference(w)
        report["codeMismatch"] += int((q[name].view(torch.uint8) != codes.view(torch.uint8)).sum())
        report["scaleMismatch"] += bits_differ(q[f"{stem}.weight_scale_inv"], inv.float())
        ours_codes, ours_inv = q[name], q[f"{stem}.weight_scale_inv"]
        if w.shape[0] % BLOCK == 0 and w.shape[1] % BLOCK == 0:
            ref = Fp8Dequantize(_Quantizer())._dequantize_one(ours_codes, ours_inv, output_dtype=torch.float32)
        else:  # Transformers' dequantizer refuses ragged grids: the same product, block by block.
            rep = ours_inv.repeat_interleave(BLOCK, 0).repeat_interleave(BLOCK, 1)[: w.shape[0], : w.shape[1]]
            ref = ours_codes.float() * rep
        report["dequantMismatch"] += bits_differ(d[name], ref)
        report["tensors"][name] = cost(w, ref)
    report["loader"] = fp8_loader(ours, d)
    print(json.dumps(report))


def fp8_loader(ours, deq):
    """Transformers' from_pretrained with FineGrainedFP8Config(dequantize=True), on the CPU."""
    cfg = json.load(open(os.path.join(ours, "config.json")))
    if cfg.get("model_type") != "llama":
        return None
    from transformers import FineGrainedFP8Config, LlamaForCausalLM

    m = LlamaForCausalLM.from_pretrained(ours, quantization_config=FineGrainedFP8Config(dequantize=True), dtype=torch.float32)
    sd = m.state_dict()
    return {"compared": sum(1 for k in deq if k in sd), "mismatch": sum(bits_differ(sd[k], deq[k]) for k in deq if k in sd)}


E2M1 = torch.tensor([0, 0.5, 1, 1.5, 2, 3, 4, 6], dtype=torch.float64)


def mxfp4_reference(w):
    x = w.double().reshape(w.shape[0], -1, 32)
    amax = x.abs().amax(-1)
    e = torch.where(amax > 0, torch.floor(torch.log2(torch.where(amax > 0, amax, 1))), torch.full_like(amax, -126))
    shared = torch.clamp(e - 2, -127, 127)
    v = x / torch.exp2(shared).unsqueeze(-1)
    a = v.abs().clamp(max=6)
    # Nearest E2M1 magnitude, ties to the even code.
    dist = (a.unsqueeze(-1) - E2M1).abs()
    best = dist.min(-1, keepdim=True).values
    cand = (dist == best)
    code = torch.where(cand.sum(-1) > 1, torch.argmax((cand & (torch.arange(8) % 2 == 0)).int(), -1), torch.argmax(cand.int(), -1))
    code = code | torch.where(torch.signbit(v), 8, 0)
    packed = (code[..., 0::2] | (code[..., 1::2] << 4)).to(torch.uint8)
    return packed, (shared + 127).to(torch.uint8)


def mxfp4(orig, ours, deq):
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    o, q, d = load_dir(orig), load_dir(ours), load_dir(deq)
    report = {"tensors": {}, "blockMismatch": 0, "scaleMismatch": 0, "dequantMismatch": 0, "quantized": 0}
    for name, w in o.items():
        if f"{name}_blocks" not in q:
            continue
        report["quantized"] += 1
        blocks, scales = q[f"{name}_blocks"], q[f"{name}_scales"]
        if w.dim() == 3:  # gpt-oss experts [E, in, out], stored transposed: [E, out, in/32, 16]
            e, inner, outer = w.shape
            rb, rs = mxfp4_reference(w.transpose(1, 2).reshape(e * outer, inner))
            rb, rs = rb.reshape(blocks.shape), rs.reshape(scales.shape)
            ref = convert_moe_packed_tensors(blocks, scales, dtype=torch.float32)
        else:  # gpt-oss's dequantizer takes experts [E, rows, G, 16] and returns [E, G*32, rows].
            rb, rs = mxfp4_reference(w)
            ref = convert_moe_packed_tensors(blocks.unsqueeze(0), scales.unsqueeze(0), dtype=torch.float32)[0].T
        report["blockMismatch"] += int((blocks != rb).sum())
        report["scaleMismatch"] += int((scales != rs).sum())
        report["dequantMismatch"] += bits_differ(d[name], ref.contiguous())
        report["tensors"][name] = cost(w, ref)
    report["loader"] = mxfp4_loader(ours, d)
    print(json.dumps(report))


def mxfp4_loader(ours, deq):
    """Transformers' from_pretrained of a gpt-oss model with Mxfp4Config(dequantize=True), on the CPU."""
    cfg = json.load(open(os.path.join(ours, "config.json")))
    if cfg.get("model_type") != "gpt_oss":
        return None
    from transformers import GptOssForCausalLM, Mxfp4Config

    m = GptOssForCausalLM.from_pretrained(ours, quantization_config=Mxfp4Config(dequantize=True), dtype=torch.float32)
    sd = m.state_dict()
    return {"compared": sum(1 for k in deq if k in sd), "mismatch": sum(bits_differ(sd[k], deq[k]) for k in deq if k in sd)}


def fp8_dequantized(codes, inv):
    """Transformers' FP8 block dequantizer; ragged grids (which it refuses) as the same product, block by block."""
    from transformers.integrations.finegrained_fp8 import Fp8Dequantize

    rows, cols = codes.shape
    if rows % BLOCK == 0 and cols % BLOCK == 0:
        return Fp8Dequantize(_Quantizer())._dequantize_one(codes, inv, output_dtype=torch.float32)
    rep = inv.float().repeat_interleave(BLOCK, 0).repeat_interleave(BLOCK, 1)[:rows, :cols]
    return codes.float() * rep


def dequant(src, out):
    os.makedirs(out, exist_ok=True)
    t = load_dir(src)
    res = {}
    for name, v in t.items():
        if name.endswith(".weight_scale_inv"):
            continue
        inv = t.get(name[: -len(".weight")] + ".weight_scale_inv") if name.endswith(".weight") else None
        res[name] = fp8_dequantized(v, inv).contiguous() if inv is not None else v
    save_file(res, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    cfg = json.load(open(os.path.join(src, "config.json")))
    cfg.pop("quantization_config", None)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f)
    tok = os.path.join(src, "tokenizer.model")
    if os.path.exists(tok):
        with open(tok, "rb") as a, open(os.path.join(out, "tokenizer.model"), "wb") as b:
            b.write(a.read())
    print(json.dumps({"dequantized": sorted(n for n in t if n.endswith(".weight_scale_inv"))}))


def gptoss(out):
    from transformers import GptOssConfig, GptOssForCausalLM

    torch.manual_seed(0)
    c = GptOssConfig(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=1, num_attention_heads=2,
                     num_key_value_heads=1, head_dim=32, num_local_experts=4, num_experts_per_tok=2,
                     max_position_embeddings=64, layer_types=["full_attention"])
    GptOssForCausalLM(c).to(torch.bfloat16).save_pretrained(out)


if __name__ == "__main__":
    cmd = sys.argv[1]
    {"llama": llama, "ragged": ragged, "gptoss": gptoss, "fp8": fp8, "mxfp4": mxfp4, "dequant": dequant}[cmd](*sys.argv[2:])
