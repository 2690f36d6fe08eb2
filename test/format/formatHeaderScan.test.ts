// The direct header scan against the thorough parser: on every header, valid or broken,
// parseHeader must give exactly what parseHeaderThorough gives (the same records, or the
// same error code and message), and the scan must take the headers writers really emit.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { DTYPES, DTYPE_INFO, FormatError, parseHeader, parseHeaderThorough, type DType } from '../../src/format';
import { scanPlainHeader } from '../../src/format/headerScan';
import { goldenCases } from '../fixtures/golden';

const enc = new TextEncoder();

type Outcome = { ok: true; value: unknown } | { ok: false; code: string; message: string };

function outcome(f: () => unknown): Outcome {
  try {
    return { ok: true, value: f() };
  } catch (e) {
    assert.ok(e instanceof FormatError, `not a FormatError: ${String(e)}`);
    return { ok: false, code: e.code, message: e.message };
  }
}

/** Both paths on one header (the bytes after the 8-byte prefix) and a data section of `data` bytes. */
function agree(head: Uint8Array, data: number, why: string): boolean {
  const size = 8 + head.length + data;
  const fast = outcome(() => parseHeader(head, 'h.safetensors', size, 1));
  const thorough = outcome(() => parseHeaderThorough(head, 'h.safetensors', size, 1));
  assert.deepStrictEqual(fast, thorough, `${why}: ${new TextDecoder().decode(head).slice(0, 300)}`);
  return scanPlainHeader(head, 8 + head.length, 1) !== undefined;
}

/** A header as a writer emits it: every tensor dtype, shape, data_offsets in some key order and spacing. */
function header(entries: { name: string; dtype: DType; shape: number[] }[], opts: { ws: string; keyOrder: number; metadata?: Record<string, string> }): { head: Uint8Array; data: number } {
  const { ws } = opts;
  let off = 0;
  const parts: string[] = [];
  if (opts.metadata) parts.push(`${ws}"__metadata__"${ws}:${ws}${JSON.stringify(opts.metadata)}`);
  for (const e of entries) {
    const bits = DTYPE_INFO[e.dtype].bits;
    const bytes = (e.shape.reduce((a, b) => a * b, 1) * bits) / 8;
    const fields = [`"dtype":${ws}"${e.dtype}"`, `"shape":${ws}[${e.shape.join(`,${ws}`)}]`, `"data_offsets":[${off},${ws}${off + bytes}]`];
    const order = [[0, 1, 2], [2, 1, 0], [1, 2, 0]][opts.keyOrder % 3];
    parts.push(`${ws}${JSON.stringify(e.name)}${ws}:${ws}{${order.map((i) => fields[i]).join(`,${ws}`)}${ws}}`);
    off += bytes;
  }
  const text = `{${parts.join(',')}${ws}}`;
  return { head: enc.encode(text + ' '.repeat((8 - (enc.encode(text).length % 8)) % 8)), data: off };
}

const entryArb = fc
  .record({
    name: fc.oneof(fc.string({ maxLength: 12 }), fc.fullUnicodeString({ maxLength: 6 }), fc.nat(300).map(String), fc.constant('__proto__')),
    dtype: fc.constantFrom(...DTYPES),
    dims: fc.array(fc.nat(5), { maxLength: 3 }),
  })
  .map(({ name, dtype, dims }) => {
    const bits = DTYPE_INFO[dtype].bits;
    const group = bits === 4 ? 2 : bits === 6 ? 4 : 1;
    return { name, dtype, shape: group > 1 ? [...dims, group] : dims };
  });

test('the scan takes valid headers, in any spacing and key order, and gives the thorough records', () => {
  let taken = 0;
  fc.assert(
    fc.property(
      fc.uniqueArray(entryArb, { selector: (e) => e.name, maxLength: 8 }).map((a) => a.filter((e) => e.name !== '__metadata__')),
      fc.constantFrom('', ' ', '\n  ', '\t', '\r\n'),
      fc.nat(),
      fc.option(fc.dictionary(fc.oneof(fc.string({ maxLength: 6 }), fc.fullUnicodeString({ maxLength: 4 })), fc.fullUnicodeString({ maxLength: 8 }), { maxKeys: 4 }), { nil: undefined }),
      (entries, ws, keyOrder, metadata) => {
        const { head, data } = header(entries, { ws, keyOrder, metadata });
        if (agree(head, data, 'valid')) taken++;
        // Wrong data sizes: the layout errors come from the same place on both paths.
        agree(head, data + 1, 'trailing byte');
        if (data > 0) agree(head, data - 1, 'truncated');
      },
    ),
    { numRuns: 500 },
  );
  // Every generated header is plain: none should fall through to the thorough parser.
  assert.equal(taken, 500);
});

test('the scan takes a 10,000-tensor header shaped like a real model', () => {
  const entries = Array.from({ length: 10_000 }, (_, i) => ({ name: `model.layers.${i >> 4}.mlp.w${i & 15}.weight`, dtype: 'BF16' as const, shape: [4, 1 + (i % 7)] }));
  const { head, data } = header(entries, { ws: '', keyOrder: 0, metadata: { format: 'pt', 'config "quoted"': 'line\nbreak \u00e9 \ud83d\ude00' } });
  assert.ok(agree(head, data, '10k'));
  const p = parseHeader(head, 'h', 8 + head.length + data);
  assert.equal(p.tensors.length, 10_000);
  assert.deepStrictEqual(p.tensors[9_999], { name: 'model.layers.624.mlp.w15.weight', dtype: 'BF16', shape: [4, 4], numel: 16, file: 0, byteOffset: p.tensors[9_998].byteOffset + p.tensors[9_998].byteLength, byteLength: 32 });
});

// Spellings the scan must leave to the thorough parser, each next to a valid neighbour.
const AWKWARD = [
  '"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}',
  '"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"dtype":"F32"}',
  '"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}',
  '"a":{"dtype":"F32","shape":[1e0],"data_offsets":[0,4]}',
  '"a":{"dtype":"F32","shape":[01],"data_offsets":[0,4]}',
  '"a":{"dtype":"F32","shape":[-0],"data_offsets":[0,4]}',
  '"a":{"dtype":"F32","shape":[1],"data_offsets":[0,0004]}',
  '"a":{"dtype":"F32","shape":[1],"data_offsets":[0000000000000000,4]}',
  '"a":{"dtype":"F32","shape":[9007199254740993],"data_offsets":[0,4]}',
  '"a":{"dtype":"F32","shape":[4503599627370496,2],"data_offsets":[0,4]}',
  '"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}',
  '"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}',
  '"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}',
  '"a":{"dtype":"F4","shape":[1],"data_offsets":[0,4]}',
  '"a":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}',
  '"a":{"dtype":"F\\u0033\\u0032","shape":[1],"data_offsets":[0,4]}',
  '"a":{"\\u0064type":"F32","shape":[1],"data_offsets":[0,4]}',
  '"a":{"dtype":"F32","shape":[1]}',
  '"a":{"dtype":"F32","shape":null,"data_offsets":[0,4]}',
  '"a":[1]',
  '"a":null',
  '"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}',
  '"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"\\u0061":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}',
  '"\\ud800":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}',
  '"\\ud83d\\ude00":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}',
  '"a\tb":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}',
  '"a\\qb":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}',
  '"__metadata__":null,"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}',
  '"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}',
  '"__metadata__":{"k":"v","k":"w"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}',
  '"__metadata__":{"2":"b","1":"a","__proto__":"p"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}',
  '"__metadata__":{},"__metadata__":{},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}',
  '"\\u005f_metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}',
  '"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}',
  '"10":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"2":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}',
  '"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},',
  '"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],}',
  '"a":{"dtype":"F32","shape":[1,],"data_offsets":[0,4]}',
  '"a":{"dtype":"F32" "shape":[1],"data_offsets":[0,4]}',
];

test('awkward headers: the scan leaves them alone or agrees, error for error', () => {
  for (const body of AWKWARD) {
    for (const [prefix, suffix] of [['{', '}'], ['{', '}  '], ['{', '}\n'], ['{', '} x'], [' {', '}']]) {
      const head = enc.encode(`${prefix}${body}${suffix}`);
      for (const data of [0, 4, 8, 12]) agree(head, data, body);
    }
  }
});

test('golden files and their byte mutations: both paths agree on every one', () => {
  let next = 0x2545f491;
  const rand = (n: number) => {
    next ^= next << 13;
    next ^= next >>> 17;
    next ^= next << 5;
    return (next >>> 0) % n;
  };
  const BYTES = [0x7b, 0x7d, 0x5b, 0x5d, 0x22, 0x3a, 0x2c, 0x2d, 0x2e, 0x65, 0x30, 0x31, 0x39, 0x20, 0x5c, 0x0a, 0x09, 0x00, 0xff, 0x80, 0xc3, 0xed, 0x75];
  for (const c of goldenCases()) {
    if (c.bytes.length < 8) continue;
    const n = Number(new DataView(c.bytes.buffer, c.bytes.byteOffset).getBigUint64(0, true));
    if (n > c.bytes.length - 8) continue;
    const head = c.bytes.subarray(8, 8 + n);
    const data = c.bytes.length - 8 - n;
    agree(head, data, c.name);
    for (let k = 0; k < 200; k++) {
      const m = Array.from(head);
      const at = rand(Math.max(1, m.length));
      const op = rand(4);
      if (op === 0) m[at] = BYTES[rand(BYTES.length)];
      else if (op === 1) m.splice(at, 0, BYTES[rand(BYTES.length)]);
      else if (op === 2) m.splice(at, 1 + rand(4));
      else m.splice(at, 0, ...m.slice(at, at + 1 + rand(30)));
      agree(Uint8Array.from(m), data, `${c.name} mutation ${k}`);
    }
  }
});
