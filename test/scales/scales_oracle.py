#!/usr/bin/env python3
"""Scale statistics computed independently of the TypeScript reader and kernel.

  scales_oracle.py gguf OUTDIR        writes OUTDIR/scales.gguf (gguf-py's GGUFWriter; legacy types
                                      quantized by gguf-py from real values, the others random bytes)
                                      and OUTDIR/scales.gguf.json: per tensor, per series, the statistics
  scales_oracle.py st CASEDIR...      the statistics of the scale and zero-point tensors of quantized
                                      safetensors cases (make_quantized_fixtures.py), by logical tensor

Block `d` values are read with numpy views of the blocks that GGUFReader returns. The K-quants'
sub-block scales come from gguf-py's own dequantizers, run on copies of the blocks whose quants
are set so that each value equals its sub-block's scale (or minus its min). Histograms use
math.frexp for the exponent: 4 bins per octave from 2^-160.
"""
import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np

LOG2_LO = -160
ZERO_LO = -1024
# NaN and ±Inf scales are part of the fixtures; numpy's warnings about them are noise.
warnings.filterwarnings('ignore')
QUARTERS = [2 ** 0.25, 2 ** 0.5, 2 ** 0.75]


def series(values, kind='scale', codes=None, rule=None):
    v = np.asarray(values, dtype=np.float64).ravel()
    fin = v[np.isfinite(v)]
    out = {'kind': kind, 'count': int(v.size), 'zeros': int((fin == 0).sum()), 'nonFinite': int(v.size - fin.size),
           'negative': int((fin < 0).sum()),
           'min': float(fin.min()) if fin.size else None, 'max': float(fin.max()) if fin.size else None,
           'mean': float(fin.sum() / fin.size) if fin.size else None}
    hist = {}
    if kind == 'zero':
        for x in fin:
            b = int(min(2047, max(0, int(x) - ZERO_LO)))
            hist[b] = hist.get(b, 0) + 1
    else:
        nz = np.abs(fin[fin != 0])
        out['absMin'] = float(nz.min()) if nz.size else None
        out['absMax'] = float(nz.max()) if nz.size else None
        for a in nz:
            m, e = math.frexp(float(a))  # a = m × 2^e, m in [0.5, 1)
            m, e = m * 2, e - 1
            q = 3 if m >= QUARTERS[2] else 2 if m >= QUARTERS[1] else 1 if m >= QUARTERS[0] else 0
            b = (e - LOG2_LO) * 4 + q
            hist[b] = hist.get(b, 0) + 1
    out['hist'] = {str(k): c for k, c in sorted(hist.items())}
    if rule == 'e8m0':
        c = np.asarray(codes).ravel()
        out['saturated'] = {'low': int((c == 0).sum()), 'high': int((c >= 254).sum())}
    elif rule == 'e4m3':
        c = np.asarray(codes).ravel()
        out['saturated'] = {'low': 0, 'high': int(((c & 0x7F) == 0x7E).sum())}
    return out


# ---------------------------------------------------------------------------------------- GGUF

def gguf_write(out: Path):
    from gguf import GGUFWriter, GGMLQuantizationType as T
    from gguf.constants import GGML_QUANT_SIZES
    from gguf.quants import quantize
    rng = np.random.default_rng(77)
    w = GGUFWriter(out / 'scales.gguf', 'llama')
    # Real values for the legacy types: rows of very different magnitudes, one all zero (d = 0).
    x = rng.standard_normal((64, 512)).astype(np.float32) * (10.0 ** rng.uniform(-4, 1, (64, 1))).astype(np.float32)
    x[5] = 0
    for name in ['Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0']:
        w.add_tensor(f'{name.lower()}.weight', quantize(x, T[name]), raw_dtype=T[name])
    # Random bytes for the others: every f16 pattern of d occurs, NaN and ±Inf among them.
    for name in ['Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K', 'Q8_K', 'IQ4_XS', 'IQ2_XXS', 'IQ1_M', 'TQ2_0', 'MXFP4', 'Q4_0']:
        qt = T[name]
        block, size = GGML_QUANT_SIZES[qt]
        raw = rng.integers(0, 256, size=(48, 1024 // block * size), dtype=np.uint8)
        w.add_tensor(f'raw_{name.lower()}.weight', raw, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def f16(blocks, at):
    return blocks[:, at:at + 2].copy().view(np.float16).astype(np.float32).ravel()


def via_dequant(cls, blocks, set_bytes, sub):
    """gguf-py's dequantizer on copies of the blocks with bytes set (slices → value); every `sub`-th output."""
    b = blocks.copy()
    for (a, z), v in set_bytes.items():
        b[:, a:z] = v
    return cls.dequantize_blocks(b).reshape(-1)[::sub]


def gguf_series(type_name, blocks):
    import gguf.quants as Q
    d = {'Q4_0': 0, 'Q5_0': 0, 'Q8_0': 0, 'IQ2_XXS': 0, 'IQ4_XS': 0, 'TQ2_0': 64, 'Q6_K': 208, 'Q3_K': 108, 'Q2_K': 80}
    s = {}
    if type_name in ('Q4_1', 'Q5_1'):
        s['d'] = series(f16(blocks, 0))
        s['m'] = series(f16(blocks, 2))
    elif type_name in ('Q4_K', 'Q5_K'):
        s['d'] = series(f16(blocks, 0))
        s['dmin'] = series(f16(blocks, 2))
        cls = Q.Q4_K if type_name == 'Q4_K' else Q.Q5_K
        q = (16, 144) if type_name == 'Q4_K' else (48, 176)
        hi = {(16, 48): 0} if type_name == 'Q5_K' else {}
        s['d×sc (sub-block)'] = series(via_dequant(cls, blocks, {(2, 4): 0, q: 0x11, **hi}, 32))
        s['dmin×m (sub-block)'] = series(-via_dequant(cls, blocks, {(0, 2): 0, q: 0, **hi}, 32))
    elif type_name == 'Q2_K':
        s['d'] = series(f16(blocks, 80))
        s['dmin'] = series(f16(blocks, 82))
        s['d×sc (sub-block)'] = series(via_dequant(Q.Q2_K, blocks, {(82, 84): 0, (16, 80): 0x55}, 16))
        s['dmin×m (sub-block)'] = series(-via_dequant(Q.Q2_K, blocks, {(80, 82): 0, (16, 80): 0}, 16))
    elif type_name == 'Q3_K':
        s['d'] = series(f16(blocks, 108))
        s['d×sc (sub-block)'] = series(via_dequant(Q.Q3_K, blocks, {(0, 32): 0xFF, (32, 96): 0x55}, 16))
    elif type_name == 'Q6_K':
        s['d'] = series(f16(blocks, 208))
        s['d×sc (sub-block)'] = series(via_dequant(Q.Q6_K, blocks, {(0, 128): 0x11, (128, 192): 0xAA}, 16))
    elif type_name == 'IQ4_XS':
        s['d'] = series(f16(blocks, 0))
        # IQ4_NL's table maps code 8 to 1: each value is then its sub-block's scale.
        s['d×sc (sub-block)'] = series(via_dequant(Q.IQ4_XS, blocks, {(8, 136): 0x88}, 32))
    elif type_name == 'Q8_K':
        s['d'] = series(blocks[:, 0:4].copy().view(np.float32).ravel())
    elif type_name == 'IQ1_M':
        sc = blocks[:, 48:56].copy().view(np.uint16).astype(np.uint32)
        bits = (sc[:, 0] >> 12) | ((sc[:, 1] >> 8) & 0xF0) | ((sc[:, 2] >> 4) & 0xF00) | (sc[:, 3] & 0xF000)
        s['d'] = series(bits.astype(np.uint16).view(np.float16).astype(np.float32))
    elif type_name == 'MXFP4':
        e = blocks[:, 0].astype(np.int64)
        v = np.where(e == 255, np.nan, np.ldexp(1.0, e - 127))
        s['E8M0 scale'] = series(v, codes=e, rule='e8m0')
    else:
        s['d'] = series(f16(blocks, d[type_name]))
    return s


def gguf_oracle(out: Path):
    from gguf import GGUFReader
    from gguf.constants import GGML_QUANT_SIZES
    gguf_write(out)
    r = GGUFReader(out / 'scales.gguf')
    res = {}
    for t in r.tensors:
        block, size = GGML_QUANT_SIZES[t.tensor_type]
        blocks = np.asarray(t.data).reshape(-1, size)
        res[t.name] = {'type': t.tensor_type.name, 'series': gguf_series(t.tensor_type.name, blocks)}
    (out / 'scales.gguf.json').write_text(json.dumps(res))


# --------------------------------------------------------------------------- quantized safetensors

def unpack(words, bits):
    w = np.asarray(words, dtype=np.int64) & 0xFFFFFFFF
    per = 32 // bits
    return np.stack([(w >> (k * bits)) & ((1 << bits) - 1) for k in range(per)], axis=-1)


def st_case(case: Path):
    import torch
    from safetensors.torch import load_file
    t = load_file(str(case / 'model.safetensors'))
    cfg = {}
    if (case / 'config.json').exists():
        cfg = json.loads((case / 'config.json').read_text()).get('quantization_config', {})
    res = {}
    for name, x in t.items():
        if name.endswith('_scales') and x.dtype == torch.uint8:
            e = x.numpy().astype(np.int64)
            res.setdefault(name[:-len('_scales')], {})['scales'] = series(np.where(e == 255, np.nan, np.ldexp(1.0, e - 127)), codes=e, rule='e8m0')
        elif name.endswith('.weight_scale') and x.dtype == torch.float8_e4m3fn and name.replace('.weight_scale', '.weight_scale_2') in t:
            g = t[name.replace('.weight_scale', '.weight_scale_2')].float()
            res.setdefault(name[:-len('_scale')], {})['scale'] = series((x.float() * g).numpy(), codes=x.view(torch.uint8).numpy(), rule='e4m3')
        elif name.endswith('.weight_scale') and x.dtype == torch.float8_e4m3fn and name.replace('.weight_scale', '.weight_global_scale') in t:
            g = t[name.replace('.weight_scale', '.weight_global_scale')].float()
            res.setdefault(name[:-len('_scale')], {})['scale'] = series((x.float() / g).numpy(), codes=x.view(torch.uint8).numpy(), rule='e4m3')
        elif name.endswith(('.weight_scale', '.weight_scale_inv')):
            role = 'scale_inv' if name.endswith('_inv') else 'scale'
            stem = name[:name.rindex('.weight_scale')]
            codes = x.view(torch.uint8).numpy() if x.dtype in (torch.float8_e4m3fn, torch.float8_e8m0fnu) else None
            rule = 'e4m3' if x.dtype == torch.float8_e4m3fn else 'e8m0' if x.dtype == torch.float8_e8m0fnu else None
            res.setdefault(stem + '.weight', {})[role] = series(x.float().numpy(), codes=codes, rule=rule)
        elif name.endswith('.weight_zero_point'):
            stem = name[:-len('.weight_zero_point')]
            if x.dtype == torch.int32 and (stem + '.weight_packed') in t:
                # compressed-tensors: zero points packed along the rows, offset by 2^(bits−1).
                bits = cfg.get('config_groups', {}).get('group_0', {}).get('weights', {}).get('num_bits', 4)
                rows = int(t[stem + '.weight_shape'][0])
                z = unpack(x.numpy(), bits)  # [rows/per, groups, per]
                z = np.transpose(z, (0, 2, 1)).reshape(-1, z.shape[1])[:rows] - (1 << (bits - 1))
                res.setdefault(stem + '.weight', {})['zero_point'] = series(z, kind='zero')
            else:
                res.setdefault(stem + '.weight', {})['zero_point'] = series(x.numpy(), kind='zero')
        elif name.endswith('.scales'):
            res.setdefault(name[:-len('.scales')] + '.weight', {})['scales'] = series(x.float().numpy())
        elif name.endswith('.qzeros'):
            bits = cfg.get('bits', 4)
            z = unpack(x.numpy(), bits)
            if cfg.get('quant_method') == 'gptq' and cfg.get('checkpoint_format') != 'gptq_v2':
                z = (z + 1) & ((1 << bits) - 1)
            res.setdefault(name[:-len('.qzeros')] + '.weight', {})['qzeros'] = series(z, kind='zero')
    return res


def main():
    if sys.argv[1] == 'gguf':
        gguf_oracle(Path(sys.argv[2]))
    else:
        print(json.dumps({Path(c).name: st_case(Path(c)) for c in sys.argv[2:]}))


if __name__ == '__main__':
    main()
