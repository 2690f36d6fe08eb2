#!/usr/bin/env python3
"""The oracle for diffing an HF safetensors Llama against a GGUF of it: gguf-py reads and
dequantizes the GGUF, numpy undoes llama.cpp's q/k row order the way its converter applies it
(reshape to heads × 2 halves, swap), and the errors are computed in float64.

Usage: ggufModel_diff_oracle.py MODEL.safetensors MODEL.gguf HEADS KV_HEADS  (prints JSON)
"""
import json
import struct
import sys

import numpy as np
from gguf import GGUFReader, quants

HF = {'attn_q': 'self_attn.q_proj', 'attn_k': 'self_attn.k_proj', 'attn_v': 'self_attn.v_proj',
      'attn_output': 'self_attn.o_proj', 'ffn_gate': 'mlp.gate_proj', 'ffn_up': 'mlp.up_proj',
      'ffn_down': 'mlp.down_proj', 'attn_norm': 'input_layernorm', 'ffn_norm': 'post_attention_layernorm'}
TOP = {'token_embd.weight': 'model.embed_tokens.weight', 'output_norm.weight': 'model.norm.weight', 'output.weight': 'lm_head.weight'}


def hf_name(name):
    if name in TOP:
        return TOP[name]
    _, n, kind, leaf = name.split('.')
    return f'model.layers.{n}.{HF[kind]}.{leaf}'


def read_safetensors(path):
    raw = open(path, 'rb').read()
    n = struct.unpack('<Q', raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for k, v in header.items():
        if k == '__metadata__':
            continue
        assert v['dtype'] == 'F32', v['dtype']
        a, b = v['data_offsets']
        out[k] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=np.float32).reshape(v['shape'])
    return out


def unpermute(w, n_head):
    # llama.cpp's converter: w.reshape(n_head, 2, rows // n_head // 2, *rest).swapaxes(1, 2); this is its inverse.
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main():
    st, gg, heads, kv = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    a = read_safetensors(st)
    out = {}
    for t in GGUFReader(gg).tensors:
        b = quants.dequantize(t.data, t.tensor_type).reshape([int(d) for d in reversed(t.shape)])
        if '.attn_q.' in t.name:
            b = unpermute(b, heads)
        elif '.attn_k.' in t.name:
            b = unpermute(b, kv)
        name = hf_name(t.name)
        x = a[name].astype(np.float64)
        y = b.astype(np.float64)
        d = y - x
        na, nd = np.linalg.norm(x), np.linalg.norm(d)
        out[name] = {'gguf': t.name, 'relL2': nd / na, 'cosine': float(x.ravel() @ y.ravel() / (na * np.linalg.norm(y))),
                     'maxAbs': float(np.abs(d).max()), 'sumD2': float(nd ** 2), 'sumA2': float(na ** 2), 'bytes': int(t.n_bytes)}
    print(json.dumps(out))


if __name__ == '__main__':
    main()
