// Errors keep their type across the worker boundary, quote numbers above 2^53 exactly,
// and print as one escaped line.
process.env.TW_CPU_WORKERS = '1';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, ftruncateSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, it } from 'node:test';
import { reportError } from '../../src/cli/reportError';
import { disposeBackends } from '../../src/compute/backend';
import { isFormatError } from '../../src/format/errors';
import { openModel } from '../../src/format/openModel';
import { stats } from '../../src/pipelines/stats';

const dir = mkdtempSync(join(tmpdir(), 'tw-rel-errors-'));
after(async () => {
  await disposeBackends();
  rmSync(dir, { recursive: true, force: true });
});
const CLI = join(__dirname, 'cli.js');

function cli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, TW_CPU_WORKERS: '2' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function sink(): { stream: Writable; text: () => string } {
  const parts: string[] = [];
  return { stream: new Writable({ write: (c, _e, cb) => (parts.push(String(c)), cb()) }), text: () => parts.join('') };
}

/** u64 LE header length (given, or the JSON's), the JSON, then `data` bytes. */
function raw(path: string, json: string, data = 0, length?: bigint): void {
  const h = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + h.length + data);
  out.writeBigUInt64LE(length ?? BigInt(h.length), 0);
  h.copy(out, 8);
  writeFileSync(path, out);
}

it('a read that comes up short fails as a FormatError with its code and file (twins get bytes read through the ByteSource)', async () => {
  const json = JSON.stringify({ w: { dtype: 'F32', shape: [1024], data_offsets: [0, 4096] } });
  const padded = json + ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const path = join(dir, 'short.safetensors');
  raw(path, padded, 4096);
  const model = await openModel(path);
  // 4,096 bytes of data expected, 100 bytes of file left: the read comes up short.
  truncateSync(path, 100);
  const err = await stats(model, { backend: 'cpu' }).then(
    () => undefined,
    (e: unknown) => e,
  );
  await model.close();
  assert.ok(isFormatError(err), `expected a FormatError, got ${String(err)}`);
  assert.equal(err.code, 'file_changed');
  assert.equal(err.file, path);
  assert.match(err.message, /ended at byte 100|changed/);
});

it('a file truncated while stats runs fails as file_changed: exit 2 and one error[file_changed] line', async () => {
  // One F32 tensor of 8 slices (16 MiB each), as a sparse file; one worker, so that slices wait their turn.
  const json = JSON.stringify({ w: { dtype: 'F32', shape: [32 << 20], data_offsets: [0, 128 << 20] } });
  const padded = json + ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const path = join(dir, 'big.safetensors');
  raw(path, padded);
  const fd = openSync(path, 'r+');
  ftruncateSync(fd, 8 + padded.length + (128 << 20));
  closeSync(fd);
  const model = await openModel(path);
  let truncated = false;
  const err = await stats(model, {
    backend: 'cpu',
    // After the first slice: the workers read the rest from a file that no longer holds it.
    progress: () => {
      if (!truncated) truncateSync(path, 8 + padded.length + 64);
      truncated = true;
    },
  }).then(
    () => undefined,
    (e: unknown) => e,
  );
  await model.close();
  assert.ok(truncated);
  assert.ok(isFormatError(err), `expected a FormatError, got ${String(err)}`);
  assert.equal(err.code, 'file_changed');
  const out = sink();
  assert.equal(reportError(err, out.stream), 2);
  const lines = out.text().split('\n').filter(Boolean);
  assert.equal(lines.length, 1);
  assert.match(lines[0], /^error\[file_changed\]: .*big\.safetensors/);
});

it('a file truncated between its header and its data: the CLI exits 2 with error[truncated]', () => {
  const path = join(dir, 'cut.safetensors');
  raw(path, JSON.stringify({ w: { dtype: 'F32', shape: [1024], data_offsets: [0, 4096] } }), 100);
  const r = cli('stats', path, '--backend', 'cpu');
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^error\[truncated\]: /);
});

it('numbers above 2^53 are quoted exactly in errors', () => {
  const cases: [string, string, bigint | undefined, RegExp][] = [
    ['end.safetensors', '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,18446744073709551615]}}', undefined, /^error\[overflow\]: .*data_offsets\[1\] 18446744073709551615 is above/],
    ['begin.safetensors', '{"a":{"dtype":"U8","shape":[4],"data_offsets":[9007199254740993,9007199254740997]}}', undefined, /data_offsets\[0\] 9007199254740993 is above/],
    ['shape.safetensors', '{"a":{"dtype":"U8","shape":[2,18446744073709551615],"data_offsets":[0,4]}}', undefined, /shape\[1\] 18446744073709551615 is above/],
    ['length.safetensors', '{}', 18446744073709551615n, /^error\[header_too_large\]: .*header length 18446744073709551615 is above/],
    ['length2.safetensors', '{}', 9007199254740993n, /header length 9007199254740993 is above/],
  ];
  for (const [name, json, length, re] of cases) {
    const path = join(dir, name);
    raw(path, json, 4, length);
    const r = cli('inspect', path);
    assert.equal(r.code, 2, name);
    assert.match(r.stderr, re, name);
    // The rounded neighbours a double would print.
    assert.doesNotMatch(r.stderr, /18446744073709552000|9007199254740992\b/, name);
  }
});

it('an error line escapes control characters from the file, so a tensor name cannot forge a line', () => {
  const path = join(dir, 'forge.safetensors');
  const name = 'x\nerror[fake]: all good\x1b]0;title\x07';
  raw(path, JSON.stringify({ [name]: { dtype: 'Q9', shape: [1], data_offsets: [0, 1] } }), 1);
  const r = cli('inspect', path);
  assert.equal(r.code, 2);
  const lines = r.stderr.split('\n').filter(Boolean);
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /^error\[dtype_unknown\]: .*x\\nerror\[fake\]: all good\\e\]0;title\\x07/);
  assert.doesNotMatch(r.stderr, /[\x00-\x09\x0b-\x1f\x7f]/);
});

