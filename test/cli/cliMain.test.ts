// The CLI as a user runs it: `node dist/cli.js …` in a child process. The JSON
// is checked against the files' headers parsed here by hand (the spec's layout),
// and against the fixture generator's own tensor list.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, openSync, readSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeLlama, llamaLayout, resolveSpec, numelOf } from '../fixtures/llama';

const CLI = join(__dirname, 'cli.js');

function cli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** u64 LE header length, then the JSON object, read straight from the file. */
function header(path: string): { n: number; obj: Record<string, any> } {
  const fd = openSync(path, 'r');
  try {
    const len = Buffer.alloc(8);
    readSync(fd, len, 0, 8, 0);
    const n = Number(len.readBigUInt64LE(0));
    const buf = Buffer.alloc(n);
    readSync(fd, buf, 0, n, 8);
    return { n, obj: JSON.parse(buf.toString('utf8')) };
  } finally {
    closeSync(fd);
  }
}

let dir = '';
const spec = resolveSpec({ layers: 4, seed: 5 });

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tw-cli-'));
  await writeLlama(join(dir, 'sharded'), { ...spec, shards: 2 });
  await writeLlama(join(dir, 'single'), spec);
  writeFileSync(join(dir, 'short.safetensors'), Buffer.from([1, 2, 3]));
  // A header that claims 64 bytes of data where the file has 16.
  const json = Buffer.from('{"t":{"dtype":"F32","shape":[16],"data_offsets":[0,64]}}');
  const f = Buffer.alloc(8 + json.length + 16);
  f.writeBigUInt64LE(BigInt(json.length));
  json.copy(f, 8);
  writeFileSync(join(dir, 'truncated.safetensors'), f);
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

test('--help lists the commands and exits 0; no command exits 2', () => {
  const h = cli('--help');
  assert.equal(h.code, 0);
  assert.match(h.stdout, /^ {2}inspect /m);
  assert.match(h.stdout, /^ {2}convert /m);
  const none = cli();
  assert.equal(none.code, 2);
  const sub = cli('convert', '--help');
  assert.equal(sub.code, 0);
  assert.match(sub.stdout, /--max-shard-size/);
});

test('bad input exits 2 with exactly one error[CODE] line on stderr and nothing on stdout', () => {
  const cases: [string[], string, string?][] = [
    [['frobnicate'], 'usage'],
    [['inspect'], 'usage'],
    [['inspect', 'a', 'b'], 'usage'],
    [['inspect', '--bogus', 'x'], 'usage'],
    [['inspect', join(dir, 'missing.safetensors')], 'not_found', 'missing.safetensors'],
    [['inspect', join(dir, 'short.safetensors')], 'file_too_small', 'short.safetensors'],
    [['inspect', join(dir, 'truncated.safetensors'), '--json'], 'truncated', "tensor 't'"],
    [['convert', join(dir, 'single'), join(dir, 'o.safetensors'), '--dtype', 'int3'], 'usage'],
    [['convert', join(dir, 'single'), join(dir, 'o'), '--max-shard-size', 'lots'], 'usage'],
    [['convert', join(dir, 'single'), join(dir, 'o.safetensors'), '--max-shard-size', '1MB'], 'unsupported', 'o.safetensors'],
    [['convert', join(dir, 'truncated.safetensors'), join(dir, 'o.safetensors')], 'truncated', 'truncated.safetensors'],
  ];
  for (const [args, code, mention] of cases) {
    const r = cli(...args);
    assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}, stderr ${r.stderr}`);
    assert.equal(r.stdout, '', args.join(' '));
    const lines = r.stderr.split('\n');
    assert.equal(lines.length, 2, `one line: ${JSON.stringify(r.stderr)}`);
    assert.equal(lines[1], '');
    assert.match(lines[0], new RegExp(`^error\\[${code}\\]: \\S`), args.join(' '));
    assert.doesNotMatch(lines[0], /\bat .*\.js:\d+/, 'no stack trace');
    if (mention) assert.ok(lines[0].includes(mention), `${lines[0]} names ${mention}`);
  }
  // Nothing was written by any of them.
  assert.deepEqual(readdirSync(dir).sort(), ['sharded', 'short.safetensors', 'single', 'truncated.safetensors']);
});

test('inspect --json: exact shape, header order, absolute offsets, totals', () => {
  for (const target of [join(dir, 'sharded'), join(dir, 'sharded', 'model.safetensors.index.json'), join(dir, 'single', 'model.safetensors')]) {
    const r = cli('inspect', target, '--json');
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.deepEqual(Object.keys(j), ['path', 'files', 'metadata', 'tensors', 'parameters', 'bytes', 'bitsPerWeight']);
    assert.equal(j.bitsPerWeight, (8 * j.bytes) / j.parameters.total);
    assert.deepEqual(j.metadata, { format: 'pt' });
    // Expected tensors: each file's header, in header (key) order, files in shard order.
    const expected: any[] = [];
    for (const f of j.files) {
      assert.deepEqual(Object.keys(f), ['path', 'bytes', 'headerBytes']);
      assert.equal(f.bytes, statSync(f.path).size);
      const h = header(f.path);
      assert.equal(f.headerBytes, h.n);
      for (const [name, e] of Object.entries(h.obj)) {
        if (name === '__metadata__') continue;
        expected.push({ name, dtype: e.dtype, shape: e.shape, file: f.path, byteOffset: 8 + h.n + e.data_offsets[0], byteLength: e.data_offsets[1] - e.data_offsets[0] });
      }
    }
    assert.deepEqual(j.tensors, expected);
    assert.match(j.files[0].path, j.files.length === 2 ? /model-00001-of-00002\.safetensors$/ : /model\.safetensors$/);
    // Totals from the generator's own layout, not from the reader.
    const layout = llamaLayout(spec);
    const params = layout.reduce((s, t) => s + numelOf(t.shape), 0);
    assert.equal(j.tensors.length, layout.length);
    assert.deepEqual(j.parameters, { total: params, byDtype: { BF16: params } });
    assert.equal(j.bytes, params * 2);
  }
});

test('inspect text: totals, dtype table, memory at five formats, folded module tree', () => {
  const r = cli('inspect', join(dir, 'sharded'));
  assert.equal(r.code, 0, r.stderr);
  const params = llamaLayout(spec).reduce((s, t) => s + numelOf(t.shape), 0);
  assert.ok(r.stdout.includes(`(${params})`), 'exact parameter count');
  assert.match(r.stdout, /^ {2}BF16 +\d+ tensors/m);
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(2)} MiB`;
  for (const [fmt, bits] of [['FP32', 32], ['BF16', 16], ['FP8', 8], ['Q8_0', 8.5], ['Q4_0', 4.5]] as const) {
    const line = r.stdout.split('\n').find((l) => l.trimStart().startsWith(fmt + ' ') && l.includes('bits/weight'));
    assert.ok(line, fmt);
    const want = Math.ceil((params * bits) / 8);
    assert.ok(line!.includes(want < 2 ** 20 ? `${(want / 1024).toFixed(2)} KiB` : mib(want)), `${line} shows ${want} bytes`);
  }
  assert.match(r.stdout, /layers\.\{0\.\.3\} ×4 +each 9 tensors/);
  assert.match(r.stdout, /q_proj\.weight +BF16 \[64, 64\]/);
  assert.equal((r.stdout.match(/q_proj/g) ?? []).length, 1, 'layers are folded, not listed');
});

test('inspect never modifies its input', () => {
  const p = join(dir, 'single', 'model.safetensors');
  const before = readFileSync(p);
  const st = statSync(p);
  assert.equal(cli('inspect', p).code, 0);
  assert.deepEqual(readFileSync(p), before);
  assert.equal(statSync(p).mtimeMs, st.mtimeMs);
});
