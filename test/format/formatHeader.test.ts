import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { DTYPES, DTYPE_INFO, FormatError, MAX_HEADER_BYTES, parseHeader, parseJsonChecked, readHeaderLength, type DType } from '../../src/format';

const enc = new TextEncoder();

interface Spec {
  name: string;
  dtype: DType;
  shape: number[];
  bytes: number;
}

const WS = ['', ' ', '\n', '\t', '\r\n  '];

/**
 * A header text for `specs` laid out in `layout` order (offsets), written in `order`
 * (header order), with random JSON whitespace and optional extra fields. The expected
 * result is known from the generator alone.
 */
function headerText(specs: Spec[], order: number[], ws: (i: number) => string, extra: (i: number) => string, metadata?: Record<string, string>): { text: string; begin: number[] } {
  const begin: number[] = [];
  let off = 0;
  for (const s of specs) {
    begin.push(off);
    off += s.bytes;
  }
  const parts: string[] = [];
  if (metadata) parts.push(`${ws(1)}"__metadata__"${ws(2)}:${ws(3)}${JSON.stringify(metadata)}`);
  order.forEach((i, k) => {
    const s = specs[i];
    parts.push(
      `${ws(k)}${JSON.stringify(s.name)}${ws(k + 1)}:${ws(k + 2)}{${ws(k)}"dtype":${ws(k + 3)}"${s.dtype}",${extra(k)}"shape":[${s.shape.join(`,${ws(k)}`)}]${ws(k + 4)},"data_offsets":${ws(k)}[${begin[i]},${ws(k + 1)}${begin[i] + s.bytes}]${ws(k + 2)}}`,
    );
  });
  return { text: `{${parts.join(',')}${ws(0)}}`, begin };
}

const specArb = fc
  .record({
    name: fc.oneof(fc.string({ maxLength: 10 }), fc.fullUnicodeString({ maxLength: 5 }), fc.nat(200).map(String)),
    dtype: fc.constantFrom(...DTYPES),
    dims: fc.array(fc.nat(4), { maxLength: 3 }),
  })
  .map(({ name, dtype, dims }): Spec => {
    const bits = DTYPE_INFO[dtype].bits;
    const group = bits === 4 ? 2 : bits === 6 ? 4 : 1;
    const shape = group > 1 ? [...dims, group] : dims;
    return { name, dtype, shape, bytes: (shape.reduce((a, b) => a * b, 1) * bits) / 8 };
  });

test('parseHeader returns exactly the generated tensors, whatever the formatting and key order', () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(specArb, { selector: (s) => s.name, maxLength: 7 }).map((a) => a.filter((s) => s.name !== '__metadata__')),
      fc.array(fc.nat(WS.length - 1), { minLength: 8, maxLength: 8 }),
      fc.boolean(),
      fc.option(fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 3 }), { nil: undefined }),
      fc.nat(),
      fc.nat(8),
      (specs, wsPick, withExtra, metadata, perm, pad) => {
        // A pseudo-random header order from `perm`.
        const order = specs.map((_, i) => i).sort((a, b) => ((a * 7919 + perm) % 101) - ((b * 7919 + perm) % 101));
        const ws = (i: number) => WS[wsPick[i % wsPick.length]];
        // Extra fields (with a fraction, a sign, nesting) force the exact parser; results must not change.
        const extra = (k: number) => (withExtra && k === 0 ? `"extra":{"v":[-1.5e3,true,null,{"z":"}"}]},` : '');
        const { text, begin } = headerText(specs, order, ws, extra, metadata);
        const head = enc.encode(text + ' '.repeat(pad));
        const data = specs.reduce((s, t) => s + t.bytes, 0);
        const got = parseHeader(head, 'p.safetensors', 8 + head.length + data, 3);
        assert.deepEqual(
          got.tensors.map((t) => ({ ...t, shape: [...t.shape] })),
          order.map((i) => ({
            name: specs[i].name,
            dtype: specs[i].dtype,
            shape: specs[i].shape,
            numel: specs[i].shape.reduce((a, b) => a * b, 1),
            file: 3,
            byteOffset: 8 + head.length + begin[i],
            byteLength: specs[i].bytes,
          })),
        );
        assert.deepEqual({ ...got.metadata }, metadata ?? {});
        assert.equal(got.headerBytes, head.length);
        assert.equal(got.dataOffset, 8 + head.length);
        // One byte more or less of data breaks the "ends exactly at the end of the file" rule.
        assert.throws(() => parseHeader(head, 'p', 9 + head.length + data), (e: unknown) => e instanceof FormatError && e.code === 'trailing_bytes');
        if (data > 0) assert.throws(() => parseHeader(head, 'p', 7 + head.length + data), (e: unknown) => e instanceof FormatError && e.code === 'truncated');
      },
    ),
    { numRuns: 300, seed: 7 },
  );
});

test('a duplicate key is found at any depth and in any position', () => {
  fc.assert(
    fc.property(fc.nat(3), fc.nat(4), (where, n) => {
      const entries = Array.from({ length: n + 2 }, (_, i) => `"t${i}":{"dtype":"U8","shape":[1],"data_offsets":[${i},${i + 1}]}`);
      let tensor: string | undefined;
      if (where === 0) {
        entries.push(`"t0":{"dtype":"U8","shape":[0],"data_offsets":[${n + 2},${n + 2}]}`);
        tensor = 't0';
      } else if (where === 1) {
        entries[n] = entries[n].replace('"shape":[1]', '"shape":[1],"shape":[1]');
        tensor = `t${n}`;
      } else if (where === 2) {
        entries.unshift('"__metadata__":{"a":"x","b":"y","a":"z"}');
      } else {
        entries[n + 1] = entries[n + 1].replace('"dtype"', '"x":{"y":[{"k":1,"k":2}]},"dtype"');
        tensor = `t${n + 1}`;
      }
      const text = `{${entries.join(',')}}`;
      const head = enc.encode(text);
      assert.throws(
        () => parseHeader(head, 'd.safetensors', 8 + head.length + n + 2),
        (e: unknown) => e instanceof FormatError && e.code === 'duplicate_key' && e.tensor === tensor && e.file === 'd.safetensors',
      );
    }),
  );
});

test('readHeaderLength: u64 little-endian, capped, within the file', () => {
  const prefix = (n: bigint) => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, n, true);
    return b;
  };
  assert.equal(readHeaderLength(prefix(2n), 'f', 10), 2);
  assert.equal(readHeaderLength(prefix(BigInt(MAX_HEADER_BYTES)), 'f', MAX_HEADER_BYTES + 8), MAX_HEADER_BYTES);
  const code = (f: () => unknown) => {
    try {
      f();
      return 'ok';
    } catch (e) {
      return (e as FormatError).code;
    }
  };
  assert.equal(code(() => readHeaderLength(prefix(BigInt(MAX_HEADER_BYTES) + 1n), 'f', 2 ** 40)), 'header_too_large');
  assert.equal(code(() => readHeaderLength(prefix(1n << 40n), 'f', 2 ** 50)), 'header_too_large');
  assert.equal(code(() => readHeaderLength(prefix(3n), 'f', 10)), 'header_length');
  assert.equal(code(() => readHeaderLength(new Uint8Array(7), 'f', 7)), 'file_too_small');
  assert.equal(code(() => readHeaderLength(prefix(0n), 'f', 8)), 'ok');
});

test('parseJsonChecked reports where a key repeats, and nothing for clean JSON', () => {
  assert.equal(parseJsonChecked('{"a":{"b":1,"c":[{"d":2}]}}').duplicate, undefined);
  assert.deepEqual(parseJsonChecked('{"a":{"b":1,"c":[{"d":2,"d":3}]}}').duplicate, { key: 'd', path: ['a', 'c'] });
  assert.deepEqual(parseJsonChecked('{"a":1,"a":1}').duplicate, { key: 'a', path: [] });
  assert.deepEqual(parseJsonChecked('{"x":"a:b","\\u0061":1,"a":2}').duplicate, { key: 'a', path: [] });
  assert.throws(() => parseJsonChecked('{"a":'), SyntaxError);
  assert.throws(() => parseJsonChecked('['.repeat(500) + ']'.repeat(500)), SyntaxError);
});
