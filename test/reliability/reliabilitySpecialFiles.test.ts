// Inputs that are not regular files (FIFOs, devices, folders) must be refused at once
// with exit 2 and error[not_a_file], by every command, through the CLI as a user runs it:
// before, opening a FIFO waited forever for a writer and /dev/zero never ended.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type * as vscode from 'vscode';
import { FormatError } from '../../src/format/errors';
import { WorkspaceFileSource, WorkspaceSourceOpener } from '../../src/vscode/workspaceSource';
import { gen, writePeft, writeTensors } from '../merge/mergeFixtures';

const CLI = join(__dirname, 'cli.js');
// Each command must answer well within this; a hang is killed at KILL_MS so the suite itself cannot stall.
const PROMPT_MS = 8_000;
const KILL_MS = 20_000;

let root = '';

function mkfifo(path: string): void {
  const r = spawnSync('mkfifo', [path]);
  assert.equal(r.status, 0, `mkfifo ${path}: ${r.stderr}`);
}

/** Runs the CLI in a child process, asynchronously so that several can be timed without blocking the runner. */
function cli(args: string[]): Promise<{ code: number | null; err: string; ms: number }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TW_CPU_WORKERS: '1' } });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.stdout.resume();
    const timer = setTimeout(() => child.kill('SIGKILL'), KILL_MS);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, err, ms: Date.now() - t0 });
    });
  });
}

async function refused(args: string[], code = 'not_a_file', names?: string): Promise<void> {
  const r = await cli(args);
  assert.ok(r.ms < PROMPT_MS, `${args.join(' ')} took ${r.ms} ms`);
  assert.equal(r.code, 2, `${args.join(' ')} → ${r.code}: ${r.err}`);
  assert.match(r.err, new RegExp(`^error\\[${code}\\]: `), r.err);
  if (names) assert.ok(r.err.includes(names), `${r.err} should name ${names}`);
}

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'tw-special-'));
  const base = [gen('m.q.weight', 'F32', [8, 8], 1), gen('m.k.weight', 'F32', [8, 8], 2)];
  await writeTensors(join(root, 'good.safetensors'), base);
  mkfifo(join(root, 'fifo.safetensors'));
  mkdirSync(join(root, 'x.safetensors'));
  const A = gen('base_model.model.m.q.lora_A.weight', 'F32', [2, 8], 3);
  const B = gen('base_model.model.m.q.lora_B.weight', 'F32', [8, 2], 4);
  await writePeft(join(root, 'ad'), { config: { r: 2, lora_alpha: 4 }, tensors: [A, B] });
  // An adapter whose config is a FIFO, and one whose config is a folder.
  await writePeft(join(root, 'adfifo'), { config: {}, tensors: [A, B] });
  rmSync(join(root, 'adfifo', 'adapter_config.json'));
  mkfifo(join(root, 'adfifo', 'adapter_config.json'));
  await writePeft(join(root, 'addir'), { config: {}, tensors: [A, B] });
  rmSync(join(root, 'addir', 'adapter_config.json'));
  mkdirSync(join(root, 'addir', 'adapter_config.json'));
  // A base folder whose config.json is a FIFO.
  mkdirSync(join(root, 'basecfg'));
  await writeTensors(join(root, 'basecfg', 'model.safetensors'), base);
  mkfifo(join(root, 'basecfg', 'config.json'));
  // A folder whose index is a FIFO.
  mkdirSync(join(root, 'idx'));
  mkfifo(join(root, 'idx', 'model.safetensors.index.json'));
});

after(() => rmSync(root, { recursive: true, force: true }));

describe('special files as inputs', () => {
  it('a FIFO as the model: every command exits 2 at once', async () => {
    const fifo = join(root, 'fifo.safetensors');
    const good = join(root, 'good.safetensors');
    const runs = [
      ['inspect', fifo],
      ['stats', fifo, '--backend', 'cpu'],
      ['diff', good, fifo, '--backend', 'cpu'],
      ['diff', fifo, good, '--backend', 'cpu'],
      ['convert', fifo, join(root, 'c.safetensors')],
      ['quantize', fifo, join(root, 'q.gguf'), '--scheme', 'q8_0', '--backend', 'cpu'],
      ['merge', fifo, join(root, 'ad'), join(root, 'm.safetensors'), '--backend', 'cpu'],
      ['merge', good, join(root, 'fifo.safetensors'), join(root, 'm.safetensors'), '--backend', 'cpu'],
    ];
    for (const args of runs) await refused(args, 'not_a_file', fifo);
    for (const out of ['c.safetensors', 'q.gguf', 'm.safetensors']) assert.equal(existsSync(join(root, out)), false, out);
  });

  it('a FIFO as adapter_config.json, config.json or index: exit 2, nothing written', async () => {
    await refused(['merge', join(root, 'good.safetensors'), join(root, 'adfifo'), join(root, 'm1.safetensors'), '--dry-run'], 'not_a_file', 'adapter_config.json');
    await refused(['merge', join(root, 'basecfg'), join(root, 'ad'), join(root, 'mout'), '--backend', 'cpu'], 'not_a_file', 'config.json');
    assert.equal(existsSync(join(root, 'mout')), false);
    await refused(['quantize', join(root, 'basecfg'), join(root, 'q2.gguf'), '--scheme', 'q8_0', '--backend', 'cpu'], 'not_a_file', 'config.json');
    assert.equal(existsSync(join(root, 'q2.gguf')), false);
    await refused(['inspect', join(root, 'idx')], 'not_a_file', 'model.safetensors.index.json');
    await refused(['inspect', join(root, 'idx', 'model.safetensors.index.json')], 'not_a_file');
  });

  it('character devices and folders where a file is expected: exit 2, not a hang or EISDIR', async () => {
    await refused(['inspect', '/dev/zero'], 'not_a_file', '/dev/zero');
    await refused(['stats', '/dev/null'], 'not_a_file', '/dev/null');
    await refused(['inspect', join(root, 'x.safetensors')], 'not_a_file', 'x.safetensors');
    await refused(['convert', join(root, 'x.safetensors'), join(root, 'c2.safetensors')], 'not_a_file');
    await refused(['merge', join(root, 'good.safetensors'), join(root, 'addir'), join(root, 'm2.safetensors'), '--dry-run'], 'not_a_file', 'adapter_config.json');
  });
});

describe('workspace.fs sources', () => {
  // FileType in VS Code's API: Unknown 0 (FIFOs, devices), File 1, Directory 2, SymbolicLink 64.
  const uri = (path: string) => ({ path, scheme: 'mem', with: (c: { path: string }) => uri(c.path), toString: () => `mem:${path}` }) as unknown as vscode.Uri;
  const fsOf = (type: number) =>
    ({
      stat: async () => ({ type, ctime: 0, mtime: 0, size: 100 }),
      readFile: async () => {
        throw new Error('read must not be reached');
      },
      readDirectory: async () => [],
    }) as unknown as Pick<vscode.FileSystem, 'stat' | 'readFile' | 'readDirectory'>;

  it('refuses anything stat does not call a file, for models and for texts', async () => {
    for (const type of [0, 2]) {
      await assert.rejects(WorkspaceFileSource.open(fsOf(type), uri('/m.safetensors')), (e) => e instanceof FormatError && e.code === 'not_a_file');
      await assert.rejects(new WorkspaceSourceOpener(fsOf(type), uri('/')).readText('/model.safetensors.index.json'), (e) => e instanceof FormatError && e.code === 'not_a_file');
    }
    // A link to a file is a file.
    const src = await WorkspaceFileSource.open(fsOf(1 | 64), uri('/m.safetensors'));
    assert.equal(src.size, 100);
  });
});
