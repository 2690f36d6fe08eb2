// Float casts against independent oracles, computed by python3 in a child process:
// - numpy's own casts (RNE) for every conversion numpy has: F64/F32 → F16, F64 → F32,
//   F16 → F32/F64/BF16-via-F32, F32 → F64;
// - for BF16 (which numpy lacks), the definition of round-to-nearest-even written
//   as "pick the nearer of the two neighbouring BF16 values, the even one on a tie",
//   evaluated in float64 with numpy (exact for these operands). ml_dtypes is not used.
// Overflow and flush-to-zero counts are recomputed from the oracle's outputs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { castBytes, type CastDType, type CastCounts } from '../../src/format/cast';

const ORACLE = String.raw`
import sys, json, numpy as np
d = sys.argv[1]
f32 = np.fromfile(d + '/in_f32.bin', dtype='<f4')
f64 = np.fromfile(d + '/in_f64.bin', dtype='<f8')
all16 = np.arange(65536, dtype=np.uint32).astype('<u2')
np.seterr(all='ignore')

def bf16(v):
    v = np.asarray(v, dtype=np.float64)
    a = np.abs(v)
    fin = np.isfinite(a) & (a > 0)
    m, ex = np.frexp(np.where(fin, a, 1.0))
    E = np.maximum(ex - 1, -126)          # BF16 shares F32's exponent range
    q = np.ldexp(1.0, E - 7)              # spacing of BF16 values in that binade
    k = np.floor(np.where(fin, a, 0) / q)
    lo = k * q
    hi = (k + 1) * q
    dlo = a - lo
    dhi = hi - a
    up = (dhi < dlo) | ((dhi == dlo) & (np.mod(k, 2) == 1))
    r = np.where(up, hi, lo)
    bits = (r.astype(np.float32).view(np.uint32) >> 16).astype(np.uint32)   # r is a BF16 value (or 2^128 -> inf)
    bits = np.where(np.isinf(a), 0x7f80, bits)
    bits = np.where(a == 0, 0, bits)
    bits = bits | np.where(np.signbit(v), 0x8000, 0)
    return bits.astype('<u2')

def nan_bf16_from_f32(x):
    b = x.view(np.uint32)
    return ((b >> 16) | np.where((b & 0x7f0000) == 0, 1, 0)).astype('<u2')

def counts(inp, out):
    inp = np.asarray(inp, dtype=np.float64)
    out = np.asarray(out, dtype=np.float64)
    return {'overflow': int(np.sum(np.isfinite(inp) & np.isinf(out))),
            'underflow': int(np.sum((inp != 0) & ~np.isnan(inp) & (out == 0)))}

res = {}
def emit(name, arr, inp, outvals):
    arr.tofile(d + '/' + name + '.bin')
    res[name] = counts(inp, outvals)

f16_vals = all16.view(np.float16)
bf16_vals = (all16.astype(np.uint32) << 16).view(np.float32)

o = f32.astype(np.float16); emit('F32_F16', o, f32, o)
b = bf16(f32); b = np.where(np.isnan(f32), nan_bf16_from_f32(f32), b).astype('<u2')
emit('F32_BF16', b, f32, (b.astype(np.uint32) << 16).view(np.float32))
o = f32.astype(np.float64); emit('F32_F64', o, f32, o)
o = f64.astype(np.float16); emit('F64_F16', o, f64, o)
o = f64.astype(np.float32); emit('F64_F32', o, f64, o)
b = np.where(np.isnan(f64), np.where(np.signbit(f64), 0xffc0, 0x7fc0), bf16(f64)).astype('<u2')
emit('F64_BF16', b, f64, (b.astype(np.uint32) << 16).view(np.float32))
o = f16_vals.astype(np.float32); emit('F16_F32', o, f16_vals, o)
o = f16_vals.astype(np.float64); emit('F16_F64', o, f16_vals, o)
w = f16_vals.astype(np.float32)
b = bf16(w); b = np.where(np.isnan(w), nan_bf16_from_f32(w), b).astype('<u2')
emit('F16_BF16', b, w, (b.astype(np.uint32) << 16).view(np.float32))
o = bf16_vals.astype(np.float16); emit('BF16_F16', o, bf16_vals, o)
o = bf16_vals.astype(np.float64); emit('BF16_F64', o, bf16_vals, o)
emit('BF16_F32', bf16_vals, bf16_vals, bf16_vals)
print(json.dumps(res))
`;

/** Deterministic 32-bit stream (mulberry32) so failures reproduce. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

function f32Inputs(): Uint32Array {
  const out: number[] = [];
  const r = rng(7);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  const bits = (x: number) => {
    f[0] = x;
    return u[0];
  };
  // Specials: zeros, infinities, quiet and signalling NaNs with payloads, extremes of F32.
  out.push(0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fa00000, 0x7f802000, 0x7f801fff, 0x7f7fffff, 0xff7fffff, 1, 0x80000001, 0x007fffff, 0x00800000);
  // Every F16 value, the F32 midpoints between neighbours, and one F32 ulp either side, both signs:
  // the ties, the subnormal range and the overflow edge (65504 / 65520) are all in here.
  const h2f = (h: number) => {
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    return e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15);
  };
  for (let h = 0; h < 0x7c00; h++) {
    const lo = h2f(h);
    const hi = h === 0x7bff ? 65536 : h2f(h + 1);
    const mid = bits((lo + hi) / 2);
    for (const b of [bits(lo), mid, mid + 1, mid - 1]) out.push(b >>> 0, (b | 0x80000000) >>> 0);
  }
  // BF16 ties (low half exactly 0x8000) and their neighbours, and random bit patterns.
  for (let i = 0; i < 40000; i++) {
    const hi = r() & 0xffff0000;
    out.push((hi | 0x8000) >>> 0, (hi | 0x8001) >>> 0, (hi | 0x7fff) >>> 0);
  }
  for (let i = 0; i < 100000; i++) out.push(r());
  return Uint32Array.from(out);
}

function f64Inputs(): Float64Array {
  const out: number[] = [0, -0, Infinity, -Infinity, NaN, 65504, 65519.99999999999, 65520, -65520, 2 ** -25, 2 ** -25 + 2 ** -80, 2 ** -26, 1 + 2 ** -11 + 2 ** -40, 1 + 2 ** -8 + 2 ** -60, 3.4028235677973366e38, 3.4028235677973362e38, 1e300, -1e-300, 5e-324, 2 ** -133, 2 ** -134, 2 ** -134 + 2 ** -200];
  const r = rng(11);
  const buf = new Float64Array(1);
  const u = new Uint32Array(buf.buffer);
  for (let i = 0; i < 60000; i++) {
    // Exponents concentrated where F16/BF16/F32 round, overflow and underflow.
    const e = (r() % 340) - 170;
    buf[0] = (r() / 2 ** 32 + 1) * 2 ** e * (r() & 1 ? -1 : 1);
    out.push(buf[0]);
    // A double a hair off an F16 or BF16 tie: single rounding must see the hair.
    const hiWord = u[1];
    for (const [keep, tie] of [[0xfffffc00, 0x200], [0xffffe000, 0x1000]]) {
      // The high word holds 20 mantissa bits: F16 keeps 10 (tie bit 0x200), BF16 keeps 7 (tie bit 0x1000).
      u[0] = 0;
      u[1] = ((hiWord & keep) | tie) >>> 0;
      const t = buf[0];
      out.push(t, t + t * 2 ** -45, t - t * 2 ** -45);
    }
  }
  for (let i = 0; i < 20000; i++) {
    u[0] = r();
    u[1] = r();
    out.push(buf[0]);
  }
  return Float64Array.from(out);
}

function isNaNAt(from: CastDType, src: Uint8Array, i: number): boolean {
  const dv = new DataView(src.buffer, src.byteOffset);
  switch (from) {
    case 'F64':
      return Number.isNaN(dv.getFloat64(i * 8, true));
    case 'F32':
      return Number.isNaN(dv.getFloat32(i * 4, true));
    case 'F16':
      return (dv.getUint16(i * 2, true) & 0x7fff) > 0x7c00;
    case 'BF16':
      return (dv.getUint16(i * 2, true) & 0x7fff) > 0x7f80;
  }
}

test('float casts are byte-identical to numpy / the RNE definition, with matching overflow and flush counts', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tw-cast-'));
  try {
    const in32 = f32Inputs();
    const in64 = f64Inputs();
    writeFileSync(join(dir, 'in_f32.bin'), new Uint8Array(in32.buffer));
    writeFileSync(join(dir, 'in_f64.bin'), new Uint8Array(in64.buffer));
    const py = spawnSync('python3', ['-c', ORACLE, dir], { encoding: 'utf8', maxBuffer: 1 << 20 });
    assert.equal(py.status, 0, `python3 with numpy is required for this oracle (apt-get install python3-numpy): ${py.stderr}`);
    const expectedCounts = JSON.parse(py.stdout) as Record<string, CastCounts>;
    const all16 = new Uint16Array(65536).map((_, i) => i);
    const inputs: Record<CastDType, Uint8Array> = {
      F32: new Uint8Array(in32.buffer),
      F64: new Uint8Array(in64.buffer),
      F16: new Uint8Array(all16.buffer),
      BF16: new Uint8Array(all16.buffer),
    };
    const ESZ: Record<CastDType, number> = { F64: 8, F32: 4, F16: 2, BF16: 2 };
    for (const key of Object.keys(expectedCounts)) {
      const [from, to] = key.split('_') as [CastDType, CastDType];
      const counts = { overflow: 0, underflow: 0 };
      const src = inputs[from];
      const got = castBytes(src, from, to, counts);
      const want = new Uint8Array(readFileSync(join(dir, `${key}.bin`)));
      assert.equal(got.length, want.length, key);
      const n = got.length / ESZ[to];
      let mismatches = 0;
      let first = '';
      for (let i = 0; i < n; i++) {
        const a = got.subarray(i * ESZ[to], (i + 1) * ESZ[to]);
        const b = want.subarray(i * ESZ[to], (i + 1) * ESZ[to]);
        if (Buffer.compare(a, b) === 0) continue;
        // NaN payloads through hardware F32/F64 conversions are platform-defined: require NaN with the same sign.
        const hardwareNaN = isNaNAt(from, src, i) && (to === 'F32' || to === 'F64' || from === 'F64');
        if (hardwareNaN && isNaNAt(to, a, 0) && isNaNAt(to, b, 0) && (a[a.length - 1] & 0x80) === (b[b.length - 1] & 0x80)) continue;
        if (mismatches++ === 0) first = `element ${i}: got ${Buffer.from(a).toString('hex')} want ${Buffer.from(b).toString('hex')} (input ${Buffer.from(src.subarray(i * ESZ[from], (i + 1) * ESZ[from])).toString('hex')})`;
      }
      assert.equal(mismatches, 0, `${key}: ${mismatches} mismatches, first ${first}`);
      assert.deepEqual(counts, expectedCounts[key], `${key} counts`);
    }
    // The inputs must exercise what the counts are about, or the count checks prove nothing.
    assert.ok(expectedCounts.F32_F16.overflow > 1000 && expectedCounts.F32_F16.underflow > 1000);
    assert.ok(expectedCounts.F64_BF16.overflow > 100 && expectedCounts.F64_BF16.underflow > 100);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('casting unaligned input and into a caller buffer gives the same bytes', () => {
  const src = new Uint8Array(4 * 1000 + 1);
  const r = rng(3);
  for (let i = 0; i < src.length; i++) src[i] = r() & 0xff;
  const view = src.subarray(1); // byteOffset 1: not 4-aligned
  const copy = new Uint8Array(view);
  const a = castBytes(view, 'F32', 'BF16', { overflow: 0, underflow: 0 });
  const out = new Uint8Array(2000);
  const b = castBytes(copy, 'F32', 'BF16', { overflow: 0, underflow: 0 }, out);
  assert.equal(b, out);
  assert.deepEqual(a, b);
  assert.throws(() => castBytes(new Uint8Array(3), 'F32', 'F16', { overflow: 0, underflow: 0 }), /whole number/);
});
