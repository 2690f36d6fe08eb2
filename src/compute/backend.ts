import { CancelledError, throwIfCancelled } from '../core/job';
import { BATCH_KERNEL, disposeCpuPool, getCpuPool, type BatchArgs } from './cpu/pool';
import { disposeGpu, getGpuContext, gpuAutoVerdict, gpuBrokenReason, gpuDescription, gpuIsSoftware, gpuUnavailableReason, markGpuBroken } from './gpu/device';
import { GpuUnsupportedError, type Backend, type BackendChoice, type BackendKind, type KernelDef } from './kernel';

/** `getBackend('webgpu')` where no adapter exists (or the device broke): names the reason. */
export class BackendUnavailableError extends Error {
  override readonly name = 'BackendUnavailableError';
  constructor(
    readonly backend: BackendKind,
    readonly reason: string,
  ) {
    super(`the ${backend} backend is unavailable: ${reason}`);
  }
}

function runOnCpu<A, R>(kernel: KernelDef<A, R>, args: A, signal?: AbortSignal): Promise<R> {
  return getCpuPool().run<R>(kernel.name, args, kernel.transfer?.(args) ?? [], signal);
}

const cpuBackend: Backend = {
  kind: 'cpu',
  get description() {
    return getCpuPool().description;
  },
  run: runOnCpu,
};

/** Errors that mean the device, not the kernel's input, failed. */
function isDeviceFailure(e: unknown): boolean {
  if (gpuBrokenReason() !== undefined) return true;
  const name = (e as Error | undefined)?.name ?? '';
  return name.startsWith('GPU') || name === 'OperationError' || name === 'AbortError';
}

const gpuBackend: Backend = {
  kind: 'webgpu',
  get description() {
    return gpuDescription() ?? 'WebGPU';
  },
  async run<A, R>(kernel: KernelDef<A, R>, args: A, signal?: AbortSignal): Promise<R> {
    throwIfCancelled(signal);
    if (!kernel.gpu) return runOnCpu(kernel, args, signal);
    const ctx = await getGpuContext();
    // The device broke earlier in the session: every later run takes the CPU twin.
    if (!ctx) return runOnCpu(kernel, args, signal);
    let result: R;
    try {
      result = await kernel.gpu(ctx, args);
    } catch (e) {
      if (e instanceof GpuUnsupportedError) return runOnCpu(kernel, args, signal);
      if (e instanceof CancelledError) throw e;
      if (!isDeviceFailure(e)) throw e;
      markGpuBroken((e as Error).message);
      return runOnCpu(kernel, args, signal);
    }
    // A validation error is reported through the device's event, not by the call that caused it.
    if (gpuBrokenReason() !== undefined) return runOnCpu(kernel, args, signal);
    throwIfCancelled(signal);
    return result;
  },
};

/**
 * Runs `kernel` on each of `items` and returns the results in order. On the CPU the
 * items travel to one worker as one task (tiny tensors: the round trip, not the
 * arithmetic, is what costs); on the GPU they run one after another.
 */
export async function runBatch<A, R>(backend: Backend, kernel: KernelDef<A, R>, items: readonly A[], signal?: AbortSignal): Promise<R[]> {
  if (backend.kind !== 'cpu') {
    const out: R[] = [];
    for (const a of items) out.push(await backend.run(kernel, a, signal));
    return out;
  }
  const transfer = new Set<ArrayBuffer>();
  for (const a of items) for (const b of kernel.transfer?.(a) ?? []) transfer.add(b);
  return getCpuPool().run<R[]>(BATCH_KERNEL, { kernel: kernel.name, items } satisfies BatchArgs, [...transfer], signal);
}

/**
 * The backend for `choice`: `auto` is WebGPU when a hardware adapter exists (and
 * has not failed this session), else the CPU pool: a software adapter such as
 * SwiftShader or llvmpipe computes the same results tens of times slower than
 * the CPU twins, so only an explicit `webgpu` uses it. `auto` first asks
 * `gpuAutoVerdict` (no Dawn in this process, so none of its native warnings on
 * our stderr) and loads Dawn only for an adapter it would use. `webgpu` without
 * an adapter throws `BackendUnavailableError`.
 */
export async function getBackend(choice: BackendChoice = 'auto'): Promise<Backend> {
  if (choice === 'cpu') return cpuBackend;
  if (choice === 'auto' && !(await gpuAutoVerdict()).use) return cpuBackend;
  const ctx = await getGpuContext();
  if (ctx && choice === 'auto' && gpuIsSoftware()) return cpuBackend;
  if (ctx) return gpuBackend;
  if (choice === 'webgpu') throw new BackendUnavailableError('webgpu', gpuUnavailableReason());
  return cpuBackend;
}

/** Releases the device and the workers; a later `getBackend` starts them again. */
export async function disposeBackends(): Promise<void> {
  await Promise.all([disposeGpu(), disposeCpuPool()]);
}
