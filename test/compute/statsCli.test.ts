import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, it } from 'node:test';
import { statsCommand } from '../../src/cli/stats';
import { pack, writeSafetensorsFile } from './reference';

const dir = mkdtempSync(join(tmpdir(), 'tw-stats-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function sink(): { stream: Writable; text: () => string } {
  const parts: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      parts.push(String(chunk));
      cb();
    },
  });
  return { stream, text: () => parts.join('') };
}

async function run(argv: string[]): Promise<{ code: number; out: string }> {
  const out = sink();
  const err = sink();
  const code = await statsCommand.run(argv, { stdout: out.stream, stderr: err.stream, signal: new AbortController().signal });
  return { code, out: out.text() };
}

// BF16 patterns: 0x3f80 = 1, 0x4000 = 2, 0x7fc0 = NaN, 0x7f80 = +Inf, 0 = 0.
const file = join(dir, 'm.safetensors');
writeSafetensorsFile(file, [
  { name: 'a.healthy', dtype: 'BF16', shape: [4], bytes: pack(16, [0x3f80, 0x4000, 0xbf80, 0x4000]) },
  { name: 'b.zeros', dtype: 'BF16', shape: [3], bytes: pack(16, [0, 0x8000, 0]) },
  { name: 'c.broken', dtype: 'BF16', shape: [2, 2], bytes: pack(16, [0x3f80, 0x7fc0, 0x7f80, 0x4000]) },
]);

it('the text table lists unhealthy tensors first and names their problems', async () => {
  const { code, out } = await run([file, '--backend', 'cpu']);
  assert.equal(code, 0);
  const rows = out.split('\n').filter((l) => /^[abc]\./.test(l));
  assert.deepEqual(rows.map((r) => r.split(/\s+/)[0]), ['c.broken', 'b.zeros', 'a.healthy']);
  assert.match(rows[0], /1 NaN, 1 \+Inf/);
  assert.match(rows[1], /all zero/);
  assert.match(rows[2], /ok$/);
  assert.match(out, /1 with NaN\/Inf, 1 all zero/);
});

it('--json has the report shape; --tensor and --bins narrow it', async () => {
  const { out } = await run([file, '--json', '--tensor', 'a.healthy', '--bins', '3', '--backend', 'cpu']);
  const r = JSON.parse(out);
  assert.equal(r.backend, 'cpu');
  assert.equal(r.bytesRead, 8);
  assert.deepEqual(r.health, { nonFiniteTensors: [], allZeroTensors: [] });
  const [t] = r.tensors;
  assert.deepEqual(Object.keys(t), ['name', 'dtype', 'shape', 'count', 'finite', 'nan', 'posInf', 'negInf', 'zeros', 'nearZero', 'min', 'max', 'absMax', 'mean', 'std', 'outliers', 'histogram', 'logHistogram', 'topK']);
  // Values −1, 1, 2, 2 over [−1, 2] in 3 bins: [−1, 0), [0, 1), [1, 2].
  assert.deepEqual(t.histogram, { min: -1, max: 2, counts: [1, 0, 3] });
  assert.equal(t.mean, 1);
  assert.equal(t.std, Math.sqrt(1.5));
  assert.deepEqual(t.topK, [{ index: 1, value: 2 }, { index: 3, value: 2 }, { index: 0, value: 1 }, { index: 2, value: -1 }]);
});

it('bad arguments are usage errors', async () => {
  await assert.rejects(run([file, '--bins', '0']), /--bins must be/);
  await assert.rejects(run([file, '--backend', 'tpu']), /--backend must be/);
  await assert.rejects(run([file, '--tensor', 'nope', '--backend', 'cpu']), (e: Error & { code?: string }) => e.code === 'not_found');
});
