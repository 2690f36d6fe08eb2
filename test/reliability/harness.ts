// Shared pieces of the reliability tests: the CLI as a child process, fixtures on disk,
// a byte-exact snapshot of a folder tree, and tmpfs mounts where the machine allows them.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, lstatSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeSafetensors } from '../../src/format/writer';
import { writeLlama, type LlamaWriteOptions } from '../fixtures/llama';

export const CLI = join(__dirname, 'cli.js');

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function cli(cwd: string, ...args: string[]): CliResult {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8' });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

export function cliAsync(cwd: string, ...args: string[]): { child: ChildProcess; done: Promise<CliResult> } {
  const child = spawn(process.execPath, [CLI, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (b) => (stdout += b));
  child.stderr!.on('data', (b) => (stderr += b));
  const done = new Promise<CliResult>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done };
}

/**
 * Every entry under `root` (not following symlinks): regular files by content hash,
 * links by target, folders by name. Equal snapshots mean nothing was written, renamed or left behind.
 */
export function snapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string, rel: string) => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      const r = rel ? `${rel}/${name}` : name;
      const s = lstatSync(p);
      if (s.isSymbolicLink()) out[r] = `link → ${readlinkSync(p)}`;
      else if (s.isDirectory()) {
        out[r] = 'dir';
        walk(p, r);
      } else out[r] = `${s.ino}:${createHash('sha256').update(readFileSync(p)).digest('hex')}`;
    }
  };
  walk(root, '');
  return out;
}

/** Our writers' temporaries under `dir` (one level). */
export function temps(dir: string): string[] {
  return readdirSync(dir).filter((n) => /\.tmp-/.test(n));
}

export async function llama(dir: string, opts: LlamaWriteOptions = {}): Promise<void> {
  await writeLlama(dir, opts);
}

/** A PEFT adapter on the tiny fixture's layer-0 q_proj (hidden 64), rank 4; a huge `scale` makes B·A overflow to ±Inf. */
export async function peftAdapter(dir: string, scale = 0.01, hidden = 64): Promise<void> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 4, lora_alpha: 8, target_modules: ['q_proj'] }));
  const f32 = (n: number, seed: number) => new Uint8Array(Float32Array.from({ length: n }, (_, i) => Math.sin(seed + i) * scale).buffer);
  const key = 'base_model.model.model.layers.0.self_attn.q_proj';
  await writeSafetensors(join(dir, 'adapter_model.safetensors'), [
    { name: `${key}.lora_A.weight`, dtype: 'F32', shape: [4, hidden], data: f32(4 * hidden, 1) },
    { name: `${key}.lora_B.weight`, dtype: 'F32', shape: [hidden, 4], data: f32(4 * hidden, 2) },
  ]);
}

/** Mounts a tmpfs of `size` at `dir`; returns why not when this machine does not allow it. */
export function mountTmpfs(dir: string, size: string): string | undefined {
  mkdirSync(dir, { recursive: true });
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { encoding: 'utf8' });
  if (r.error) return `mount is not available: ${r.error.message}`;
  return r.status === 0 ? undefined : `mount -t tmpfs refused (${(r.stderr || '').trim() || `exit ${r.status}`})`;
}

export function remountReadOnly(dir: string): string | undefined {
  const r = spawnSync('mount', ['-o', 'remount,ro', dir], { encoding: 'utf8' });
  return r.status === 0 ? undefined : `mount -o remount,ro refused (${(r.stderr || '').trim()})`;
}

export function unmount(dir: string): void {
  spawnSync('umount', [dir]);
}
