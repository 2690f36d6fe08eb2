#!/usr/bin/env python3
"""GGUF files written by gguf-py's GGUFWriter, and what gguf-py's GGUFReader reads back from
each (JSON beside it): the independent oracle for the TypeScript reader.

Usage: gguf_fixtures.py OUTDIR
"""
import json
import sys
from pathlib import Path

import numpy as np
from gguf import GGUFEndian, GGUFReader, GGUFValueType, GGUFWriter, GGMLQuantizationType
from gguf.constants import GGML_QUANT_SIZES

rng = np.random.default_rng(1234)


def add_all_value_types(w: GGUFWriter) -> None:
    w.add_uint8('test.u8', 200)
    w.add_int8('test.i8', -100)
    w.add_uint16('test.u16', 65000)
    w.add_int16('test.i16', -32000)
    w.add_uint32('test.u32', 4_000_000_000)
    w.add_int32('test.i32', -2_000_000_000)
    w.add_float32('test.f32', 3.25)
    w.add_uint64('test.u64', 2**63 + 12345)
    w.add_int64('test.i64', -(2**62) - 7)
    w.add_float64('test.f64', 1e300)
    w.add_bool('test.true', True)
    w.add_bool('test.false', False)
    w.add_string('test.string', 'héllo wörld ✓ 𝔾')
    w.add_string('test.empty', '')
    w.add_array('test.arr_i32', [1, -2, 3])
    w.add_array('test.arr_f32', [0.5, -1.5])
    w.add_array('test.arr_str', ['a', '', 'ü'])
    w.add_array('test.arr_bool', [True, False, True])
    w.add_key_value('test.arr_u8', list(range(100)), GGUFValueType.ARRAY, GGUFValueType.UINT8)
    w.add_key_value('test.arr_u64', [0, 2**64 - 1, 5], GGUFValueType.ARRAY, GGUFValueType.UINT64)
    w.add_key_value('test.arr_f64', [float(i) / 7 for i in range(70)], GGUFValueType.ARRAY, GGUFValueType.FLOAT64)
    w.add_key_value('test.nested', [[1, 2], [3]], GGUFValueType.ARRAY, GGUFValueType.ARRAY)
    w.add_key_value('test.nested_str', [['x', 'yy'], ['zzz']], GGUFValueType.ARRAY, GGUFValueType.ARRAY)


TENSOR_TYPES = ['F32', 'F16', 'BF16', 'F64', 'I8', 'I16', 'I32', 'I64', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0',
                'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K', 'Q8_K', 'IQ2_XXS', 'IQ2_XS', 'IQ2_S', 'IQ3_XXS', 'IQ3_S',
                'IQ1_S', 'IQ1_M', 'IQ4_NL', 'IQ4_XS', 'TQ1_0', 'TQ2_0', 'MXFP4']


def add_tensors(w: GGUFWriter, count: int = len(TENSOR_TYPES)) -> None:
    shapes = [(256,), (2, 256), (3, 2, 256), (2, 1, 2, 512)]
    for i, name in enumerate(TENSOR_TYPES[:count]):
        qt = GGMLQuantizationType[name]
        block, size = GGML_QUANT_SIZES[qt]
        shape = shapes[i % len(shapes)]  # row-major, outermost first
        raw = rng.integers(0, 256, size=(*shape[:-1], shape[-1] // block * size), dtype=np.uint8)
        w.add_tensor(f'blk.{i}.{name.lower()}.weight', raw, raw_dtype=qt)


def write(path: Path, fill, **kw) -> None:
    w = GGUFWriter(path, 'llama', **kw)
    fill(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def vocab(w: GGUFWriter) -> None:
    n = 150_000
    w.add_tokenizer_model('gpt2')
    w.add_token_list([f'tok{i}_\u0120é' if i % 3 else f'<{i}>' for i in range(n)])
    w.add_token_scores([float(-i) for i in range(n)])
    w.add_token_types([i % 6 for i in range(n)])
    w.add_token_merges([f'a{i} b{i}' for i in range(n // 2)])
    add_tensors(w, 2)


def plain(v):
    """JSON form of a decoded value: 64-bit integers as strings, exact."""
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return float(v)
    return v


def dump(path: Path) -> None:
    r = GGUFReader(path)
    fields = {}
    for name, f in r.fields.items():
        if name.startswith('GGUF.'):
            continue
        fields[name] = {'types': [int(t) for t in f.types], 'value': plain(f.contents())}
    tensors = [{
        'name': t.name, 'type': int(t.tensor_type), 'ne': [int(x) for x in t.shape],
        'elements': int(t.n_elements), 'bytes': int(t.n_bytes), 'offset': int(t.data_offset),
    } for t in r.tensors]
    path.with_suffix('.json').write_text(json.dumps({'fields': fields, 'tensors': tensors}))


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    write(out / 'all-types.gguf', lambda w: (add_all_value_types(w), add_tensors(w)))
    write(out / 'aligned64.gguf', lambda w: (w.add_uint32('general.alignment', 64), add_tensors(w, 6)))
    write(out / 'vocab.gguf', vocab)
    # v2 has v3's layout; only the version field differs.
    v2 = bytearray((out / 'all-types.gguf').read_bytes())
    v2[4:8] = (2).to_bytes(4, 'little')
    (out / 'v2.gguf').write_bytes(v2)
    write(out / 'split.gguf', lambda w: (add_all_value_types(w), add_tensors(w, 7)), split_max_tensors=3)
    write(out / 'big-endian.gguf', lambda w: add_tensors(w, 1), endianess=GGUFEndian.BIG)
    for p in sorted(out.glob('*.gguf')):
        if p.name != 'big-endian.gguf':
            dump(p)


if __name__ == '__main__':
    main()
