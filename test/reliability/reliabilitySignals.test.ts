// Signals: SIGINT and SIGTERM caught mid-write cancel the job, remove every temporary and
// leave the inputs as they were; SIGKILL leaves a temporary that the next run sweeps; the
// sweep removes only our own temporaries of dead runs.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { sweepStaleTemps, tempPathFor } from '../../src/format/outputs';
import { cli, cliAsync, llama, peftAdapter, snapshot, temps, type CliResult } from './harness';

let root = '';
// About 60 MB of BF16: long enough (hundreds of ms of writing) to be caught mid-write on a slow machine.
const MEDIUM = { hidden: 512, intermediate: 1376, layers: 4, vocab: 16000, heads: 8, kvHeads: 8 } as const;

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'tw-rel-sig-'));
  await llama(join(root, 'in'), MEDIUM);
  await llama(join(root, 'sh'), { ...MEDIUM, shards: 2 });
  await peftAdapter(join(root, 'ad'), 0.01, MEDIUM.hidden);
});

after(() => rmSync(root, { recursive: true, force: true }));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Our temporaries under `dir` that already hold data; [] when the folder does not exist. */
function writing(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return temps(dir).filter((n) => {
    try {
      return statSync(join(dir, n)).size > 0;
    } catch {
      return false;
    }
  });
}

/** Starts the CLI, waits until a temporary in `outDir` holds data (mid-write), then sends `sig`. */
async function interruptMidWrite(argv: string[], outDir: string, sig: NodeJS.Signals): Promise<{ r: CliResult; seen: string[] }> {
  const { child, done } = cliAsync(root, ...argv);
  let exited = false;
  void done.then(() => (exited = true));
  const deadline = Date.now() + 60_000;
  let seen: string[] = [];
  while (!exited && Date.now() < deadline) {
    seen = writing(join(root, outDir));
    if (seen.length > 0) break;
    await sleep(2);
  }
  assert.ok(seen.length > 0, `no temporary with data appeared in ${outDir} before the job ended`);
  child.kill(sig);
  return { r: await done, seen };
}

const JOBS: [string, string[], string][] = [
  ['convert to a file', ['convert', 'in', 'out/c.safetensors', '--dtype', 'f32'], 'out'],
  ['convert, sharded', ['convert', 'sh', 'outsh', '--dtype', 'f32', '--max-shard-size', '40MB'], 'outsh'],
  ['quantize to gguf', ['quantize', 'in', 'outq/m.gguf', '--scheme', 'q8_0', '--backend', 'cpu'], 'outq'],
  ['quantize to a safetensors folder, sharded input', ['quantize', 'sh', 'outqs', '--scheme', 'int8-channel', '--backend', 'cpu'], 'outqs'],
  ['merge', ['merge', 'in', 'ad', 'outm', '--backend', 'cpu', '--dtype', 'f32'], 'outm'],
];

describe('SIGINT and SIGTERM mid-write cancel, clean up and say so', () => {
  for (const [sig, code, message] of [
    ['SIGINT', 130, /^cancelled\n$/],
    ['SIGTERM', 143, /^cancelled \(SIGTERM\)\n$/],
  ] as const) {
    for (const [what, argv, outDir] of JOBS) {
      test(`${sig}: ${what}`, async () => {
        mkdirSync(join(root, outDir), { recursive: true });
        const inputs = snapshot(join(root, 'in'));
        const shards = snapshot(join(root, 'sh'));
        const { r, seen } = await interruptMidWrite(argv, outDir, sig);
        assert.equal(r.code, code, `exit ${r.code} (signal ${r.signal}); stderr: ${r.stderr}; caught ${seen.join(', ')}`);
        assert.match(r.stderr, message);
        assert.deepEqual(readdirSync(join(root, outDir)), [], `left in ${outDir}`);
        assert.deepEqual(snapshot(join(root, 'in')), inputs);
        assert.deepEqual(snapshot(join(root, 'sh')), shards);
        rmSync(join(root, outDir), { recursive: true, force: true });
      });
    }
  }
});

describe('SIGKILL leaves a temporary; the next run sweeps it and succeeds', () => {
  for (const [what, argv, outDir] of JOBS) {
    test(what, async () => {
      mkdirSync(join(root, outDir), { recursive: true });
      const { r } = await interruptMidWrite(argv, outDir, 'SIGKILL');
      assert.equal(r.signal, 'SIGKILL');
      const left = temps(join(root, outDir));
      assert.ok(left.length > 0, 'the killed run left no temporary: nothing to sweep');
      const bytes = left.reduce((s, n) => s + statSync(join(root, outDir, n)).size, 0);
      const again = cli(root, ...argv);
      assert.equal(again.code, 0, again.stderr);
      const mb = bytes / 1e6;
      const shown = mb < 10 ? mb.toFixed(1) : String(Math.round(mb));
      const line = `removed ${left.length} stale temporary file${left.length === 1 ? '' : 's'} (${shown} MB) from an interrupted run`;
      assert.ok(again.stderr.split('\n').includes(line), `expected '${line}' in: ${again.stderr}`);
      assert.deepEqual(temps(join(root, outDir)), []);
      rmSync(join(root, outDir), { recursive: true, force: true });
    });
  }
});

/** A temp name as tempPathFor makes it, with the writer's PID and start time replaced. */
function tempName(target: string, pid: number | string, start: string, host?: string): string {
  const m = /^\.(.+)\.tmp-(\d+)\.(\d+)\.([0-9a-f]{6})\.([0-9a-f]{12})$/.exec(basename(tempPathFor(target)))!;
  assert.ok(m, 'tempPathFor no longer names PID, start time and host');
  return `.${m[1]}.tmp-${pid}.${start}.${host ?? m[4]}.${m[5]}`;
}

function startTime(pid: number): string {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return s.slice(s.lastIndexOf(')') + 2).split(' ')[19];
}

test('the sweep removes only our temporaries of dead runs', async (t) => {
  if (!existsSync('/proc/self/stat')) {
    t.skip('no /proc: start times cannot be read here');
    return;
  }
  const dir = join(root, 'sweep');
  mkdirSync(dir);
  const live = spawn('sleep', ['60']);
  const dead = spawnSync('true');
  try {
    const livePid = live.pid!;
    const target = join(dir, 'model.safetensors');
    const names = {
      liveOther: tempName(target, livePid, startTime(livePid)),
      liveSelf: basename(tempPathFor(target)),
      dead: tempName(target, dead.pid!, '12345'),
      reused: tempName(target, livePid, String(Number(startTime(livePid)) + 1)),
      otherHost: tempName(target, dead.pid!, '12345', basename(tempPathFor(target)).includes('.abcdef.') ? 'fedcba' : 'abcdef'),
      oldStyle: '.model.safetensors.tmp-0123456789ab',
      foreign: 'model.safetensors.partial',
    };
    for (const n of Object.values(names)) writeFileSync(join(dir, n), 'x'.repeat(1000));
    mkdirSync(join(dir, tempName(target, dead.pid!, '999')));
    const r = await sweepStaleTemps([dir]);
    assert.deepEqual(r, { files: 2, bytes: 2000 });
    const left = new Set(readdirSync(dir));
    for (const k of ['liveOther', 'liveSelf', 'otherHost', 'oldStyle', 'foreign'] as const) assert.ok(left.has(names[k]), `${k} was removed`);
    for (const k of ['dead', 'reused'] as const) assert.ok(!left.has(names[k]), `${k} was kept`);
    assert.equal(left.size, 6, 'the folder with a temp name was removed');
  } finally {
    live.kill('SIGKILL');
  }
});

test('a run never sweeps the temporaries of a run that is still alive', async () => {
  const outDir = 'shared';
  mkdirSync(join(root, outDir), { recursive: true });
  const { child, done } = cliAsync(root, 'convert', 'in', `${outDir}/a.safetensors`, '--dtype', 'f32');
  let seen: string[] = [];
  for (let i = 0; i < 30_000 && seen.length === 0; i++) {
    seen = writing(join(root, outDir));
    if (seen.length === 0) await sleep(2);
  }
  assert.ok(seen.length > 0, 'the first run never started writing');
  // Frozen mid-write: alive, with its temporary on disk, while a second run writes beside it.
  child.kill('SIGSTOP');
  try {
    const second = cli(root, 'convert', 'in', `${outDir}/b.safetensors`, '--dtype', 'bf16');
    assert.equal(second.code, 0, second.stderr);
    assert.doesNotMatch(second.stderr, /stale temporary/);
    assert.ok(temps(join(root, outDir)).includes(seen[0]), 'the live run\'s temporary was removed');
  } finally {
    child.kill('SIGCONT');
  }
  const first = await done;
  assert.equal(first.code, 0, first.stderr);
  assert.deepEqual(temps(join(root, outDir)), []);
  assert.deepEqual(readdirSync(join(root, outDir)).sort(), ['a.safetensors', 'b.safetensors']);
  rmSync(join(root, outDir), { recursive: true, force: true });
});
