// Checkpoints written by real torch (python3 with torch), generated once per test process.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Expected {
  readonly dtype: string;
  readonly shape: number[];
  readonly sha256: string;
}

const SCRIPT = join(__dirname, '..', 'test', 'pickle', 'make_torch_fixtures.py');

let dir: string | undefined;

/** True when python3 can import torch. In CI a missing torch fails the suite instead of skipping it. */
export function torchAvailable(): boolean {
  const r = spawnSync('python3', ['-c', 'import torch'], { encoding: 'utf8' });
  if (r.status !== 0 && process.env.CI) assert.fail(`python3 with torch is required for these oracles (bash scripts/oracles.sh installs it): ${r.stderr}`);
  return r.status === 0;
}

/** The folder of generated checkpoints (each X with X.expected.json). */
export function torchFixtures(): string {
  if (dir) return dir;
  const d = mkdtempSync(join(tmpdir(), 'tw-torch-'));
  const r = spawnSync('python3', [SCRIPT, d], { encoding: 'utf8', maxBuffer: 16 << 20 });
  assert.equal(r.status, 0, `make_torch_fixtures.py failed: ${r.stderr}`);
  dir = d;
  return d;
}

export function expectedOf(path: string): Record<string, Expected> {
  assert.ok(existsSync(path + '.expected.json'), `no oracle output for ${path}`);
  return JSON.parse(readFileSync(path + '.expected.json', 'utf8')) as Record<string, Expected>;
}

export const FIXTURES = ['every_dtype.pt', 'every_dtype_legacy.pt', 'protocol4.pt', 'views.pt', 'views_legacy.pt', 'lightning.ckpt', 'pytorch_model.bin'];
