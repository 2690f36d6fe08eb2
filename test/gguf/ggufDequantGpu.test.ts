import assert from 'node:assert/strict';
import { test } from 'node:test';
import { disposeBackends } from '../../src/compute/backend';
import { dequantize } from '../../src/compute/dequant/dequant.cpu';
import { dequantKernel, type DequantArgs, type DequantResult } from '../../src/compute/dequant/dequant';
import type { KernelDef } from '../../src/compute/kernel';
import { gpuBrokenReason } from '../../src/compute/gpu/device';
import { ggmlTypeByName, type GgmlTypeName } from '../../src/format/gguf/types';
import { webgpuOrSkip } from '../compute/backends';

/**
 * The WGSL dequantizer against the CPU twin (itself held bit for bit to libggml in
 * ggufDequant.test.ts): random blocks with ordinary, zero, subnormal and largest f16 scales,
 * and blocks with inf/NaN scales that the shader hands back to the host. The kernel given to
 * the backend has no CPU twin, so a fallback cannot pass for the GPU.
 */

const gpuOnly: KernelDef<DequantArgs, DequantResult> = { ...dequantKernel, cpu: () => assert.fail('the CPU twin ran instead of the GPU twin') };

function blocks(type: GgmlTypeName, n: number, seed: number, scaleAt: number[]): Uint8Array {
  const info = ggmlTypeByName(type);
  const src = new Uint8Array(n * info.typeSize);
  let x = seed;
  for (let i = 0; i < src.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    src[i] = x & 255;
  }
  // Scales: ordinary, zero, negative zero, smallest subnormal, largest finite, then random (NaN/inf included).
  const SCALES = [0x2c00, 0x0000, 0x8000, 0x0001, 0x7bff, 0xfbff, 0x03ff, 0x0400];
  for (let b = 0; b < n; b++) {
    for (const off of scaleAt) {
      if (b % 3 === 2) continue;
      const h = SCALES[(b + off) % SCALES.length];
      src[b * info.typeSize + off] = h & 255;
      src[b * info.typeSize + off + 1] = h >> 8;
    }
  }
  return src;
}

const CASES: [GgmlTypeName, number[]][] = [['Q8_0', [0]], ['Q4_0', [0]], ['Q2_K', [80, 82]], ['Q3_K', [108]], ['Q4_K', [0, 2]], ['Q5_K', [0, 2]], ['Q6_K', [208]]];

test('WGSL dequantizer: Q8_0, Q4_0 and the K-quants Q2_K–Q6_K bit-identical to the CPU twin', async (t) => {
  const backend = await webgpuOrSkip(t);
  if (!backend) return;
  try {
    for (const [type, scaleAt] of CASES) {
      const src = blocks(type, 3000, 0x1234 + ggmlTypeByName(type).id, scaleAt);
      const { values }: DequantResult = await backend.run(gpuOnly, { type, src });
      const ref = new Float32Array(values.length);
      dequantize(type, src, ref);
      const a = new Uint32Array(values.buffer, values.byteOffset, values.length);
      const b = new Uint32Array(ref.buffer);
      let nans = 0;
      for (let i = 0; i < a.length; i++) {
        if (Number.isNaN(ref[i])) {
          nans++;
          assert.ok(Number.isNaN(values[i]), `${type} element ${i}: ${values[i]}, CPU NaN`);
        } else if (a[i] !== b[i]) {
          assert.fail(`${type} element ${i}: GPU ${values[i]} (0x${a[i].toString(16)}), CPU ${ref[i]} (0x${b[i].toString(16)})`);
        }
      }
      assert.ok(nans > 0, `${type}: the case includes NaN scales, redone on the host`);
    }
    assert.equal(gpuBrokenReason(), undefined);
  } finally {
    await disposeBackends();
  }
});
