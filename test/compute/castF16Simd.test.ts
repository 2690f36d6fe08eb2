import assert from 'node:assert/strict';
import { test } from 'node:test';
import { castToF16Simd } from '../../src/compute/cast/f16Simd';
import { castBytes } from '../../src/format';

/**
 * The SIMD BF16/F32 → F16 cast against the scalar cast (itself held to numpy's in
 * castNumpy.test.ts): every BF16 bit pattern, and F32 patterns around each rounding,
 * overflow, subnormal and NaN boundary plus a million pseudo-random ones; same bytes, same counts.
 */

function f32Patterns(): Uint8Array {
  const edges = [
    0x477fefff, 0x477ff000, 0x477ff001, 0x477fffff, 0x47800000, // around 65504 and the overflow to inf
    0x38800000, 0x387fffff, 0x38800fff, 0x38801000, 0x38803000, // the least f16 normal, ties
    0x33000000, 0x33000001, 0x32ffffff, 0x33800000, 0x337fffff, 0x33c00000, // half the least subnormal, ties
    0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffffffff, 0x7f802000, // inf and NaN payloads
    0x80000000, 0, 1, 0x807fffff, 0x00800000, // zeros, f32 subnormals
  ];
  const u = new Uint32Array((1 << 20) + 3); // not a multiple of 8: the tail is cast too
  let s = 12345;
  for (let i = 0; i < u.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    u[i] = (s ^ (s << 7) ^ Math.imul(i, 0x9e3779b1)) >>> 0;
  }
  u.set(edges, 0);
  for (let i = 0; i < edges.length; i++) u[edges.length + i] = (edges[i] ^ 0x80000000) >>> 0;
  return new Uint8Array(u.buffer);
}

function bf16Patterns(): Uint8Array {
  const h = new Uint16Array(65536 + 5);
  for (let i = 0; i < h.length; i++) h[i] = i & 0xffff;
  return new Uint8Array(h.buffer);
}

for (const [from, make] of [['BF16', bf16Patterns], ['F32', f32Patterns]] as const) {
  test(`${from} → F16 in WebAssembly SIMD: the scalar cast's bytes and counts`, (t) => {
    const src = make();
    const scalarCounts = { overflow: 0, underflow: 0 };
    const simdCounts = { overflow: 0, underflow: 0 };
    const want = castBytes(src, from, 'F16', scalarCounts);
    const got = castToF16Simd(src, from, simdCounts);
    if (!got) return t.skip('no WebAssembly SIMD here');
    assert.equal(got.length, want.length);
    let first = -1;
    for (let i = 0; i < want.length && first < 0; i++) if (want[i] !== got[i]) first = i;
    assert.equal(first, -1, `first differing byte ${first}`);
    assert.deepEqual(simdCounts, scalarCounts);
    assert.ok(scalarCounts.overflow > 0 && scalarCounts.underflow > 0, 'the patterns reach both counted cases');
  });
}
