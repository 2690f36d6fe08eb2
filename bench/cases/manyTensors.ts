import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeManyTensors } from '../../test/reliability/manyTensors';
import type { BenchCase, BenchContext, BenchResult } from '../case';

// The goal for a 100,000-tensor file (13 MB of F32 data): under 2 s and 300 MB peak RSS,
// as the user sees it, for the CLI's default (text) output of stats and diff.
const TARGET_SECONDS = 2;
const TARGET_RSS_MB = 300;

async function files(ctx: BenchContext): Promise<[string, string]> {
  const a = join(ctx.workDir, 'many-100k-a.safetensors');
  const b = join(ctx.workDir, 'many-100k-b.safetensors');
  if (!existsSync(a)) await writeManyTensors(a, { seed: 1 });
  if (!existsSync(b)) await writeManyTensors(b, { seed: 2 });
  return [a, b];
}

/**
 * Runs the CLI (dist/cli.js, beside this bundle) in a process of its own, so that its peak RSS
 * is the command's alone (workers included; not this process's, which made the files).
 * Wall time is from spawn to exit, Node's start included, as `time` would show it.
 */
function runCli(ctx: BenchContext, args: string[], expect: RegExp): BenchResult {
  const script = join(ctx.workDir, 'many-cli-run.js');
  writeFileSync(
    script,
    `const { main } = require(${JSON.stringify(join(__dirname, 'cli.js'))});
main(process.argv.slice(2)).then((code) => {
  const u = process.resourceUsage();
  process.stderr.write('\\nUSAGE ' + JSON.stringify({ code, cpu: (u.userCPUTime + u.systemCPUTime) / 1e6, rssMB: u.maxRSS / 1024 }) + '\\n');
  process.exitCode = code;
});`,
  );
  const t0 = performance.now();
  // The table (~12 MB) is read here, where it costs the measured process nothing.
  const r = spawnSync(process.execPath, [script, ...args], { encoding: 'utf8', maxBuffer: 256 << 20 });
  const seconds = (performance.now() - t0) / 1000;
  const line = r.stderr.split('\n').find((l) => l.startsWith('USAGE '));
  if (!line) throw new Error(`the CLI reported no usage: ${r.stderr.slice(-2000)}`);
  const usage = JSON.parse(line.slice(6)) as { code: number; cpu: number; rssMB: number };
  if (usage.code !== 0 || !expect.test(r.stdout)) throw new Error(`unexpected CLI result (exit ${usage.code}): ${r.stdout.slice(-500)}`);
  return {
    seconds: +seconds.toFixed(3),
    cpuSeconds: +usage.cpu.toFixed(3),
    peakRssMB: Math.round(usage.rssMB),
    target: `< ${TARGET_SECONDS} s, ≤ ${TARGET_RSS_MB} MB`,
    pass: seconds < TARGET_SECONDS && usage.rssMB <= TARGET_RSS_MB,
  };
}

export const manyTensorsCases: BenchCase[] = [
  {
    name: 'stats.many',
    description: `\`tensor-workbench stats\` (text table) of a 100,000-tensor F32 file, in its own process; target < ${TARGET_SECONDS} s and ≤ ${TARGET_RSS_MB} MB peak RSS`,
    async run(ctx) {
      const [a] = await files(ctx);
      return runCli(ctx, ['stats', a], /^100000 tensors, .*all healthy$/m);
    },
  },
  {
    name: 'diff.many',
    description: `\`tensor-workbench diff\` (text report) of two 100,000-tensor F32 files that differ in every tensor, in its own process; target < ${TARGET_SECONDS} s and ≤ ${TARGET_RSS_MB} MB peak RSS`,
    async run(ctx) {
      const [a, b] = await files(ctx);
      return runCli(ctx, ['diff', a, b], /100000 of 100000 compared tensors changed/);
    },
  },
];
