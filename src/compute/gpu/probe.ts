import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * Whether `auto` should load Dawn in this process, decided without letting Dawn's
 * native output reach our stderr. Dawn writes its warnings ("vkCreateInstance: Found
 * no drivers!", a source line of its own) to fd 2 from C++, where JavaScript cannot
 * filter them, so the first look happens where nothing native runs, or in a child
 * process whose stderr is captured:
 *
 *   1. On Linux Dawn reaches the GPU through the Vulkan loader, which finds drivers
 *      only through ICD manifests: with none in its search paths there is no adapter,
 *      and Dawn is not loaded at all (a few stat calls).
 *   2. Otherwise a child Node loads Dawn and asks for an adapter. Only a hardware
 *      adapter whose probe printed nothing is loaded in-process; a software adapter
 *      (slower than the CPU twins) or a noisy driver leaves `auto` on the CPU.
 *      The verdict is kept in the user's cache folder, keyed by everything that could
 *      change it (dawn.node, the manifests, the VK_* variables, Node's ABI), so that
 *      later runs skip the child's start-up (about 0.3 s).
 */
export interface ProbeVerdict {
  /** Load Dawn in this process. */
  readonly use: boolean;
  /** One line for --verbose and the VS Code log: the adapter, or why there is none. */
  readonly detail: string;
  /** What Dawn printed in the child, for --verbose; empty when it printed nothing. */
  readonly nativeOutput: string;
}

// A cold Dawn start with a slow driver takes about a second; 20 s means it hangs.
const PROBE_TIMEOUT_MS = 20_000;
// Enough of Dawn's output to show in a log; a driver that prints more repeats itself.
const NATIVE_OUTPUT_MAX = 4000;
// Adapters that run WebGPU on the CPU, by the names their drivers report: Dawn flags SwiftShader as a
// fallback adapter, but Mesa's llvmpipe/lavapipe and Windows' WARP appear as ordinary ones.
const SOFTWARE_ADAPTER = /swiftshader|llvmpipe|lavapipe|\bwarp\b|microsoft basic render/i;

/** Whether an adapter, by its info, runs WebGPU on the CPU. */
export function isSoftwareAdapter(info: { vendor?: string; architecture?: string; device?: string; description?: string; isFallbackAdapter?: boolean }): boolean {
  return info.isFallbackAdapter === true || SOFTWARE_ADAPTER.test(`${info.vendor} ${info.architecture} ${info.device} ${info.description}`);
}

function splitPaths(v: string | undefined): string[] {
  return (v ?? '').split(':').filter(Boolean);
}

/** Files a manifest path names: the file itself, or the .json files of a folder. */
function manifestsAt(p: string): string[] {
  try {
    if (!statSync(p).isDirectory()) return [p];
    return readdirSync(p)
      .filter((n) => n.endsWith('.json'))
      .map((n) => join(p, n));
  } catch {
    return [];
  }
}

/**
 * The Vulkan ICD manifests the Linux loader would read: VK_DRIVER_FILES (or the older
 * VK_ICD_FILENAMES) replaces the search, VK_ADD_DRIVER_FILES adds to it; otherwise
 * vulkan/icd.d under the XDG config and data folders and the system ones.
 */
export function vulkanIcdManifests(env: NodeJS.ProcessEnv = process.env): string[] {
  const added = splitPaths(env.VK_ADD_DRIVER_FILES).flatMap(manifestsAt);
  const only = splitPaths(env.VK_DRIVER_FILES || env.VK_ICD_FILENAMES);
  if (only.length > 0) return [...only.flatMap(manifestsAt), ...added];
  const home = env.HOME || homedir();
  const config = [env.XDG_CONFIG_HOME || join(home, '.config'), ...splitPaths(env.XDG_CONFIG_DIRS || '/etc/xdg'), '/usr/local/etc', '/etc'];
  const data = [env.XDG_DATA_HOME || join(home, '.local', 'share'), ...splitPaths(env.XDG_DATA_DIRS || '/usr/local/share:/usr/share')];
  const dirs = [...config, ...data].map((d) => join(d, 'vulkan', 'icd.d'));
  return [...dirs.filter((d) => existsSync(d)).flatMap(manifestsAt), ...added];
}

/** Why Dawn cannot find an adapter before it is loaded, or undefined when it may. */
export function noDriverReason(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (process.platform !== 'linux') return undefined;
  if (vulkanIcdManifests(env).length > 0) return undefined;
  return 'no Vulkan driver: no ICD manifest in the loader\'s search paths (VK_DRIVER_FILES, VK_ICD_FILENAMES, */vulkan/icd.d)';
}

/**
 * Run by the child: load Dawn, ask for an adapter, print its info as one JSON line,
 * and exit at once (Node would otherwise wait on Dawn's root object).
 */
const CHILD = `
const dawn = require(process.argv[1]);
const gpu = dawn.create([]);
gpu.requestAdapter({ powerPreference: 'high-performance' }).then(
  (a) => { const i = a && a.info; process.stdout.write(JSON.stringify(i ? { vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description, isFallbackAdapter: a.isFallbackAdapter || i.isFallbackAdapter } : null) + '\\n'); process.exit(0); },
  (e) => { process.stdout.write(JSON.stringify({ error: String(e && e.message || e) }) + '\\n'); process.exit(0); });
`;

interface ChildResult {
  info?: { vendor?: string; architecture?: string; device?: string; description?: string; isFallbackAdapter?: boolean; error?: string } | null;
  stderr: string;
  failure?: string;
}

function runChild(dawnPath: string): Promise<ChildResult> {
  // ELECTRON_RUN_AS_NODE: in desktop VS Code process.execPath is Electron, which must act as Node here.
  const env = { ...process.env, ELECTRON_RUN_AS_NODE: '1' };
  return new Promise((resolve) => {
    execFile(process.execPath, ['-e', CHILD, dawnPath], { env, timeout: PROBE_TIMEOUT_MS, windowsHide: true }, (err, stdout, stderr) => {
      const text = String(stderr).trim().slice(0, NATIVE_OUTPUT_MAX);
      const line = String(stdout).trim().split('\n').pop() ?? '';
      try {
        resolve({ info: JSON.parse(line), stderr: text });
      } catch {
        resolve({ stderr: text, failure: err ? `the adapter probe failed (${err.killed ? 'timed out' : err.message.split('\n')[0]})` : 'the adapter probe printed no result' });
      }
    });
  });
}

function describe(info: NonNullable<ChildResult['info']>): string {
  return [info.description || info.device || info.vendor || 'WebGPU', info.architecture].filter(Boolean).join(' / ');
}

function stamp(path: string): string {
  try {
    const st = statSync(path);
    return `${path}:${st.size}:${st.mtimeMs}`;
  } catch {
    return `${path}:missing`;
  }
}

/** What the verdict depends on; a change to any of it means probing again. */
function cacheKey(dawnPath: string): string {
  const vk = Object.keys(process.env)
    .filter((k) => k.startsWith('VK_'))
    .sort()
    .map((k) => `${k}=${process.env[k]}`);
  return JSON.stringify([stamp(dawnPath), vulkanIcdManifests().sort().map(stamp), vk, process.platform, process.arch, process.versions.modules]);
}

function cacheFile(): string {
  const base = process.env.XDG_CACHE_HOME || join(process.env.HOME || homedir(), '.cache');
  return join(base, 'tensor-workbench', 'gpu-probe.json');
}

function readCached(key: string): ProbeVerdict | undefined {
  try {
    const c = JSON.parse(readFileSync(cacheFile(), 'utf8')) as { key?: string; verdict?: ProbeVerdict };
    return c.key === key && c.verdict && typeof c.verdict.use === 'boolean' ? c.verdict : undefined;
  } catch {
    return undefined;
  }
}

function writeCached(key: string, verdict: ProbeVerdict): void {
  const file = cacheFile();
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    mkdirSync(join(file, '..'), { recursive: true });
    writeFileSync(tmp, JSON.stringify({ key, verdict }));
    // Renamed into place, so that a concurrent run reads the old verdict or the new one, never half of one.
    renameSync(tmp, file);
  } catch {
    // A read-only home only costs the next run another probe.
  }
}

/** The verdict for `auto`, given where dawn.node is (undefined: not found). */
export async function probeForAuto(dawnPath: string | undefined): Promise<ProbeVerdict> {
  const none = noDriverReason();
  if (none) return { use: false, detail: none, nativeOutput: '' };
  if (!dawnPath) return { use: false, detail: 'dawn.node was not found', nativeOutput: '' };
  const key = cacheKey(dawnPath);
  const cached = readCached(key);
  if (cached) return { ...cached, detail: `${cached.detail}; verdict cached in ${cacheFile()}` };
  const verdict = await probeInChild(dawnPath);
  writeCached(key, verdict);
  return verdict;
}

async function probeInChild(dawnPath: string): Promise<ProbeVerdict> {
  const r = await runChild(dawnPath);
  const nativeOutput = r.stderr;
  if (r.failure) return { use: false, detail: r.failure, nativeOutput };
  if (!r.info) return { use: false, detail: 'no WebGPU adapter', nativeOutput };
  if (r.info.error) return { use: false, detail: `no WebGPU adapter: ${r.info.error}`, nativeOutput };
  const name = describe(r.info);
  if (isSoftwareAdapter(r.info)) return { use: false, detail: `${name} is a software adapter, slower than the CPU pool`, nativeOutput };
  if (nativeOutput) return { use: false, detail: `${name}: its driver prints warnings (see below); --backend webgpu uses it anyway`, nativeOutput };
  return { use: true, detail: name, nativeOutput };
}
