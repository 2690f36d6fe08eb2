import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import { convertCommand } from '../../src/cli/convert';
import { quantizeCommand } from '../../src/cli/quantize';
import { disposeBackends } from '../../src/compute/backend';
import { SCHEME_NAMES } from '../../src/compute/quant/schemes';
import { readGguf } from '../../src/format/gguf/reader';
import { NodeFileSource } from '../../src/format/source';
import { chooseTypes } from '../../src/pipelines/llamaFtype';
import { trainSentencePiece, writeBf16Model } from '../gguf/ftypeFixture';

let dir = '';
let folder = '';
let why = '';

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tw-ftype-cli-'));
  const sp = trainSentencePiece(dir);
  if (!sp.path) return void (why = sp.why!);
  folder = join(dir, 'llama');
  await writeBf16Model(folder, { arch: 'llama', vocab: 400, hidden: 256, heads: 4, kvHeads: 4, headDim: 64, ff: 288, layers: 4, tied: false, ropeTheta: 10000, rmsEps: 1e-5 }, sp.path);
});
after(async () => {
  await disposeBackends();
  await rm(dir, { recursive: true, force: true });
});

async function run(cmd: typeof quantizeCommand, argv: string[]): Promise<{ code: number; out: string }> {
  const stdout = new PassThrough();
  let out = '';
  stdout.on('data', (b) => (out += b));
  const code = await cmd.run(argv, { stdout, stderr: new PassThrough(), signal: new AbortController().signal });
  return { code, out };
}

async function typesOf(path: string): Promise<Map<string, string>> {
  const f = await readGguf(await NodeFileSource.open(path));
  try {
    const ft = f.metadata.get('general.file_type');
    return new Map([...f.tensors.map((t) => [t.name, t.type.name] as [string, string]), ['general.file_type', String(ft && 'value' in ft ? ft.value : '')]]);
  } finally {
    await f.source.close?.();
  }
}

test('quantize --ftype from a folder and from its BF16 GGUF, convert --ftype: the same types; fallbacks counted', async (t) => {
  if (why) return process.env.CI === 'true' ? assert.fail(why) : t.skip(why);
  const a = join(dir, 'a.gguf');
  const r = await run(quantizeCommand, [folder, a, '--ftype', 'q4_k_m', '--backend', 'cpu']);
  assert.equal(r.code, 0);
  assert.match(r.out, /blk\.3\.ffn_down\.weight: 288 columns not divisible by 256 \(required for q6_k\): falling back to q8_0/);
  assert.match(r.out, /blk\.0\.ffn_down\.weight: 288 columns not divisible by 256 \(required for q4_k\): falling back to q5_0/);
  assert.match(r.out, /warning: 4 of \d+ tensor\(s\) required fallback quantization/);
  const base = join(dir, 'bf16.gguf');
  assert.equal((await run(convertCommand, [folder, base, '--ftype', 'BF16'])).code, 0);
  const b = join(dir, 'b.gguf');
  assert.equal((await run(quantizeCommand, [base, b, '--ftype', 'Q4_K_M', '--backend', 'cpu'])).code, 0);
  const c = join(dir, 'c.gguf');
  assert.equal((await run(convertCommand, [folder, c, '--ftype', 'Q4_K_M'])).code, 0);
  const ta = await typesOf(a);
  assert.deepEqual(await typesOf(b), ta);
  assert.deepEqual(await typesOf(c), ta);
  assert.equal(ta.get('general.file_type'), '15');
  assert.equal(ta.get('output.weight'), 'Q6_K');
  assert.equal(ta.get('blk.0.attn_norm.weight'), 'F32');
  // 4 layers: use_more_bits picks layers 2 and 3 (i < n/8 is none; i ≥ 7n/8 is 3; (i − 0) % 3 = 2 is 2).
  assert.deepEqual([0, 1, 2, 3].map((l) => ta.get(`blk.${l}.attn_v.weight`)), ['Q4_K', 'Q4_K', 'Q6_K', 'Q6_K']);
  const d = join(dir, 'd.gguf');
  const o = await run(quantizeCommand, [folder, d, '--ftype', 'Q4_K_M', '--backend', 'cpu', '--tensor-type', 'attn_(q|k)=q8_0', '--output-tensor-type', 'f16', '--token-embedding-type', 'q5_k']);
  assert.match(o.out, /override: blk\.0\.attn_q\.weight: q4_k → q8_0/);
  const td = await typesOf(d);
  assert.equal(td.get('blk.3.attn_k.weight'), 'Q8_0');
  assert.equal(td.get('output.weight'), 'F16');
  assert.equal(td.get('token_embd.weight'), 'Q5_K');
});

test('--ftype refuses what does not go with it, with a usage line', async () => {
  const out = join(dir, 'x.gguf');
  await assert.rejects(run(quantizeCommand, [dir, out, '--ftype', 'Q4_K_X']), /--ftype must be one of Q4_0/);
  await assert.rejects(run(quantizeCommand, [dir, out, '--ftype', 'Q4_K_M', '--scheme', 'q4_k']), /exclude each other/);
  await assert.rejects(run(quantizeCommand, [dir, out, '--ftype', 'Q4_K_M', '--keep', 'x']), /--keep does not go with --ftype/);
  await assert.rejects(run(quantizeCommand, [dir, join(dir, 'x.safetensors'), '--ftype', 'Q4_K_M']), /OUT is a \.gguf/);
  await assert.rejects(run(quantizeCommand, [dir, out, '--ftype', 'Q4_K_M', '--tensor-type', 'attn_v']), /REGEX=TYPE/);
  await assert.rejects(run(quantizeCommand, [dir, out, '--ftype', 'Q4_K_M', '--tensor-type', 'attn_v=q9_k']), /unknown type 'q9_k'/);
  await assert.rejects(run(quantizeCommand, [dir, out, '--scheme', 'q4_k', '--tensor-type', 'a=q8_0']), /go with --ftype/);
  await assert.rejects(run(quantizeCommand, [dir, out, '--scheme', 'q4_k', '--imatrix', 'x.dat']), /go with --ftype/);
  await assert.rejects(run(convertCommand, [dir, out, '--ftype', 'F16', '--output-tensor-type', 'q8_0']), /need a llama\.cpp file type/);
  await assert.rejects(stat(out), /ENOENT/);
});

test('the type rules: a pattern RE2 cannot run is refused; --pure-like use of the base type; layer order by number', () => {
  const m = { arch: 'llama', nLayer: 12, nHead: 8, nHeadKv: 8, nExpert: 0 };
  const ts = Array.from({ length: 12 }, (_, l) => ({ name: `blk.${l}.attn_v.weight`, ne: [256, 256], type: 'F16' as const }));
  // Visited as blk.0, blk.1, …, blk.10, blk.11 (not 0, 1, 10, 11, 2 …): use_more_bits(i, 12) is i < 1, i ≥ 10, or (i − 1) % 3 = 2.
  const p = chooseTypes([...ts].reverse(), m, 'Q4_K_M');
  const six = ts.filter((t) => p.types.get(t.name) === 'Q6_K').map((t) => Number(t.name.split('.')[1]));
  assert.deepEqual(six, [0, 3, 6, 9, 10, 11]);
  assert.throws(() => chooseTypes(ts, m, 'Q4_K_M', { tensorTypes: [{ pattern: '(a)\\1', type: 'Q8_0' }] }), /--tensor-type '\(a\)\\1'/);
  const pure = chooseTypes(ts, m, 'Q4_K_M', { pure: true });
  assert.ok([...pure.types.values()].every((x) => x === 'Q4_K'));
});

test('the defaultScheme setting lists every scheme', () => {
  const pkg = JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { contributes: { configuration: { properties: Record<string, { enum?: string[] }> } } };
  const props = pkg.contributes.configuration.properties ?? Object.assign({}, ...(pkg.contributes.configuration as unknown as Array<{ properties: object }>).map((c) => c.properties));
  assert.deepEqual([...(props['tensorWorkbench.quantize.defaultScheme'].enum ?? [])].sort(), [...SCHEME_NAMES].sort());
});
