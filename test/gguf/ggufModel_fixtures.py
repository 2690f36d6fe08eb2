#!/usr/bin/env python3
"""GGUF models written by gguf-py for the model-layer tests: tensors of many ggml types with
sane scales, a tokenizer, and a split set; beside each file a JSON of what gguf-py and numpy
say about it (row-major shapes, type names, statistics of gguf.quants.dequantize's values).

Usage: ggufModel_fixtures.py OUTDIR
"""
import json
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T, GGUFReader, GGUFWriter, quants
from gguf.constants import GGML_QUANT_SIZES

rng = np.random.default_rng(99)

# Types gguf-py can quantize: real values in, blocks out.
QUANTIZABLE = ['Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'TQ2_0', 'MXFP4']
# K-quants gguf-py only dequantizes: random codes, with their f16 super-block scales (byte
# offsets within the block) set to finite values so that every value is finite.
RANDOM_CODES = {'Q2_K': [80, 82], 'Q3_K': [108], 'Q4_K': [0, 2], 'Q5_K': [0, 2], 'Q6_K': [208]}


def k_blocks(name, rows, cols):
    qt = T[name]
    block, size = GGML_QUANT_SIZES[qt]
    raw = rng.integers(0, 256, size=(rows, cols // block, size), dtype=np.uint8)
    for off in RANDOM_CODES[name]:
        scale = rng.uniform(0.001, 0.05, size=(rows, cols // block)).astype(np.float16)
        raw[:, :, off:off + 2] = scale.view(np.uint8).reshape(rows, cols // block, 2)
    return raw.reshape(rows, cols // block * size)


def add_tensors(w, stats):
    x = (rng.standard_normal((6, 512)) * 0.02).astype(np.float32)
    plain = {'F32': x, 'F16': x.astype(np.float16)}
    for name, arr in plain.items():
        w.add_tensor(f'plain.{name.lower()}', arr)
        stats[f'plain.{name.lower()}'] = (name, arr.astype(np.float32))
    bf = quants.quantize(x, T.BF16)
    w.add_tensor('plain.bf16', bf, raw_dtype=T.BF16)
    stats['plain.bf16'] = ('BF16', quants.dequantize(bf, T.BF16))
    for name in QUANTIZABLE:
        q = quants.quantize(x, T[name])
        w.add_tensor(f'q.{name.lower()}', q, raw_dtype=T[name])
        stats[f'q.{name.lower()}'] = (name, quants.dequantize(q, T[name]))
    for name in RANDOM_CODES:
        q = k_blocks(name, 3, 512)
        w.add_tensor(f'k.{name.lower()}', q, raw_dtype=T[name])
        stats[f'k.{name.lower()}'] = (name, quants.dequantize(q, T[name]))
    v = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 5
    w.add_tensor('plain.rank3', v)
    stats['plain.rank3'] = ('F32', v)


def add_tokenizer(w):
    n = 1000
    w.add_block_count(2)
    w.add_embedding_length(512)
    w.add_head_count(8)
    w.add_tokenizer_model('llama')
    w.add_tokenizer_pre('default')
    w.add_token_list(['<unk>', '<s>', '</s>'] + [f'tok{i}' for i in range(3, n)])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_chat_template('{% for m in messages %}{{ m.content }}{% endfor %}')


def write(path, split_max_tensors=0):
    # The same values in every file: the split set holds the single file's tensors.
    global rng
    rng = np.random.default_rng(99)
    stats = {}
    w = GGUFWriter(path, 'llama', split_max_tensors=split_max_tensors)
    add_tokenizer(w)
    add_tensors(w, stats)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    out = {}
    for name, (typ, values) in stats.items():
        f = values.astype(np.float64).ravel()
        out[name] = {
            'type': typ, 'shape': list(values.shape), 'count': int(f.size),
            'min': float(f.min()), 'max': float(f.max()), 'mean': float(f.mean()), 'std': float(f.std()),
            'zeros': int((f == 0).sum()), 'absMax': float(np.abs(f).max()),
        }
    return out


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    single = write(out / 'model.gguf')
    write(out / 'split.gguf', split_max_tensors=5)
    # gguf-py's reader is the oracle for shapes: its shape is ne, innermost first.
    r = GGUFReader(out / 'model.gguf')
    ne = {t.name: [int(d) for d in t.shape] for t in r.tensors}
    (out / 'model.json').write_text(json.dumps({'tensors': single, 'ne': ne}))


if __name__ == '__main__':
    main()
