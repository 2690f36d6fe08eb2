import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import { quantizeCommand } from '../../src/cli/quantize';
import { reportError } from '../../src/cli/reportError';
import { disposeBackends } from '../../src/compute/backend';
import { dequantize } from '../../src/compute/dequant/dequant.cpu';
import { decodeToF32 } from '../../src/format/decode';
import { readGguf, readTensorBytes, type GgufFile } from '../../src/format/gguf/reader';
import type { GgmlTypeName } from '../../src/format/gguf/types';
import { NodeFileSource } from '../../src/format/source';
import { planBpw, type BpwTensor } from '../../src/pipelines/bpwPlan';
import { quantizeGgufFtype } from '../../src/pipelines/ftypeFromGguf';
import { typeBytes } from '../../src/pipelines/ggufQuantStream';
import type { ChosenType } from '../../src/pipelines/llamaFtype';
import { planTargetBpw } from '../../src/pipelines/targetBpw';
import { toGguf } from '../../src/pipelines/toGguf';
import { trainSentencePiece, writeBf16Model } from './ftypeFixture';
import { loadLlamaCpp } from './llamaCppOracle';
import type { TinySpec } from './toGgufFixture';

/**
 * `quantize --target-bpw`: the plan fits the budget (measured on the written file), a larger
 * budget never plans more error, the estimate of a tensor sampled whole equals the error
 * measured from the file's own bytes (so the objective is the real one, imatrix-weighted when
 * one is given), a tensor the imatrix calls important gets more bits, --dry-run writes
 * nothing, bad values are one usage line, and llama.cpp loads and runs the file.
 */

// ffn 320 wide: ffn_down rows are not a multiple of 256, so only the 32-block types fit them.
const SPEC: TinySpec = { arch: 'llama', vocab: 400, hidden: 256, heads: 8, kvHeads: 2, headDim: 32, ff: 320, layers: 2, tied: false, ropeTheta: 10000, rmsEps: 1e-5 };

let dir = '';
let base = '';
let why = '';

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tw-target-bpw-'));
  const sp = trainSentencePiece(dir);
  if (!sp.path) return void (why = sp.why!);
  await writeBf16Model(join(dir, 'llama'), SPEC, sp.path);
  base = join(dir, 'base-bf16.gguf');
  await toGguf({ input: join(dir, 'llama'), output: base, ftype: 'BF16' });
});
after(async () => {
  await disposeBackends();
  rmSync(dir, { recursive: true, force: true });
});

const skip = (t: { skip(m: string): void }) => (process.env.CI === 'true' ? assert.fail(why) : t.skip(why));

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (b) => (out += b));
  stderr.on('data', (b) => (err += b));
  // As main() does: a thrown error becomes its one line and exit code.
  const code = await quantizeCommand.run(argv, { stdout, stderr, signal: new AbortController().signal }).catch((e: unknown) => reportError(e, stderr));
  await new Promise((f) => setImmediate(f));
  return { code, out, err };
}

async function withGguf<T>(path: string, f: (g: GgufFile) => Promise<T>): Promise<T> {
  const g = await readGguf(await NodeFileSource.open(path));
  try {
    return await f(g);
  } finally {
    await g.source.close?.();
  }
}

/** Tensor-data bits per weight of a GGUF, from its tensor table. */
const fileBpw = (path: string) =>
  withGguf(path, async (g) => {
    let bits = 0;
    let n = 0;
    for (const t of g.tensors) (bits += t.byteLength * 8), (n += t.elements);
    return bits / n;
  });

async function values(g: GgufFile, name: string): Promise<Float32Array> {
  const t = g.tensors.find((x) => x.name === name)!;
  const bytes = new Uint8Array(t.byteLength);
  await readTensorBytes(g, t, 0, bytes);
  const out = new Float32Array(t.elements);
  if (t.type.name === 'BF16' || t.type.name === 'F32' || t.type.name === 'F16') decodeToF32(t.type.name, bytes, out, t.elements);
  else dequantize(t.type.name as GgmlTypeName, bytes, out);
  return out;
}

// Synthetic tensors whose error halves per bit, scaled per tensor: the greedy's choices are easy to reason about.
function synthetic(scales: number[]): BpwTensor[] {
  const types: ChosenType[] = ['Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K', 'Q8_0'];
  return scales.map((s, i) => ({
    name: `t${i}`, numel: 256 * 256 * (i + 1), signal: s * 100,
    // Q4_K is made dominated by Q3_K (more bits, more error): the hull must skip it.
    candidates: types.map((type) => ({ type, sse: s * 256 * 256 * (i + 1) * 2 ** -(typeBytes(type, 256) * 8 / 256) * (type === 'Q4_K' && i === 0 ? 100 : 1) })),
  }));
}

test('the budget solver: fits, is monotone, skips dominated types, counts fixed tensors, refuses the impossible', () => {
  const tensors: BpwTensor[] = [...synthetic([1, 10, 0.1, 3]), { name: 'norm', numel: 256, signal: 0, candidates: [], fixed: 'F32', why: 'not quantized' }];
  let last = Infinity;
  for (const target of [2.7, 3, 3.5, 4, 4.5, 5, 5.5, 6, 7, 8.5, 12]) {
    const p = planBpw(tensors, target);
    assert.ok(p.bitsPerWeight <= target + 1e-12, `${target}: ${p.bitsPerWeight}`);
    assert.ok(p.sse <= last, `${target}: error ${p.sse} above ${last}`);
    last = p.sse;
    assert.equal(p.choices.find((c) => c.name === 'norm')!.type, 'F32');
    assert.notEqual(p.choices.find((c) => c.name === 't0')!.type, 'Q4_K');
    const bits = p.choices.reduce((s, c) => s + typeBytes(c.type, c.numel) * 8, 0);
    assert.equal(bits, p.bits);
  }
  // The largest-scale tensor gets at least as many bits as the smallest at a middle budget.
  const mid = planBpw(tensors, 4.5);
  const bpw = (n: string) => mid.choices.find((c) => c.name === n)!.bits / mid.choices.find((c) => c.name === n)!.numel;
  assert.ok(bpw('t1') > bpw('t2'), `t1 ${bpw('t1')} vs t2 ${bpw('t2')}`);
  assert.equal(planBpw(tensors, 12).choices.filter((c) => c.type === 'Q8_0').length, 4);
  assert.throws(() => planBpw(tensors, 2), /below the smallest plan, 2\.6\d+ bits per weight/);
});

test('--target-bpw 4.8: the plan is printed, the written file fits it, its types are the plan and 1-D tensors stay F32', async (t) => {
  if (why) return skip(t);
  const out = join(dir, 'b48.gguf');
  const r = await run([base, out, '--target-bpw', '4.8', '--backend', 'cpu']);
  assert.equal(r.code, 0, r.err);
  const plan = await planTargetBpw({ input: base, targetBpw: 4.8 }, { backend: 'cpu' });
  for (const c of plan.plan.choices) assert.match(r.out, new RegExp(`^${c.name.replace(/\./g, '\\.')} +${c.type.toLowerCase()} `, 'm'));
  assert.match(r.out, /^plan: 4\.\d{4} bits per weight \(target 4\.8\)/m);
  const bpw = await fileBpw(out);
  assert.ok(bpw <= 4.8, `written ${bpw}`);
  // Within the greedy's granularity: the next step would not have fitted, and steps here are at most one tensor's few bits per weight.
  assert.ok(bpw > 4.3, `written ${bpw}`);
  await withGguf(out, async (g) => {
    for (const x of g.tensors) {
      assert.equal(x.type.name, plan.types.get(x.name), x.name);
      if (x.ne.length === 1) assert.equal(x.type.name, 'F32', x.name);
      if (x.name.includes('ffn_down')) assert.ok(['Q4_0', 'IQ4_NL', 'Q5_0', 'Q5_1', 'Q8_0'].includes(x.type.name), `${x.name} ${x.type.name}`);
    }
    assert.ok(new Set(g.tensors.map((x) => x.type.name)).size >= 3, 'a mix of types');
  });
  console.log(`# --target-bpw 4.8: ${bpw.toFixed(4)} bits per weight written; ${plan.plan.relError.toExponential(3)} estimated relative error`);
});

test('overrides are kept and counted in the budget: --output-tensor-type, --token-embedding-type, --tensor-type', async (t) => {
  if (why) return skip(t);
  const out = join(dir, 'over.gguf');
  const r = await run([base, out, '--target-bpw', '4.5', '--output-tensor-type', 'q8_0', '--token-embedding-type', 'q2_k', '--tensor-type', 'attn_v=q6_k', '--backend', 'cpu']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^output\.weight +q8_0 +8\.500 +kept \(--output-tensor-type\)$/m);
  assert.match(r.out, /^token_embd\.weight +q2_k +2\.625 +kept \(--token-embedding-type\)$/m);
  assert.match(r.out, /^blk\.1\.attn_v\.weight +q6_k +6\.56\d +kept \(--tensor-type attn_v\)$/m);
  assert.ok((await fileBpw(out)) <= 4.5);
  await withGguf(out, async (g) => {
    const type = (n: string) => g.tensors.find((x) => x.name === n)!.type.name;
    assert.deepEqual([type('output.weight'), type('token_embd.weight'), type('blk.0.attn_v.weight'), type('blk.1.attn_v.weight')], ['Q8_0', 'Q2_K', 'Q6_K', 'Q6_K']);
  });
});

test('a larger budget never plans more error, and every plan fits its budget', async (t) => {
  if (why) return skip(t);
  let last = Infinity;
  for (const target of [3, 3.5, 4, 4.8, 5.5, 6.5, 8.5]) {
    const { plan } = await planTargetBpw({ input: base, targetBpw: target }, { backend: 'cpu' });
    assert.ok(plan.bitsPerWeight <= target, `${target}: ${plan.bitsPerWeight}`);
    assert.ok(plan.sse <= last, `${target}: ${plan.sse} > ${last}`);
    last = plan.sse;
  }
});

/** Σ w·(x − q)² of one tensor between the BF16 input and the written file, w from `im` (1 without). */
async function measured(out: string, name: string, im?: Float32Array): Promise<number> {
  const x = await withGguf(base, (g) => values(g, name));
  return withGguf(out, async (g) => {
    const y = await values(g, name);
    const cols = g.tensors.find((z) => z.name === name)!.ne[0];
    let s = 0;
    for (let i = 0; i < x.length; i++) s += (im ? im[i % cols] : 1) * (x[i] - y[i]) ** 2;
    return s;
  });
}

test('the estimate of a tensor sampled whole is the error measured from the written bytes', async (t) => {
  if (why) return skip(t);
  const out = join(dir, 'b5.gguf');
  const { plan, ftype, types } = await planTargetBpw({ input: base, targetBpw: 5 }, { backend: 'cpu' });
  await quantizeGgufFtype({ input: base, output: out, ftype, types }, { backend: 'cpu' });
  // 256 × 256 = 65,536 values: the whole tensor is the sample.
  for (const name of ['blk.0.attn_q.weight', 'blk.1.attn_output.weight']) {
    const c = plan.choices.find((x) => x.name === name)!;
    const got = await measured(out, name);
    assert.ok(Math.abs(c.sse! - got) <= 1e-9 * got, `${name} ${c.type}: estimated ${c.sse}, measured ${got}`);
  }
});

/** A legacy imatrix: 1 for every column of every 2-D tensor, `boost` for one tensor. */
function writeImatrix(path: string, names: Map<string, number>, boosted: string, boost: number): Map<string, Float32Array> {
  const parts: Buffer[] = [];
  const i32 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    parts.push(b);
  };
  const entries = new Map<string, Float32Array>();
  i32(names.size);
  for (const [name, cols] of names) {
    const v = new Float32Array(cols).map((_, i) => (name === boosted ? boost : 1) * (1 + (i % 5)));
    entries.set(name, v);
    i32(Buffer.byteLength(name));
    parts.push(Buffer.from(name));
    i32(1);
    i32(cols);
    parts.push(Buffer.from(v.buffer));
  }
  i32(7);
  i32(4);
  parts.push(Buffer.from('wiki'));
  writeFileSync(path, Buffer.concat(parts));
  return entries;
}

test('with an imatrix the weighted error is minimized: an important tensor gets more bits; the keys llama-quantize records are written', async (t) => {
  if (why) return skip(t);
  const names = await withGguf(base, async (g) => new Map(g.tensors.filter((x) => x.ne.length === 2 && x.name !== 'token_embd.weight').map((x) => [x.name, x.ne[0]])));
  const flat = join(dir, 'flat.dat');
  const hot = join(dir, 'hot.dat');
  writeImatrix(flat, names, '', 1);
  const im = writeImatrix(hot, names, 'blk.1.attn_q.weight', 1e4);
  const bitsOf = (p: Awaited<ReturnType<typeof planTargetBpw>>, n: string) => {
    const c = p.plan.choices.find((x) => x.name === n)!;
    return c.bits / c.numel;
  };
  const a = await planTargetBpw({ input: base, targetBpw: 4, imatrix: flat }, { backend: 'cpu' });
  const b = await planTargetBpw({ input: base, targetBpw: 4, imatrix: hot }, { backend: 'cpu' });
  assert.ok(bitsOf(b, 'blk.1.attn_q.weight') > bitsOf(a, 'blk.1.attn_q.weight'), `${bitsOf(a, 'blk.1.attn_q.weight')} → ${bitsOf(b, 'blk.1.attn_q.weight')}`);
  assert.ok(bitsOf(b, 'blk.1.attn_q.weight') > bitsOf(b, 'blk.0.attn_q.weight'));
  const out = join(dir, 'hot.gguf');
  const r = await run([base, out, '--target-bpw', '4', '--imatrix', hot, '--backend', 'cpu']);
  assert.equal(r.code, 0, r.err);
  // llama-quantize's "did not find weights for token_embd.weight": the one quantized tensor the imatrix lacks.
  assert.deepEqual(r.out.split('\n').filter((l) => l.startsWith('note: ')), ['note: token_embd.weight: no importance weights in the imatrix; quantized without them']);
  // The plan's error is the imatrix-weighted one, and equals what the written file has.
  const c = b.plan.choices.find((x) => x.name === 'blk.1.attn_q.weight')!;
  const got = await measured(out, c.name, im.get(c.name));
  assert.ok(Math.abs(c.sse! - got) <= 1e-9 * got, `estimated ${c.sse}, measured ${got}`);
  await withGguf(out, async (g) => {
    const kv = (k: string) => g.metadata.get(k) as { type: string; value: unknown } | undefined;
    assert.deepEqual([kv('quantize.imatrix.file')?.type, kv('quantize.imatrix.file')?.value], ['string', hot]);
    assert.equal(kv('quantize.imatrix.dataset')?.value, 'wiki');
    assert.deepEqual([kv('quantize.imatrix.entries_count')?.type, kv('quantize.imatrix.entries_count')?.value], ['i32', names.size]);
    assert.deepEqual([kv('quantize.imatrix.chunks_count')?.type, kv('quantize.imatrix.chunks_count')?.value], ['i32', 7]);
    const keys = [...g.metadata.keys()];
    assert.ok(keys.indexOf('quantize.imatrix.file') > keys.indexOf('general.file_type'), 'after general.file_type, as llama-quantize writes them');
  });
  // The plain file-type path records them too; without an imatrix there are none.
  const q = join(dir, 'q4km-im.gguf');
  await quantizeGgufFtype({ input: base, output: q, ftype: 'Q4_K_M', imatrix: hot }, { backend: 'cpu' });
  await withGguf(q, async (g) => assert.equal((g.metadata.get('quantize.imatrix.entries_count') as { value: unknown }).value, names.size));
  await withGguf(join(dir, 'b48.gguf'), async (g) => assert.equal(g.metadata.get('quantize.imatrix.file'), undefined));
});

test('--dry-run prints the plan and writes nothing', async (t) => {
  if (why) return skip(t);
  const out = join(dir, 'dry.gguf');
  const r = await run([base, out, '--target-bpw', '4.8', '--dry-run', '--backend', 'cpu']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^plan: /m);
  assert.equal(existsSync(out), false);
  const j = await run([base, '--target-bpw', '5', '--dry-run', '--json', '--backend', 'cpu']);
  assert.equal(j.code, 0, j.err);
  const p = JSON.parse(j.out) as { bitsPerWeight: number; choices: Array<{ name: string; type: string }>; ftype: string };
  assert.ok(p.bitsPerWeight <= 5 && p.choices.length > 10 && p.ftype, j.out.slice(0, 200));
});

test('bad --target-bpw values and combinations: one error[usage] line, exit 2, nothing written', async (t) => {
  if (why) return skip(t);
  const out = join(dir, 'bad.gguf');
  const cases: Array<[string[], RegExp]> = [
    [['--target-bpw', '0'], /--target-bpw must be a number from 1 to 32 bits per weight, not '0'/],
    [['--target-bpw', '99'], /not '99'/],
    [['--target-bpw', 'abc'], /not 'abc'/],
    [['--target-bpw', '4.8', '--ftype', 'Q4_K_M'], /--target-bpw and --ftype exclude each other/],
    [['--target-bpw', '4.8', '--scheme', 'q4_k'], /--target-bpw and --scheme exclude each other/],
    [['--target-bpw', '4.8', '--pure'], /--pure does not go with --target-bpw/],
    [['--dry-run'], /--dry-run goes with --target-bpw/],
  ];
  for (const [args, want] of cases) {
    const r = await run([base, out, ...args]);
    assert.equal(r.code, 2, args.join(' '));
    assert.match(r.err, /^error\[usage\]: [^\n]*\n$/, args.join(' '));
    assert.match(r.err, want);
  }
  const low = await run([base, out, '--target-bpw', '2', '--backend', 'cpu']);
  assert.equal(low.code, 2);
  assert.match(low.err, /^error\[unsupported\]: .*--target-bpw 2 is below the smallest plan, \d\.\d{3} bits per weight[^\n]*\n$/);
  assert.equal(existsSync(out), false);
});

test('the --target-bpw file loads and runs in llama.cpp', async (t) => {
  if (why) return skip(t);
  const l = await loadLlamaCpp();
  if (typeof l === 'string') return process.env.CI === 'true' ? assert.fail(l) : t.skip(l);
  try {
    const m = await l.load(join(dir, 'b48.gguf'));
    try {
      const probs = await m.probabilities([5, 17, 99, 3]);
      assert.equal(probs.length, 4);
      for (const p of probs) {
        let s = 0;
        for (const v of p.values()) s += v;
        assert.ok(Math.abs(s - 1) < 1e-3, `probabilities sum to ${s}`);
      }
    } finally {
      await m.dispose();
    }
  } finally {
    await l.dispose();
  }
});
