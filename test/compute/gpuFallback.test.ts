import assert from 'node:assert/strict';
import { after, it } from 'node:test';
import { BackendUnavailableError, disposeBackends, getBackend } from '../../src/compute/backend';
import { decodeKernel } from '../../src/compute/decode/decode';
import { onGpuFallback } from '../../src/compute/gpu/device';
import type { KernelDef } from '../../src/compute/kernel';
import type { DecodeArgs } from '../../src/compute/decode/decode';
import { webgpuOrSkip } from './backends';

// Its own file (own process): breaking the device is permanent for the session.

/** The decode kernel with a GPU twin whose shader does not compile: a device error mid-run. */
const broken: KernelDef<DecodeArgs, Float32Array> = {
  ...decodeKernel,
  async gpu(ctx) {
    const p = ctx.pipeline('broken', '@compute @workgroup_size(1) fn main() { let x: u32 = nope; }');
    const b = ctx.buffer(4);
    ctx.dispatch(p, [], [1]);
    await ctx.read(b);
    b.destroy();
    return new Float32Array([42]);
  },
};

after(() => disposeBackends());

it('a device error falls back to the CPU twin, tells the user once, and later runs stay on the CPU', async (t) => {
  const gpu = await webgpuOrSkip(t);
  if (!gpu) return;
  const told: string[] = [];
  const off = onGpuFallback((m) => told.push(m));
  const bf16One = new Uint8Array([0x80, 0x3f]);
  const r1 = await gpu.run(broken, { dtype: 'BF16', bytes: bf16One });
  assert.deepEqual([...r1], [1], 'the CPU twin answered');
  const r2 = await gpu.run(broken, { dtype: 'BF16', bytes: bf16One });
  assert.deepEqual([...r2], [1]);
  assert.equal(told.length, 1, 'told once');
  assert.match(told[0], /WebGPU failed .*CPU/);
  assert.equal((await getBackend('auto')).kind, 'cpu');
  await assert.rejects(getBackend('webgpu'), (e) => e instanceof BackendUnavailableError);
  off();
});
