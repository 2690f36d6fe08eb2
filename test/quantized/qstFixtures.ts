// Quantized checkpoints and their reference dequantizations, written by make_quantized_fixtures.py
// (python3 with torch; Transformers' own dequantizers too when it is installed), once per process.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RefStats {
  readonly count: number;
  readonly finite: number;
  readonly nan: number;
  readonly posInf: number;
  readonly negInf: number;
  readonly zeros: number;
  readonly min: number | null;
  readonly max: number | null;
  readonly mean: number | null;
  readonly std: number | null;
}

export interface ExpectedLogical {
  readonly scheme: string;
  readonly shape: number[];
  readonly parts: string[];
  /** File of the reference's float32 values. */
  readonly ref: string;
  /** File of the values that Transformers' own dequantizer gives, where it has one. */
  readonly lib?: string;
  readonly stats: RefStats;
}

export interface Expected {
  readonly logical: Record<string, ExpectedLogical>;
  readonly raw: string[];
}

const SCRIPT = join(__dirname, '..', 'test', 'quantized', 'make_quantized_fixtures.py');

export const CASES = ['fp8_block', 'fp8_block_disagree', 'fp8_ct', 'mxfp4', 'nvfp4_ct', 'nvfp4_modelopt', 'ct_pack', 'gptq', 'gptq_v2_8bit', 'awq', 'unrecognised'];

let made: { dir: string; transformers: boolean } | undefined;

/** True when python3 can import torch; in CI a missing torch fails instead of skipping. */
export function torchAvailable(): boolean {
  const r = spawnSync('python3', ['-c', 'import torch'], { encoding: 'utf8' });
  if (r.status !== 0 && process.env.CI) assert.fail(`python3 with torch is required for these oracles (bash scripts/oracles.sh installs it): ${r.stderr}`);
  return r.status === 0;
}

/** Whether python3 has Transformers (and accelerate), whose FP8 and MXFP4 code the block-scheme tests compare with; required in CI. */
export function transformersAvailable(): boolean {
  const r = spawnSync('python3', ['-c', 'import transformers, accelerate'], { encoding: 'utf8' });
  if (r.status !== 0 && process.env.CI) assert.fail(`python3 with transformers and accelerate is required for these oracles (bash scripts/oracles.sh installs them): ${r.stderr}`);
  return r.status === 0;
}

/** The folder of generated cases, and whether Transformers' references ran. */
export function quantFixtures(): { dir: string; transformers: boolean } {
  if (made) return made;
  const dir = mkdtempSync(join(tmpdir(), 'tw-quantized-'));
  const r = spawnSync('python3', [SCRIPT, dir], { encoding: 'utf8', maxBuffer: 16 << 20 });
  assert.equal(r.status, 0, `make_quantized_fixtures.py failed: ${r.stderr}`);
  made = { dir, ...(JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { transformers: boolean }) };
  return made;
}

export function expectedOf(caseDir: string): Expected {
  return JSON.parse(readFileSync(join(caseDir, 'expected.json'), 'utf8')) as Expected;
}

export function f32File(path: string): Float32Array {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

/** The index of the first value whose bits differ (NaNs of any payload count as equal), or -1. */
export function firstBitDifference(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < a.length; i++) {
    if (ua[i] !== ub[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return i;
  }
  return -1;
}
