"""Reads converter output back with gguf-py (GGUFReader) for the metadata tests.

usage: toGguf_dump.py F32.gguf Q8_0.gguf [PROBES]
PROBES: a JSON list of token ids whose [token, token type] to print under "probes"
prints JSON: {"fields": {key: {"type": name, "value": scalar or [len, first 3]}},
              "tensors": {name: [type name, shape]},
              "q8_mismatch": [names whose Q8_0 bytes differ from gguf-py's quantization of the F32 file's tensor]}
"""
import json
import sys

import numpy as np
from gguf import GGUFReader, GGMLQuantizationType
from gguf.quants import quantize

f32 = GGUFReader(sys.argv[1])
q8 = GGUFReader(sys.argv[2])


def value(field):
    types = [t.name for t in field.types]
    if types[0] == 'ARRAY':
        items = [field.contents(i) for i in range(len(field.data))] if len(field.data) else []
        return {'type': 'ARRAY[%s]' % types[1], 'value': [len(items), items[:3]]}
    return {'type': types[0], 'value': field.contents()}


out = {'fields': {k: value(f) for k, f in q8.fields.items() if not k.startswith('GGUF.')}, 'tensors': {}, 'q8_mismatch': []}
ref = {t.name: t for t in f32.tensors}
for t in q8.tensors:
    out['tensors'][t.name] = [t.tensor_type.name, [int(x) for x in t.shape]]
    if t.tensor_type == GGMLQuantizationType.Q8_0:
        src = np.asarray(ref[t.name].data, dtype=np.float32)
        mine = np.asarray(t.data).reshape(-1).view(np.uint8)
        theirs = quantize(src, GGMLQuantizationType.Q8_0).reshape(-1).view(np.uint8)
        if mine.tobytes() != theirs.tobytes():
            out['q8_mismatch'].append(t.name)
probes = json.loads(sys.argv[3]) if len(sys.argv) > 3 else []
if probes:
    tokens, types = q8.fields['tokenizer.ggml.tokens'], q8.fields['tokenizer.ggml.token_type']
    out['probes'] = {str(i): [tokens.contents(i), int(types.contents(i))] for i in probes}
print(json.dumps(out, default=lambda o: o.item() if hasattr(o, 'item') else str(o)))
