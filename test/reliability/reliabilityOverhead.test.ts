// Per-tensor overhead: stats and diff of a 100,000-tensor file (13 MB of data) in seconds
// and a few hundred MB, where they took 41.6 s / 1.5 GB and 10.5 s. Bounds are on CPU
// time (every thread), so a loaded machine does not make them flake, and on peak RSS.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { disposeBackends } from '../../src/compute/backend';
import { openModel } from '../../src/format/openModel';
import { stats } from '../../src/pipelines/stats';
import { rng, writeSafetensorsFile } from '../compute/reference';
import { writeManyTensors } from './manyTensors';
import type { DType } from '../../src/format/dtypes';

// The goal is 2 s and 300 MB for each command (the stats.many and diff.many bench cases track
// it as the user sees it). On a 2-core machine running other suites beside this one, the CLI
// measured 1.6–2.1 CPU-s and 250–290 MB; a loaded machine collects later, so the RSS bound
// leaves 50 MB above the goal for that, and the CPU bound twice the measured time. Either
// still fails long before a return of the old per-tensor cost (41 CPU-s, 1.5 GB).
const MAX_CPU_SECONDS = 4;
const MAX_RSS_MB = 350;

const dir = mkdtempSync(join(tmpdir(), 'tw-rel-many-'));
const A = join(dir, 'a.safetensors');
const B = join(dir, 'b.safetensors');
const RUN = join(dir, 'run.js');
before(async () => {
  await writeManyTensors(A, { seed: 1 });
  await writeManyTensors(B, { seed: 2 });
  // Runs the CLI in this child and reports its own CPU time and peak RSS (workers included).
  writeFileSync(
    RUN,
    `const { main } = require(${JSON.stringify(join(__dirname, 'cli.js'))});
const t0 = Date.now();
main(process.argv.slice(2)).then((code) => {
  const u = process.resourceUsage();
  process.stderr.write('\\nUSAGE ' + JSON.stringify({ code, wall: (Date.now() - t0) / 1000, cpu: (u.userCPUTime + u.systemCPUTime) / 1e6, rssMB: u.maxRSS / 1024 }) + '\\n');
  process.exitCode = code;
});`,
  );
});
after(async () => {
  await disposeBackends();
  rmSync(dir, { recursive: true, force: true });
});

function measured(...args: string[]): { code: number; wall: number; cpu: number; rssMB: number; stdout: string } {
  const r = spawnSync(process.execPath, [RUN, ...args], { encoding: 'utf8', maxBuffer: 256 << 20, env: { ...process.env, TW_CPU_WORKERS: '2' } });
  const line = r.stderr.split('\n').find((l) => l.startsWith('USAGE '));
  assert.ok(line, r.stderr);
  return { ...JSON.parse(line.slice(6)), stdout: r.stdout };
}

it(`stats of 100,000 tensors: under ${MAX_CPU_SECONDS} CPU-s and ${MAX_RSS_MB} MB`, (t) => {
  const m = measured('stats', A, '--backend', 'cpu');
  t.diagnostic(`stats: ${m.wall} s, ${m.cpu.toFixed(2)} CPU-s, ${m.rssMB.toFixed(0)} MB`);
  assert.equal(m.code, 0);
  assert.match(m.stdout, /^100000 tensors, .*all healthy$/m);
  assert.ok(m.cpu < MAX_CPU_SECONDS, `stats took ${m.cpu} CPU-s (${m.wall} s)`);
  assert.ok(m.rssMB < MAX_RSS_MB, `stats peaked at ${m.rssMB} MB`);
});

it(`diff of two 100,000-tensor files: under ${MAX_CPU_SECONDS} CPU-s and ${MAX_RSS_MB} MB`, (t) => {
  const m = measured('diff', A, B, '--backend', 'cpu');
  t.diagnostic(`diff: ${m.wall} s, ${m.cpu.toFixed(2)} CPU-s, ${m.rssMB.toFixed(0)} MB`);
  assert.equal(m.code, 0);
  assert.match(m.stdout, /100000 of 100000 compared tensors changed/);
  assert.ok(m.cpu < MAX_CPU_SECONDS, `diff took ${m.cpu} CPU-s (${m.wall} s)`);
  assert.ok(m.rssMB < MAX_RSS_MB, `diff peaked at ${m.rssMB} MB`);
});

it('small tensors scanned many to a task give exactly the statistics of one task each', async () => {
  const next = rng(7);
  const dtypes: DType[] = ['F32', 'F64', 'F16', 'BF16', 'I8', 'U8', 'I16', 'U16', 'I32', 'U32', 'I64', 'F8_E4M3', 'F8_E5M2', 'BOOL', 'F4'];
  const tensors: { name: string; dtype: DType; shape: number[]; bytes: Uint8Array }[] = [];
  const BITS: Partial<Record<DType, number>> = { F32: 32, F64: 64, F16: 16, BF16: 16, I8: 8, U8: 8, I16: 16, U16: 16, I32: 32, U32: 32, I64: 64, F8_E4M3: 8, F8_E5M2: 8, BOOL: 8, F4: 4 };
  dtypes.forEach((dtype, d) => {
    for (const n of [0, 1, 7, 32, 1000]) {
      const count = dtype === 'F4' ? n + (n % 2) : n;
      const bytes = new Uint8Array((count * BITS[dtype]!) / 8);
      // Random bit patterns: NaN, ±Inf, subnormals and zeros all occur in the float dtypes.
      for (let i = 0; i < bytes.length; i++) bytes[i] = dtype === 'BOOL' ? next() & 1 : next() & 0xff;
      tensors.push({ name: `t${d}.${n}`, dtype, shape: [count], bytes });
    }
    // Every value equal: the log edges need repair, so the lookup takes the full table.
    const same = new Uint8Array(16 * (BITS[dtype]! / 8)).fill(dtype === 'BOOL' ? 1 : 0x3c);
    tensors.push({ name: `t${d}.same`, dtype, shape: [16], bytes: dtype === 'F4' ? same.subarray(0, 8) : same });
  });
  const path = join(dir, 'mixed.safetensors');
  writeSafetensorsFile(path, tensors);
  const model = await openModel(path);
  try {
    const batched = await stats(model, { backend: 'cpu' });
    const alone = await stats(model, { backend: 'cpu', smallTensorBytes: 0 });
    assert.equal(batched.tensors.length, tensors.length);
    assert.deepStrictEqual(batched.tensors, alone.tensors);
    assert.deepStrictEqual(batched.health, alone.health);
  } finally {
    await model.close();
  }
});
