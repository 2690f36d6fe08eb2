/**
 * The CLI's stderr carries our own lines only. Dawn writes its warnings
 * ("vkCreateInstance: Found no drivers!", "Couldn't load Vulkan", a C++ source line)
 * to fd 2 from native code; with the default backend (`auto`) on a machine without
 * a GPU none of that may reach the user, and --verbose says which backend was chosen and why.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { vulkanIcdManifests } from '../../src/compute/gpu/probe';
import { pack, writeSafetensorsFile } from '../compute/reference';

// Bundles run from dist/, where the build also puts the CLI.
const CLI = join(__dirname, 'cli.js');
const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
const dir = mkdtempSync(join(tmpdir(), 'tw-cli-stderr-'));
after(() => rmSync(dir, { recursive: true, force: true }));

// BF16 0x3f80 = 1, 0x4000 = 2, 0xbf80 = -1: min -1, max 2, no NaN or zero.
const model = join(dir, 'm.safetensors');
writeSafetensorsFile(model, [{ name: 'w', dtype: 'BF16', shape: [4], bytes: pack(16, [0x3f80, 0x4000, 0xbf80, 0x4000]) }]);

/** A machine's environment less every Vulkan driver: empty XDG folders, no VK_* variables. */
function noGpuEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('VK_') && !k.startsWith('XDG_')) env[k] = v;
  const empty = join(dir, 'xdg');
  mkdirSync(empty, { recursive: true });
  return { ...env, HOME: empty, XDG_CONFIG_HOME: empty, XDG_DATA_HOME: empty, XDG_CONFIG_DIRS: empty, XDG_DATA_DIRS: empty, ...extra };
}

function cli(args: string[], env: NodeJS.ProcessEnv) {
  const r = spawnSync(process.execPath, [CLI, ...args], { env, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function assertStats(stdout: string): void {
  const row = stdout.split('\n').find((l) => l.startsWith('w '));
  assert.ok(row, stdout);
  assert.match(row, /BF16\s+\[4\]\s+-1(\.000)?\s+2(\.000)?\s+1(\.000)?\s/);
  assert.match(stdout, /1 tensors, .* \(.*cpu: .*\); all healthy/);
}

describe('CLI stderr without a GPU', () => {
  it('stats with the default backend prints nothing on stderr when no Vulkan driver exists', () => {
    const r = cli(['stats', model], noGpuEnv());
    assert.equal(r.stderr, '');
    assert.equal(r.code, 0);
    assertStats(r.stdout);
  });

  it('--verbose says that auto took the CPU pool, and why', () => {
    const r = cli(['stats', model, '--verbose'], noGpuEnv());
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^tensor-workbench: auto backend: CPU pool \(/m);
    assertStats(r.stdout);
  });

  it('a driver whose library is missing: Dawn warns in the probe, and none of it reaches stderr', () => {
    const icd = join(dir, 'broken_icd.json');
    writeFileSync(icd, JSON.stringify({ file_format_version: '1.0.0', ICD: { library_path: join(dir, 'no-such-driver.so'), api_version: '1.3.0' } }));
    const env = noGpuEnv({ VK_ICD_FILENAMES: icd });
    const r = cli(['stats', model], env);
    assert.equal(r.stderr, '');
    assert.equal(r.code, 0);
    assertStats(r.stdout);
    // The first run probed and kept its verdict in the user's cache folder (HOME here): this one reads it.
    const v = cli(['stats', model, '--verbose'], env);
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stderr, /^tensor-workbench: auto backend: CPU pool \((no WebGPU adapter|.* is a software adapter).*; verdict cached in /m);
    // A changed driver list is probed again.
    const again = cli(['stats', model, '--verbose'], { ...env, VK_ADD_DRIVER_FILES: join(dir, 'other_icd.json') });
    assert.match(again.stderr, /^tensor-workbench: auto backend: CPU pool \((no WebGPU adapter|.* is a software adapter, slower than the CPU pool)\)$/m);
  });

  it('SwiftShader (a software adapter) leaves auto on the CPU pool, quietly', (t) => {
    if (!existsSync(SWIFTSHADER_ICD)) return t.skip(`${SWIFTSHADER_ICD} is missing (Debian's chromium package)`);
    const env = noGpuEnv({ VK_ICD_FILENAMES: SWIFTSHADER_ICD, XDG_RUNTIME_DIR: tmpdir() });
    const r = cli(['stats', model], env);
    assert.equal(r.stderr, '');
    assert.equal(r.code, 0);
    assertStats(r.stdout);
    const v = cli(['stats', model, '--verbose'], env);
    assert.match(v.stderr, /auto backend: CPU pool \((.*software adapter|no WebGPU adapter)/i);
  });
});

describe('Vulkan ICD manifest search', () => {
  it('VK_ICD_FILENAMES names files or folders and replaces the XDG and system search', () => {
    const d = join(dir, 'icds');
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, 'a.json'), '{}');
    writeFileSync(join(d, 'notes.txt'), '');
    const lone = join(dir, 'lone.json');
    writeFileSync(lone, '{}');
    assert.deepEqual(vulkanIcdManifests({ VK_ICD_FILENAMES: `${d}:${lone}` }), [join(d, 'a.json'), lone]);
    assert.deepEqual(vulkanIcdManifests({ VK_DRIVER_FILES: lone, VK_ICD_FILENAMES: d }), [lone]);
  });

  it('without the variables, finds vulkan/icd.d under the XDG folders, plus VK_ADD_DRIVER_FILES', () => {
    const data = join(dir, 'data');
    mkdirSync(join(data, 'vulkan', 'icd.d'), { recursive: true });
    writeFileSync(join(data, 'vulkan', 'icd.d', 'gpu.json'), '{}');
    const empty = join(dir, 'xdg');
    mkdirSync(empty, { recursive: true });
    const env = { HOME: empty, XDG_CONFIG_HOME: empty, XDG_CONFIG_DIRS: empty, XDG_DATA_HOME: data, XDG_DATA_DIRS: empty };
    const found = vulkanIcdManifests(env);
    assert.ok(found.includes(join(data, 'vulkan', 'icd.d', 'gpu.json')), found.join(', '));
    const extra = join(dir, 'lone.json');
    assert.ok(vulkanIcdManifests({ ...env, VK_ADD_DRIVER_FILES: extra }).includes(extra));
  });
});
