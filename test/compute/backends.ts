import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { disposeBackends, getBackend } from '../../src/compute/backend';
import { gpuBrokenReason } from '../../src/compute/gpu/device';
import type { Backend, BackendKind } from '../../src/compute/kernel';

/** The backends every kernel table runs on. */
export const BACKEND_KINDS: readonly BackendKind[] = ['cpu', 'webgpu'];

/**
 * Runs `body` once per backend, each inside its own describe() ("name [cpu]",
 * "name [webgpu]"). Without a WebGPU adapter the webgpu suite is skipped locally
 * and FAILS when CI=true. The webgpu suite ends by checking that no run fell
 * back to the CPU, so a broken GPU twin cannot pass on its CPU twin's results.
 */
export function forEachBackend(name: string, body: (backend: Backend) => void): void {
  for (const kind of BACKEND_KINDS) {
    describe(`${name} [${kind}]`, async () => {
      let backend: Backend;
      try {
        backend = await getBackend(kind);
      } catch (e) {
        const why = (e as Error).message;
        if (process.env.CI === 'true') it('has a WebGPU adapter', () => assert.fail(why));
        else it.skip(`no ${kind} backend: ${why}`, () => {});
        return;
      }
      after(() => disposeBackends());
      body(backend);
      if (kind === 'webgpu') {
        it('ran every case on the GPU (no fallback to the CPU)', () => assert.equal(gpuBrokenReason(), undefined));
      }
    });
  }
}

/**
 * The WebGPU backend for a test that needs it; without an adapter the test is
 * skipped locally (returns undefined) and fails when CI=true.
 */
export async function webgpuOrSkip(t: { skip(message: string): void }): Promise<Backend | undefined> {
  try {
    return await getBackend('webgpu');
  } catch (e) {
    if (process.env.CI === 'true') throw e;
    t.skip(`no WebGPU adapter: ${(e as Error).message}`);
    return undefined;
  }
}
