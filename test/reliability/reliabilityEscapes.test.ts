// Hostile tensor names and metadata through every human-readable output: no terminal
// control reaches stdout, no line can be forged, Markdown tables keep their columns,
// and JSON keeps the exact strings.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { escapeMarkdownCell, escapeText, markdownCode } from '../../src/format/escape';

const dir = mkdtempSync(join(tmpdir(), 'tw-rel-esc-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const CLI = join(__dirname, 'cli.js');

function cli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, TW_CPU_WORKERS: '2' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

// Every character class the escaper must catch: C0, DEL, C1, separators, bidi controls.
const TITLE = 'a\x1b]0;pwned\x07.weight';
const CLEAR = 'b\x1b[2J.weight';
const FORGE = 'c\nerror[fake]: everything is fine.weight';
const BIDI = 'd\u202etxt.exe\u2066\u2028\x7f\x85\x9b.weight';
const PIPE = 'e|x`y.weight';
const NAMES = [TITLE, CLEAR, FORGE, BIDI, PIPE];
const UNSAFE = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069]/;

/** A 2-D F32 tensor per name (64 × 32, quantizable by q8_0), values shifted by `seed`; hostile metadata. */
function write(path: string, seed: number): void {
  const header: Record<string, unknown> = { __metadata__: { 'k\x1b[31m': 'v\x1b]0;t\x07\nerror[fake]: meta' } };
  const n = 64 * 32;
  const data = new Float32Array(n * NAMES.length);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 0.37 + seed) * 0.1;
  NAMES.forEach((name, i) => (header[name] = { dtype: 'F32', shape: [64, 32], data_offsets: [i * n * 4, (i + 1) * n * 4] }));
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const h = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + h.length + data.byteLength);
  out.writeBigUInt64LE(BigInt(h.length), 0);
  h.copy(out, 8);
  Buffer.from(data.buffer).copy(out, 8 + h.length);
  writeFileSync(path, out);
}

const A = join(dir, 'a.safetensors');
const B = join(dir, 'b.safetensors');
write(A, 0);
write(B, 1);

function assertClean(text: string, what: string): void {
  assert.doesNotMatch(text, UNSAFE, `${what}: a control character came through`);
  assert.ok(!text.split('\n').some((l) => l.startsWith('error[fake]')), `${what}: a forged line`);
}

it('escapeText writes every control, separator and bidi character as a visible escape', () => {
  assert.equal(escapeText('a\x1b[2Jb\x07\n\r\t\x00\x7f\x85\u2028\u202e\u2069'), 'a\\e[2Jb\\x07\\n\\r\\t\\x00\\x7f\\x85\\u2028\\u202e\\u2069');
  assert.equal(escapeText('model.layers.0.q_proj.weight — ünïcode ✓'), 'model.layers.0.q_proj.weight — ünïcode ✓');
  assert.equal(escapeMarkdownCell('a|b`c\n'), 'a\\|b\\`c\\n');
  // A code span fenced by more backticks than it holds: a backslash would not escape one.
  assert.equal(markdownCode('x`y|z'), '`` x`y\\|z ``');
  assert.equal(markdownCode('plain'), '`plain`');
});

it('inspect (the textconv driver) prints names and metadata escaped; --json keeps them exact', () => {
  const r = cli('inspect', A);
  assert.equal(r.code, 0, r.stderr);
  assertClean(r.stdout, 'inspect');
  assert.match(r.stdout, /k\\e\[31m: v\\e\]0;t\\x07\\nerror\[fake\]: meta/);
  assert.ok(r.stdout.includes('c\\nerror[fake]: everything is fine.weight'));
  const j = JSON.parse(cli('inspect', A, '--json').stdout);
  assert.deepEqual(j.tensors.map((t: { name: string }) => t.name).sort(), [...NAMES].sort());
  assert.deepEqual(j.metadata, { 'k\x1b[31m': 'v\x1b]0;t\x07\nerror[fake]: meta' });
});

it('stats prints names escaped', () => {
  const r = cli('stats', A, '--backend', 'cpu');
  assert.equal(r.code, 0, r.stderr);
  assertClean(r.stdout, 'stats');
  assert.ok(r.stdout.includes('a\\e]0;pwned\\x07.weight'));
  assert.ok(r.stdout.includes('d\\u202etxt.exe\\u2066\\u2028\\x7f\\x85\\x9b.weight'));
  const j = JSON.parse(cli('stats', A, '--backend', 'cpu', '--json').stdout);
  assert.deepEqual(j.tensors.map((t: { name: string }) => t.name).sort(), [...NAMES].sort());
});

it('diff text and Markdown print names escaped; a Markdown row keeps its columns', () => {
  const text = cli('diff', A, B, '--backend', 'cpu');
  assert.equal(text.code, 0, text.stderr);
  assertClean(text.stdout, 'diff');
  assert.ok(text.stdout.includes('b\\e[2J.weight'));
  const md = cli('diff', A, B, '--backend', 'cpu', '--markdown');
  assert.equal(md.code, 0, md.stderr);
  assertClean(md.stdout, 'diff --markdown');
  const header = md.stdout.split('\n').find((l) => l.startsWith('| tensor | shape'))!;
  // Columns are the cells between unescaped pipes.
  const columns = (l: string) => l.split(/(?<!\\)\|/).length;
  const rows = md.stdout.split('\n').filter((l) => l.startsWith('| ') && l.includes('.weight'));
  assert.equal(rows.length, NAMES.length);
  for (const row of rows) assert.equal(columns(row), columns(header), row);
  assert.ok(md.stdout.includes('`` e\\|x`y.weight ``'));
});

it('quantize reports names escaped', () => {
  const r = cli('quantize', A, join(dir, 'q.safetensors'), '--scheme', 'q8_0', '--format', 'safetensors', '--backend', 'cpu', '--verbose');
  assert.equal(r.code, 0, r.stderr);
  assertClean(r.stdout, 'quantize');
  assert.ok(r.stdout.includes('c\\nerror[fake]: everything is fine.weight: q8_0'));
});
