// `npm run bench [-- FILTER...]`: runs each case in its own child process, so that
// peak RSS is the case's own, and prints one JSON document on stdout.
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { BenchCase } from './case';
import { CASES } from './cases/index';

const workDir = resolve(process.env.TW_BENCH_DIR ?? join(__dirname, '..', '.bench'));

async function runChild(name: string): Promise<void> {
  const c = CASES.find((x) => x.name === name);
  if (!c) throw new Error(`no bench case ${name}`);
  mkdirSync(workDir, { recursive: true });
  const result = await c.run({ workDir, log: (m) => process.stderr.write(`[${name}] ${m}\n`) });
  // maxRSS is in kilobytes. A case that measures a process of its own (the CLI) reports that one's.
  const peakRssMB = process.resourceUsage().maxRSS / 1024;
  process.stdout.write(JSON.stringify({ peakRssMB: Math.round(peakRssMB), ...result }) + '\n');
}

type Figures = Record<string, unknown>;

/** Ratios to the peer case and the pass/fail of the case's goals, where the run has the figures. */
function compareWithPeer(c: BenchCase, results: Record<string, unknown>): void {
  const ours = results[c.name] as Figures;
  if (!ours || ours.error) return;
  const checks: boolean[] = [];
  if (typeof ours.rssPass === 'boolean') checks.push(ours.rssPass);
  if (c.gbpsGoal !== undefined && typeof ours.gbPerSecond === 'number') checks.push(ours.gbPerSecond >= c.gbpsGoal);
  const peer = c.peer ? (results[c.peer] as Figures | undefined) : undefined;
  // Without the peer's figures the speed goal is unknown, and so is the case's pass.
  if (c.speedupGoal !== undefined && (!peer || peer.error)) return;
  if (peer && !peer.error && typeof peer.seconds === 'number' && typeof ours.seconds === 'number') {
    const wall = Number((peer.seconds / ours.seconds).toFixed(2));
    ours.speedupWall = wall;
    if (typeof peer.cpuSeconds === 'number' && typeof ours.cpuSeconds === 'number') ours.speedupCpu = Number((peer.cpuSeconds / ours.cpuSeconds).toFixed(2));
    if (c.speedupGoal !== undefined) checks.push(wall >= c.speedupGoal);
  }
  if (checks.length) ours.pass = checks.every(Boolean);
}

function main(): void {
  const argv = process.argv.slice(2);
  const childIdx = argv.indexOf('--child');
  if (childIdx >= 0) {
    runChild(argv[childIdx + 1]).then(
      () => process.exit(0),
      (e) => {
        process.stderr.write(String((e as Error)?.stack ?? e) + '\n');
        process.exit(1);
      },
    );
    return;
  }
  const filters = argv.filter((a) => !a.startsWith('--'));
  const selected = CASES.filter((c) => filters.length === 0 || filters.some((f) => c.name.includes(f)));
  const results: Record<string, unknown> = {};
  for (const c of selected) {
    process.stderr.write(`bench ${c.name}…\n`);
    const r = spawnSync(process.execPath, ['--expose-gc', __filename, '--child', c.name], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      maxBuffer: 16 << 20,
    });
    const line = r.stdout.trim().split('\n').pop() ?? '';
    results[c.name] = r.status === 0 && line ? { description: c.description, ...JSON.parse(line) } : { error: `exit ${r.status}` };
  }
  for (const c of selected) compareWithPeer(c, results);
  const doc = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: require('node:os').cpus().length,
    cases: results,
  };
  process.stdout.write(JSON.stringify(doc, null, 2) + '\n');
}

main();
