import { test } from 'node:test';
import assert from 'node:assert/strict';
import { q8_0Cpu, q8_0Scalar } from '../../src/compute/quant/q8_0.cpu';
import { q4_0Cpu, q4_0Scalar } from '../../src/compute/quant/q4_0.cpu';
import { simdAvailable } from '../../src/compute/quant/quantSimd';
import { q4_1Cpu, q4_1Scalar } from '../../src/compute/quant/q4_1.cpu';
import { int8ChannelCpu, int8ChannelScalar } from '../../src/compute/quant/int8Channel.cpu';
import { fp8E4m3Cpu, fp8E4m3Scalar } from '../../src/compute/quant/fp8E4m3.cpu';
import { f32ToE4M3, f32ToF16Bits, reportOf } from '../../src/compute/quant/common';
import { quantCases } from './quantCases';
import { f32, refE4M3, refE4M3Value, refF16, refF16Value, refFp8, refInt8Channel, refQ4_0, refQ4_1, refQ8_0, rng, gaussian, encode } from './quantRef';

function firstDiff(a: Uint8Array, b: Uint8Array): string {
  for (let i = 0; i < Math.max(a.length, b.length); i++) if (a[i] !== b[i]) return `byte ${i}: got ${a[i]} want ${b[i]}`;
  return 'equal';
}

test('f32 → f16 rounds to nearest even, like a nearest search over every f16', () => {
  const r = rng(7);
  const probes: number[] = [0, -0, 65504, 65519.99, 65520, 65536, 1e-8, 2 ** -25, 2 ** -25 * 1.0000001, 2 ** -24 * 1.5, 2 ** -24 * 2.5, 6.1e-5];
  for (let i = 0; i < 20000; i++) {
    const e = -30 + Math.floor(r() * 48);
    probes.push(f32((r() - 0.5) * 2 ** e));
    // Midpoints between neighbouring f16 values, and their f32 neighbours.
    const c = Math.floor(r() * 0x7bff);
    const mid = (refF16Value(c) + refF16Value(c + 1)) / 2;
    probes.push(f32(mid), f32(mid) * (1 + 2 ** -23), -f32(mid));
  }
  for (const v of probes) assert.equal(f32ToF16Bits(v), refF16(v), `f16(${v})`);
});

test('f32 → E4M3 rounds to nearest even with saturation, like a nearest search', () => {
  const r = rng(8);
  const probes: number[] = [0, -0, 448, 449, 464, 480, 1e9, -1e9, 2 ** -9, 2 ** -10, 2 ** -10 * 1.0001, 3 * 2 ** -11, 1e-30];
  for (let c = 0; c < 0x7e; c++) probes.push(f32((refE4M3Value(c) + refE4M3Value(c + 1)) / 2));
  for (let i = 0; i < 20000; i++) probes.push(f32((r() - 0.5) * 2 ** (-14 + Math.floor(r() * 24))));
  for (const v of probes) assert.equal(f32ToE4M3(v), refE4M3(v), `e4m3(${v})`);
});

const GGML = [
  { name: 'q8_0', cpu: q8_0Cpu, ref: refQ8_0 },
  { name: 'q4_0', cpu: q4_0Cpu, ref: refQ4_0 },
  { name: 'q4_1', cpu: q4_1Cpu, ref: refQ4_1 },
] as const;

test('WebAssembly SIMD is available (BF16/F32 Q8_0, Q4_0, Q4_1, int8-channel and fp8-e4m3 take that path)', () => {
  assert.ok(simdAvailable());
});

// The scalar paths (F16 input, or no SIMD) against the same reference.
const SCALAR = [
  { name: 'q8_0 scalar', cpu: q8_0Scalar, ref: refQ8_0 },
  { name: 'q4_0 scalar', cpu: q4_0Scalar, ref: refQ4_0 },
  { name: 'q4_1 scalar', cpu: q4_1Scalar, ref: refQ4_1 },
] as const;

for (const s of [...GGML, ...SCALAR]) {
  test(`${s.name} CPU blocks are byte-identical to the reference rules`, () => {
    for (const c of quantCases()) {
      const rows = c.held.length / c.cols;
      const got = s.cpu({ src: c.bytes, dtype: c.dtype, rows, cols: c.cols }).data;
      const want = s.ref(c.held);
      assert.equal(got.length, want.length, c.name);
      assert.ok(Buffer.compare(got, want) === 0, `${s.name} ${c.name}: ${firstDiff(got, want)}`);
    }
  });
}

test('int8-channel and fp8-e4m3 CPU match the reference rules', () => {
  for (const c of quantCases()) {
    const rows = c.held.length / c.cols;
    const ri8 = refInt8Channel(c.held, rows, c.cols);
    for (const [path, fn] of [['simd', int8ChannelCpu], ['scalar', int8ChannelScalar]] as const) {
      const i8 = fn({ src: c.bytes, dtype: c.dtype, rows, cols: c.cols });
      assert.deepEqual(i8.scales, ri8.scales, `int8 ${path} scales ${c.name}`);
      assert.ok(Buffer.compare(i8.data, new Uint8Array(ri8.q.buffer)) === 0, `int8 ${path} ${c.name}: ${firstDiff(i8.data, new Uint8Array(ri8.q.buffer))}`);
    }
    const rf8 = refFp8(c.held, rows, c.cols);
    for (const [path, fn] of [['simd', fp8E4m3Cpu], ['scalar', fp8E4m3Scalar]] as const) {
      const f8 = fn({ src: c.bytes, dtype: c.dtype, rows, cols: c.cols });
      assert.deepEqual(f8.scales, rf8.scales, `fp8 ${path} scales ${c.name}`);
      assert.ok(Buffer.compare(f8.data, rf8.q) === 0, `fp8 ${path} ${c.name}: ${firstDiff(f8.data, rf8.q)}`);
    }
  }
});

test('known blocks: hand-computed bytes', () => {
  // amax 127 → d = 1.0 (f16 0x3c00); 2.5 → 3 and −2.5 → −3 (halves away from zero).
  const v = [127, 2.5, -2.5, 0.5, -0.5, 1.49, ...new Array(26).fill(0)];
  const { bytes } = encode(v, 'F32');
  const q8 = q8_0Cpu({ src: bytes, dtype: 'F32', rows: 1, cols: 32 }).data;
  assert.deepEqual(Array.from(q8.subarray(0, 8)), [0x00, 0x3c, 127, 3, 253, 1, 255, 1]);
  // All zeros in Q4_0: d = 0/−8 = −0 (f16 0x8000), every nibble 8.
  const z = q4_0Cpu({ src: new Uint8Array(64), dtype: 'BF16', rows: 1, cols: 32 }).data;
  assert.deepEqual(Array.from(z), [0x00, 0x80, ...new Array(16).fill(0x88)]);
});

/** Dequantizes ggml blocks with the reference f16 decoder. */
function dequant(scheme: string, data: Uint8Array, n: number): Float64Array {
  const y = new Float64Array(n);
  const f16 = (o: number) => refF16Value(data[o] | (data[o + 1] << 8));
  for (let b = 0; b < n / 32; b++) {
    if (scheme === 'q8_0') {
      const o = b * 34;
      for (let j = 0; j < 32; j++) y[b * 32 + j] = ((data[o + 2 + j] << 24) >> 24) * f16(o);
    } else if (scheme === 'q4_0') {
      const o = b * 18;
      for (let j = 0; j < 16; j++) {
        y[b * 32 + j] = ((data[o + 2 + j] & 15) - 8) * f16(o);
        y[b * 32 + j + 16] = ((data[o + 2 + j] >> 4) - 8) * f16(o);
      }
    } else {
      const o = b * 20;
      for (let j = 0; j < 16; j++) {
        y[b * 32 + j] = (data[o + 4 + j] & 15) * f16(o) + f16(o + 2);
        y[b * 32 + j + 16] = (data[o + 4 + j] >> 4) * f16(o) + f16(o + 2);
      }
    }
  }
  return y;
}

test('round trips stay within each scheme bound, and the error sums agree', () => {
  const r = rng(99);
  const vals: number[] = [];
  for (let i = 0; i < 32 * 256; i++) vals.push(gaussian(r) * 0.02);
  const { bytes, held } = encode(vals, 'BF16');
  const rows = 16;
  const cols = held.length / rows;
  for (const s of GGML) {
    const res = s.cpu({ src: bytes, dtype: 'BF16', rows, cols });
    const y = dequant(s.name, res.data, held.length);
    let e2 = 0;
    for (let b = 0; b < held.length / 32; b++) {
      const blk = held.slice(b * 32, b * 32 + 32);
      const amax = Math.max(...blk.map(Math.abs));
      const range = Math.max(...blk) - Math.min(...blk);
      // Half a step, the clamped extreme of Q4_0 (one step), plus the f16 rounding of d and m.
      const bound = s.name === 'q8_0' ? (amax / 127) * (0.5 + 128 / 2048) : s.name === 'q4_0' ? (amax / 8) * (1 + 16 / 2048) : (range / 15) * (0.5 + 16 / 2048) + amax / 2048;
      for (let j = 0; j < 32; j++) {
        const e = Math.abs(blk[j] - y[b * 32 + j]);
        e2 += e * e;
        assert.ok(e <= bound, `${s.name} block ${b} elem ${j}: |err| ${e} > ${bound}`);
      }
    }
    const rep = reportOf(res.stats);
    // The SIMD path sums each 32-value block in f32 before adding in f64: a few ulps of f32.
    assert.ok(Math.abs(rep.rmse - Math.sqrt(e2 / held.length)) <= 1e-5 * rep.rmse, `${s.name} rmse ${rep.rmse} vs ${Math.sqrt(e2 / held.length)}`);
    assert.ok(rep.cosine > (s.name === 'q8_0' ? 0.9999 : 0.99), `${s.name} cosine ${rep.cosine}`);
  }
  const i8 = int8ChannelCpu({ src: bytes, dtype: 'BF16', rows, cols });
  const f8 = fp8E4m3Cpu({ src: bytes, dtype: 'BF16', rows, cols });
  for (let rr = 0; rr < rows; rr++) {
    for (let j = 0; j < cols; j++) {
      const x = held[rr * cols + j];
      const yi = ((i8.data[rr * cols + j] << 24) >> 24) * i8.scales![rr];
      assert.ok(Math.abs(x - yi) <= i8.scales![rr] * 0.5001, `int8 ${rr},${j}`);
      const yf = refE4M3Value(f8.data[rr * cols + j]) * f8.scales![rr];
      // E4M3 keeps 3 mantissa bits: half a step is 2^-4 relative; below 2^-6 the step is 2^-9.
      assert.ok(Math.abs(x - yf) <= Math.max(Math.abs(x) * 2 ** -4, 2 ** -10 * f8.scales![rr]) * 1.0001, `fp8 ${rr},${j}`);
    }
  }
});
