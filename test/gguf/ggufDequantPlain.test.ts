import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dequantize } from '../../src/compute/dequant/dequant.cpu';

/**
 * The plain number types, which ggml stores but never converts (no to_float): F32 keeps its
 * bits, the others round to nearest even as a C cast does. The int64 cases are the ones a
 * conversion through float64 gets wrong (two roundings).
 */

function run(type: 'F32' | 'F64' | 'I8' | 'I16' | 'I32' | 'I64', bytes: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  assert.equal(dequantize(type, bytes, out), n);
  return out;
}

test('F32 is copied bit for bit, NaN payloads included', () => {
  const bits = Uint32Array.of(0x7fc00001, 0xff800000, 0x00000001, 0x80000000, 0x3f800000, 0x7fa00000);
  const out = run('F32', new Uint8Array(bits.buffer), bits.length);
  assert.deepEqual(new Uint32Array(out.buffer), bits);
});

test('F64 rounds to nearest even, overflowing to infinity', () => {
  // The fourth is the midpoint above FLT_MAX, whose tie goes to the even neighbour: infinity.
  const x = Float64Array.of(1 + 2 ** -24, 1 + 3 * 2 ** -24, 3.4028235e38, 3.4028235677973366e38, -1e-46, 0.1);
  const out = run('F64', new Uint8Array(x.buffer), x.length);
  assert.deepEqual([...out], [1, 1 + 2 ** -22, 3.4028234663852886e38, Infinity, -0, Math.fround(0.1)]);
});

test('I8, I16 and I32 are signed and exact up to 2^24', () => {
  assert.deepEqual([...run('I8', Uint8Array.of(0x80, 0x7f, 0xff), 3)], [-128, 127, -1]);
  assert.deepEqual([...run('I16', new Uint8Array(Int16Array.of(-32768, 32767).buffer), 2)], [-32768, 32767]);
  const i32 = Int32Array.of(2 ** 31 - 1, -(2 ** 31), 16777217, 16777219);
  assert.deepEqual([...run('I32', new Uint8Array(i32.buffer), 4)], [2 ** 31, -(2 ** 31), 16777216, 16777220]);
});

test('I64 rounds once, where int64 → float64 → float32 would round twice', () => {
  const v = BigInt64Array.of(
    2n ** 54n + 2n ** 30n + 1n, // just above a float32 tie: rounds up (via float64 it lands on the tie and goes down)
    -(2n ** 54n + 2n ** 30n + 1n),
    2n ** 63n - 1n,
    -(2n ** 63n),
    2n ** 53n + 1n,
    12345n,
  );
  const out = run('I64', new Uint8Array(v.buffer), v.length);
  assert.deepEqual([...out], [2 ** 54 + 2 ** 31, -(2 ** 54 + 2 ** 31), 2 ** 63, -(2 ** 63), 2 ** 53, 12345]);
});
