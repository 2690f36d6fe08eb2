import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bf16ToF32, decodeToF32, decodeToF64, decodeValue, f16ToF32, lutOf, type DType } from '../../src/format';

/*
 * Reference values computed here from the format definitions, in float64, by formula:
 * (-1)^s · 2^(e-bias) · (1 + m/2^M) for normals, (-1)^s · 2^(1-bias) · m/2^M for
 * subnormals, plus each format's special codes as its definition lists them.
 * The decoders build their tables by placing bit fields into f32s; the two share nothing.
 */
type Kind = 'ieee' | 'fn' | 'fnuz' | 'mx';
interface Fmt {
  dtype: DType;
  E: number;
  M: number;
  bias: number;
  kind: Kind;
}

function reference(code: number, f: Fmt): number {
  const { E, M, bias, kind } = f;
  const s = Math.floor(code / 2 ** (E + M)) % 2;
  const e = Math.floor(code / 2 ** M) % 2 ** E;
  const m = code % 2 ** M;
  const sign = s ? -1 : 1;
  if (kind === 'fnuz' && code === 2 ** (E + M)) return NaN; // 1000…0: the only NaN, and no -0
  if (kind === 'ieee' && e === 2 ** E - 1) return m === 0 ? sign * Infinity : NaN;
  if (kind === 'fn' && e === 2 ** E - 1 && m === 2 ** M - 1) return NaN;
  if (e === 0) return sign * Math.pow(2, 1 - bias) * (m / 2 ** M);
  return sign * Math.pow(2, e - bias) * (1 + m / 2 ** M);
}

const SMALL: Fmt[] = [
  { dtype: 'F8_E4M3', E: 4, M: 3, bias: 7, kind: 'fn' },
  { dtype: 'F8_E5M2', E: 5, M: 2, bias: 15, kind: 'ieee' },
  { dtype: 'F8_E4M3FNUZ', E: 4, M: 3, bias: 8, kind: 'fnuz' },
  { dtype: 'F8_E5M2FNUZ', E: 5, M: 2, bias: 16, kind: 'fnuz' },
  { dtype: 'F6_E2M3', E: 2, M: 3, bias: 1, kind: 'mx' },
  { dtype: 'F6_E3M2', E: 3, M: 2, bias: 3, kind: 'mx' },
  { dtype: 'F4', E: 2, M: 1, bias: 1, kind: 'mx' },
];

/** Packs `bits`-wide codes LSB-first into bytes: element i occupies bits [i·bits, (i+1)·bits). */
function pack(codes: number[], bits: number): Uint8Array {
  const out = new Uint8Array(Math.ceil((codes.length * bits) / 8));
  codes.forEach((c, i) => {
    for (let b = 0; b < bits; b++) {
      const pos = i * bits + b;
      if ((c >> b) & 1) out[pos >> 3] |= 1 << (pos & 7);
    }
  });
  return out;
}

function same(a: number, b: number): boolean {
  return Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));
}

for (const f of SMALL) {
  const bits = 1 + f.E + f.M;
  test(`${f.dtype}: all ${2 ** bits} codes match the format definition`, () => {
    const n = 2 ** bits;
    // Every code in every position of a packing group: the codes, rotated 0..3 places.
    for (let rot = 0; rot < 4; rot++) {
      const codes = Array.from({ length: n }, (_, i) => (i + rot) % n);
      const bytes = bits === 8 ? Uint8Array.from(codes) : pack(codes, bits);
      const out32 = new Float32Array(n);
      decodeToF32(f.dtype, bytes, out32, n);
      const out64 = new Float64Array(n);
      decodeToF64(f.dtype, bytes, out64, n);
      for (let i = 0; i < n; i++) {
        const want = reference(codes[i], f);
        assert.ok(same(out32[i], want), `${f.dtype} code 0x${codes[i].toString(16)}: got ${out32[i]}, want ${want}`);
        assert.ok(same(out64[i], want), `${f.dtype} f64 code 0x${codes[i].toString(16)}`);
        assert.ok(same(decodeValue(f.dtype, bytes, i), want), `${f.dtype} decodeValue ${i}`);
      }
    }
    const lut = lutOf(f.dtype)!;
    assert.equal(lut.length, n);
  });
}

test('small floats: anchor values from the OCP and FNUZ definitions', () => {
  const v = (d: DType, code: number) => lutOf(d)![code];
  assert.equal(v('F8_E4M3', 0x7e), 448);
  assert.ok(Number.isNaN(v('F8_E4M3', 0x7f)) && Number.isNaN(v('F8_E4M3', 0xff)));
  assert.equal(v('F8_E4M3', 0x01), 2 ** -9);
  assert.equal(v('F8_E4M3', 0x78), 256); // exponent 15 is a normal exponent in E4M3FN
  assert.equal(v('F8_E5M2', 0x7b), 57344);
  assert.equal(v('F8_E5M2', 0x7c), Infinity);
  assert.equal(v('F8_E5M2', 0xfc), -Infinity);
  assert.equal(v('F8_E4M3FNUZ', 0x7f), 240);
  assert.ok(Number.isNaN(v('F8_E4M3FNUZ', 0x80)));
  assert.equal(v('F8_E4M3FNUZ', 0xff), -240);
  assert.equal(v('F8_E4M3FNUZ', 0x08), 2 ** -7);
  assert.equal(v('F8_E5M2FNUZ', 0x7f), 57344);
  assert.equal(v('F8_E5M2FNUZ', 0x04), 2 ** -15);
  assert.deepEqual(Array.from(lutOf('F4')!.subarray(0, 8)), [0, 0.5, 1, 1.5, 2, 3, 4, 6]);
  assert.equal(v('F6_E2M3', 0x1f), 7.5);
  assert.equal(v('F6_E2M3', 0x01), 0.125);
  assert.equal(v('F6_E3M2', 0x1f), 28);
  assert.equal(v('F6_E3M2', 0x01), 0.0625);
  assert.ok(Object.is(v('F4', 0x8), -0));
});

test('F8_E8M0: all 256 codes are 2^(e-127), 0xFF is NaN', () => {
  const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
  const out = new Float32Array(256);
  decodeToF32('F8_E8M0', bytes, out, 256);
  for (let e = 0; e < 255; e++) assert.equal(out[e], Math.pow(2, e - 127), `e=${e}`);
  assert.ok(Number.isNaN(out[255]));
  assert.equal(out[127], 1);
});

function f16Ref(h: number): number {
  return reference(h, { dtype: 'F16', E: 5, M: 10, bias: 15, kind: 'ieee' });
}
function bf16Ref(h: number): number {
  return reference(h, { dtype: 'BF16', E: 8, M: 7, bias: 127, kind: 'ieee' });
}

for (const [dtype, ref] of [['F16', f16Ref], ['BF16', bf16Ref]] as const) {
  test(`${dtype}: all 65,536 codes match the IEEE formula (aligned and unaligned input)`, () => {
    const buf = new Uint8Array(2 * 65536 + 1);
    for (let c = 0; c < 65536; c++) {
      buf[2 * c] = c & 0xff;
      buf[2 * c + 1] = c >> 8;
    }
    const unaligned = new Uint8Array(2 * 65536 + 1);
    unaligned.set(buf.subarray(0, 2 * 65536), 1);
    for (const bytes of [buf.subarray(0, 2 * 65536), unaligned.subarray(1)]) {
      const out = new Float32Array(65536);
      decodeToF32(dtype, bytes, out, 65536);
      const out64 = new Float64Array(65536);
      decodeToF64(dtype, bytes, out64, 65536);
      for (let c = 0; c < 65536; c++) {
        const want = ref(c);
        if (!same(out[c], want)) assert.fail(`${dtype} 0x${c.toString(16)}: got ${out[c]}, want ${want}`);
        if (!same(out64[c], want)) assert.fail(`${dtype} f64 0x${c.toString(16)}: got ${out64[c]}, want ${want}`);
      }
    }
    const scalar = dtype === 'F16' ? f16ToF32 : bf16ToF32;
    for (const c of [0, 1, 0x3c00, 0x7bff, 0x7c00, 0x8000, 0xfc01, 0x3f80, 0xffff]) assert.ok(same(scalar(c), ref(c)));
  });
}

function randomBytes(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

test('integer, F32, F64 and C64 decoders agree with DataView and BigInt reads', () => {
  const count = 257;
  for (const offset of [0, 1, 3]) {
    const raw = randomBytes(count * 8 + offset, 7 + offset).subarray(offset);
    const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const cases: [DType, number, (i: number) => number][] = [
      ['BOOL', 1, (i) => (raw[i] ? 1 : 0)],
      ['U8', 1, (i) => v.getUint8(i)],
      ['I8', 1, (i) => v.getInt8(i)],
      ['I16', 2, (i) => v.getInt16(2 * i, true)],
      ['U16', 2, (i) => v.getUint16(2 * i, true)],
      ['I32', 4, (i) => v.getInt32(4 * i, true)],
      ['U32', 4, (i) => v.getUint32(4 * i, true)],
      ['I64', 8, (i) => Number(v.getBigInt64(8 * i, true))],
      ['U64', 8, (i) => Number(v.getBigUint64(8 * i, true))],
      ['F32', 4, (i) => v.getFloat32(4 * i, true)],
      ['F64', 8, (i) => v.getFloat64(8 * i, true)],
    ];
    for (const [dtype, , ref] of cases) {
      const out64 = new Float64Array(count + 2);
      decodeToF64(dtype, raw, out64, count, 2);
      const out32 = new Float32Array(count + 2);
      decodeToF32(dtype, raw, out32, count, 2);
      for (let i = 0; i < count; i++) {
        const want = ref(i);
        assert.ok(same(out64[i + 2], want), `${dtype}@${offset} [${i}] f64: ${out64[i + 2]} vs ${want}`);
        assert.ok(same(out32[i + 2], Math.fround(want)), `${dtype}@${offset} [${i}] f32: ${out32[i + 2]} vs ${Math.fround(want)}`);
      }
      assert.equal(out64[0], 0, 'nothing written before outOffset');
    }
    const c64 = new Float32Array(2 * count);
    decodeToF32('C64', raw, c64, count);
    for (let i = 0; i < 2 * count; i++) assert.ok(same(c64[i], v.getFloat32(4 * i, true)), `C64 [${i}]`);
  }
});

test('sub-byte partial groups and offsets decode only the asked elements', () => {
  const codes = [1, 2, 3, 4, 5, 6, 7];
  const f6 = pack(codes, 6);
  const out = new Float32Array(10).fill(99);
  decodeToF32('F6_E3M2', f6, out, 7, 1);
  assert.equal(out[0], 99);
  for (let i = 0; i < 7; i++) assert.equal(out[1 + i], reference(codes[i], SMALL[5]));
  assert.equal(out[8], 99);
  const f4 = pack([1, 2, 3], 4);
  const o4 = new Float32Array(3);
  decodeToF32('F4', f4, o4, 3);
  assert.deepEqual(Array.from(o4), [0.5, 1, 1.5]);
});

test('decoders refuse inputs that are too short and outputs that are too small', () => {
  assert.throws(() => decodeToF32('F32', new Uint8Array(7), new Float32Array(2), 2), RangeError);
  assert.throws(() => decodeToF32('U8', new Uint8Array(4), new Float32Array(2), 4), RangeError);
  assert.throws(() => decodeToF32('C64', new Uint8Array(16), new Float32Array(3), 2), RangeError);
  assert.throws(() => decodeToF32('F6_E2M3', new Uint8Array(2), new Float32Array(4), 4), RangeError);
});

test('long inputs (several internal blocks, odd tails) decode like short ones', () => {
  const count = 40_001;
  const raw = randomBytes(count * 4, 99);
  const v = new DataView(raw.buffer);
  const i16 = new Float32Array(count);
  decodeToF32('I16', raw, i16, count);
  for (let i = 0; i < count; i++) assert.equal(i16[i], v.getInt16(2 * i, true));
  const f4 = new Float64Array(count);
  decodeToF64('F4', raw, f4, count);
  const lut = lutOf('F4')!;
  for (let i = 0; i < count; i++) assert.ok(same(f4[i], lut[(raw[i >> 1] >> (4 * (i & 1))) & 15]), `F4 [${i}]`);
  const f6 = new Float64Array(count);
  decodeToF64('F6_E2M3', raw, f6, count);
  for (let i = 0; i < count; i++) {
    const bit = 6 * i;
    const w = raw[bit >> 3] | (raw[(bit >> 3) + 1] << 8);
    assert.ok(same(f6[i], reference((w >> (bit & 7)) & 63, SMALL[4])), `F6 [${i}]`);
  }
});
