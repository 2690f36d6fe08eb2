import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { GpuContext } from '../kernel';
import { isSoftwareAdapter, noDriverReason, probeForAuto, type ProbeVerdict } from './probe';

export { isSoftwareAdapter } from './probe';

/**
 * The one WebGPU device of the process (Dawn through the `webgpu` package's
 * native addon), created on first use and shared by every GPU kernel.
 *
 * When the device is lost or reports an error, it is marked broken for the
 * rest of the session: the backend then runs every kernel on the CPU pool and
 * the user is told once, through whatever notifier the host installed
 * (`onGpuFallback`: a message in VS Code, a line on stderr in the CLI).
 */

interface Dawn {
  create(flags: string[]): GPU;
  globals: Record<string, unknown>;
}

interface DeviceState {
  /** The `create()` result: Node cannot exit while it is referenced. */
  gpu: GPU;
  adapter: GPUAdapter;
  device: GPUDevice;
  ctx: DawnContext;
  description: string;
  /** A CPU implementation of WebGPU (SwiftShader, llvmpipe/lavapipe, WARP): correct, but slower than the CPU twins. */
  software: boolean;
}

let state: DeviceState | undefined;
let starting: Promise<DeviceState | undefined> | undefined;
let brokenReason: string | undefined;
let loadError: string | undefined;
const listeners = new Set<(reason: string) => void>();
let told = false;

// Buffer usage bits from the WebGPU spec; written out because `GPUBufferUsage`
// is only a global once Dawn's globals are installed.
export const BufferUsage = {
  MAP_READ: 0x0001,
  MAP_WRITE: 0x0002,
  COPY_SRC: 0x0004,
  COPY_DST: 0x0008,
  INDEX: 0x0010,
  VERTEX: 0x0020,
  UNIFORM: 0x0040,
  STORAGE: 0x0080,
  INDIRECT: 0x0100,
  QUERY_RESOLVE: 0x0200,
} as const;
const MAP_MODE_READ = 0x0001;
let autoVerdict: Promise<ProbeVerdict> | undefined;
const infoListeners = new Set<(line: string) => void>();

/** Candidate locations of dawn.node: beside the bundle (the build copies it there), then node_modules. */
function dawnPaths(): string[] {
  const plat = `${process.platform}-${process.platform === 'darwin' ? 'universal' : process.arch}`;
  const out = [join(__dirname, 'dawn', plat, 'dawn.node')];
  try {
    out.push(join(dirname(require.resolve('webgpu/package.json')), 'dist', plat, 'dawn.node'));
  } catch {
    // The package is not resolvable from here (packaged extension): the copy beside the bundle is the only one.
  }
  out.push(join(__dirname, '..', 'node_modules', 'webgpu', 'dist', plat, 'dawn.node'));
  return out;
}

/** Registers a function given the backend's diagnostic lines (adapter, why `auto` chose the CPU): --verbose, the VS Code log. */
export function onBackendInfo(cb: (line: string) => void): () => void {
  infoListeners.add(cb);
  return () => infoListeners.delete(cb);
}

/** Tells the diagnostic listeners; without one the line goes nowhere, so that stderr stays ours. */
export function backendInfo(line: string): void {
  for (const l of infoListeners) {
    try {
      l(line);
    } catch {
      // A logger that throws must not break the computation it describes.
    }
  }
}

/**
 * Whether `auto` may load Dawn in this process (see ./probe.ts), decided once per
 * process: a hardware adapter whose probe printed nothing on stderr.
 */
export function gpuAutoVerdict(): Promise<ProbeVerdict> {
  autoVerdict ??= probeForAuto(dawnPaths().find((p) => existsSync(p))).then((v) => {
    backendInfo(v.use ? `WebGPU adapter: ${v.detail}` : `auto backend: CPU pool (${v.detail})`);
    if (v.nativeOutput) backendInfo(`Dawn's output while probing:\n${v.nativeOutput.replace(/^/gm, '  ')}`);
    return v;
  });
  return autoVerdict;
}

function loadDawn(): Dawn | undefined {
  // Without a Vulkan driver Dawn has no adapter to offer and would only print the loader's warnings.
  const none = noDriverReason();
  if (none) {
    loadError = none;
    return undefined;
  }
  for (const p of dawnPaths()) {
    if (!existsSync(p)) continue;
    try {
      // A native addon loaded by path at run time; esbuild leaves this require alone.
      const mod = require(p) as Dawn;
      for (const [k, v] of Object.entries(mod.globals)) {
        if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
      }
      return mod;
    } catch (e) {
      loadError = `could not load ${p}: ${(e as Error).message}`;
    }
  }
  loadError ??= 'dawn.node was not found';
  return undefined;
}

/**
 * Registers a function told once, with the reason, when GPU work falls back to
 * the CPU. Returns a function that unregisters it.
 */
export function onGpuFallback(cb: (reason: string) => void): () => void {
  listeners.add(cb);
  return () => listeners.delete(cb);
}

/** Marks the device unusable for the rest of the session and tells the user once. */
export function markGpuBroken(reason: string): void {
  if (brokenReason === undefined) brokenReason = reason;
  if (told) return;
  told = true;
  const msg = `WebGPU failed (${reason}); running on the CPU instead.`;
  if (listeners.size === 0) process.stderr.write(`tensor-workbench: ${msg}\n`);
  for (const l of listeners) {
    try {
      l(msg);
    } catch {
      // A notifier that throws must not break the computation it reports on.
    }
  }
}

/** Why the GPU is unusable, or undefined while it is healthy. */
export function gpuBrokenReason(): string | undefined {
  return brokenReason;
}

/** Why no adapter could be had (for the typed error of `getBackend('webgpu')`). */
export function gpuUnavailableReason(): string {
  return brokenReason ?? loadError ?? 'no WebGPU adapter';
}

async function start(): Promise<DeviceState | undefined> {
  const dawn = loadDawn();
  if (!dawn) return undefined;
  let gpu: GPU | undefined = dawn.create([]);
  try {
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) {
      loadError = 'no WebGPU adapter';
      gpu = undefined;
      return undefined;
    }
    // Ask for the adapter's largest buffers: the default 128 MiB binding limit would
    // force more, smaller dispatches than the hardware needs. Callers still chunk by `limits`.
    const l = adapter.limits;
    const device = await adapter.requestDevice({
      requiredLimits: {
        maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
        maxBufferSize: l.maxBufferSize,
        maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
        maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
        maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
        maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      },
    });
    const info = adapter.info;
    const description = [info.description || info.device || info.vendor || 'WebGPU', info.architecture].filter(Boolean).join(' / ');
    const software = isSoftwareAdapter(info);
    backendInfo(`WebGPU device: ${description}${software ? ' (software)' : ''}`);
    const s: DeviceState = { gpu, adapter, device, ctx: new DawnContext(device), description, software };
    device.addEventListener('uncapturederror', (ev) => {
      markGpuBroken((ev as GPUUncapturedErrorEvent).error.message.split('\n')[0]);
    });
    void device.lost.then((info) => {
      if (state?.device === device) {
        state = undefined;
        starting = undefined;
      }
      if (info.reason !== 'destroyed') markGpuBroken(`device lost: ${info.message}`);
    });
    return s;
  } catch (e) {
    loadError = `WebGPU device creation failed: ${(e as Error).message}`;
    return undefined;
  }
}

/** The shared GPU context, or undefined when there is no adapter or the device broke. */
export async function getGpuContext(): Promise<GpuContext | undefined> {
  if (brokenReason !== undefined) return undefined;
  if (state) return state.ctx;
  starting ??= start().then((s) => (state = s));
  const s = await starting;
  return brokenReason === undefined ? s?.ctx : undefined;
}

/** Whether the adapter is WebGPU emulated on the CPU (see DeviceState.software); undefined before the device exists. */
export function gpuIsSoftware(): boolean | undefined {
  return state?.software;
}

/** "SwiftShader driver 5.0.0 / swiftshader" and the like, once the device exists. */
export function gpuDescription(): string | undefined {
  return state?.description;
}

/** Destroys the device and drops Dawn's root object so that Node can exit. Safe to call twice. */
export async function disposeGpu(): Promise<void> {
  const s = state ?? (starting ? await starting.catch(() => undefined) : undefined);
  state = undefined;
  starting = undefined;
  if (!s) return;
  s.ctx.clear();
  s.device.destroy();
}

/** Splits `groups` workgroups into an x × y grid that respects the per-dimension limit. */
export function workgroupGrid(groups: number, maxPerDim: number): [number, number] {
  if (groups <= maxPerDim) return [Math.max(groups, 1), 1];
  const y = Math.ceil(groups / maxPerDim);
  return [Math.ceil(groups / y), y];
}

function roundUp4(n: number): number {
  return Math.max(4, Math.ceil(n / 4) * 4);
}

class DawnContext implements GpuContext {
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly modules = new Map<string, GPUShaderModule>();
  readonly limits: GpuContext['limits'];

  constructor(readonly device: GPUDevice) {
    this.limits = {
      maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
      maxComputeWorkgroupsPerDimension: device.limits.maxComputeWorkgroupsPerDimension,
      maxBufferSize: device.limits.maxBufferSize,
    };
  }

  pipeline(key: string, code: string, entryPoint = 'main', constants?: Record<string, number>): GPUComputePipeline {
    const constKey = constants ? Object.keys(constants).sort().map((k) => `${k}=${constants[k]}`).join(',') : '';
    const full = `${key}#${entryPoint}#${constKey}`;
    let p = this.pipelines.get(full);
    if (p) return p;
    let module = this.modules.get(key);
    if (!module) {
      module = this.device.createShaderModule({ code, label: key });
      this.modules.set(key, module);
    }
    p = this.device.createComputePipeline({ layout: 'auto', label: full, compute: { module, entryPoint, constants } });
    this.pipelines.set(full, p);
    return p;
  }

  upload(data: ArrayBufferView, usage = 0): GPUBuffer {
    const buf = this.device.createBuffer({
      size: roundUp4(data.byteLength),
      usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST | usage,
      mappedAtCreation: true,
    });
    new Uint8Array(buf.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    buf.unmap();
    return buf;
  }

  buffer(size: number, usage = 0): GPUBuffer {
    return this.device.createBuffer({ size: roundUp4(size), usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST | usage });
  }

  uniform(words: ArrayBufferView): GPUBuffer {
    // Uniform bindings are read in 16-byte rows.
    const size = Math.max(16, Math.ceil(words.byteLength / 16) * 16);
    const buf = this.device.createBuffer({ size, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST, mappedAtCreation: true });
    new Uint8Array(buf.getMappedRange()).set(new Uint8Array(words.buffer, words.byteOffset, words.byteLength));
    buf.unmap();
    return buf;
  }

  dispatch(pipeline: GPUComputePipeline, bindings: readonly (GPUBuffer | undefined)[], workgroups: readonly [number, number?, number?]): void {
    const entries: GPUBindGroupEntry[] = [];
    bindings.forEach((buffer, binding) => {
      if (buffer) entries.push({ binding, resource: { buffer } });
    });
    const bindGroup = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    const enc = this.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(workgroups[0], workgroups[1] ?? 1, workgroups[2] ?? 1);
    pass.end();
    this.device.queue.submit([enc.finish()]);
  }

  async read(buffer: GPUBuffer, size = buffer.size, offset = 0): Promise<ArrayBuffer> {
    const n = roundUp4(size);
    const staging = this.device.createBuffer({ size: n, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(buffer, offset, staging, 0, n);
    this.device.queue.submit([enc.finish()]);
    try {
      await staging.mapAsync(MAP_MODE_READ);
      // Copy out: the mapped range detaches on unmap.
      return staging.getMappedRange().slice(0, size);
    } finally {
      if (staging.mapState === 'mapped') staging.unmap();
      staging.destroy();
    }
  }

  clear(): void {
    this.pipelines.clear();
    this.modules.clear();
  }
}
