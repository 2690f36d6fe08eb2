import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
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
import { quantizeGgufFtype } from '../../src/pipelines/ftypeFromGguf';
import { reportMarkdown } from '../../src/pipelines/quantizeReport';
import type { QuantReport } from '../../src/pipelines/quantizeTypes';
import { toGguf } from '../../src/pipelines/toGguf';
import { trainSentencePiece, writeBf16Model } from './ftypeFixture';
import type { TinySpec } from './toGgufFixture';

/**
 * The error report of a llama.cpp file type: per tensor the type written and its error,
 * measured while writing, must equal the error recomputed from the file's bytes against
 * the input (dequantized independently here), and the total bits per weight the file's.
 * Asking for the report must not change a byte of the output.
 */

const SPEC: TinySpec = { arch: 'llama', vocab: 400, hidden: 256, heads: 8, kvHeads: 2, headDim: 32, ff: 320, layers: 2, tied: false, ropeTheta: 10000, rmsEps: 1e-5 };

let dir = '';
let folder = '';
let base = '';
let why = '';

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tw-ftype-report-'));
  const sp = trainSentencePiece(dir);
  if (!sp.path) return void (why = sp.why!);
  folder = join(dir, 'llama');
  await writeBf16Model(folder, SPEC, sp.path);
  base = join(dir, 'base-bf16.gguf');
  await toGguf({ input: folder, output: base, ftype: 'BF16' });
});
after(async () => {
  await disposeBackends();
  rmSync(dir, { recursive: true, force: true });
});

const skip = (t: { skip(m: string): void }) => (process.env.CI === 'true' ? assert.fail(why) : t.skip(why));

async function withGguf<T>(path: string, f: (g: GgufFile) => Promise<T>): Promise<T> {
  const g = await readGguf(await NodeFileSource.open(path));
  try {
    return await f(g);
  } finally {
    await g.source.close?.();
  }
}

async function values(g: GgufFile, name: string): Promise<Float32Array> {
  const t = g.tensors.find((x) => x.name === name)!;
  const bytes = new Uint8Array(t.byteLength);
  await readTensorBytes(g, t, 0, bytes);
  const out = new Float32Array(t.elements);
  if (t.type.name === 'BF16' || t.type.name === 'F32' || t.type.name === 'F16') decodeToF32(t.type.name, bytes, out, t.elements);
  else dequantize(t.type.name as GgmlTypeName, bytes, out);
  return out;
}

/** Checks every quantized tensor's type and RMSE / SNR against the file, and the totals' bits per weight. */
async function checkAgainstFile(q: QuantReport, out: string): Promise<void> {
  const x = await withGguf(base, async (g) => new Map(await Promise.all(g.tensors.map(async (t) => [t.name, await values(g, t.name)] as const))));
  await withGguf(out, async (g) => {
    let bits = 0;
    let n = 0;
    for (const t of g.tensors) (bits += t.byteLength * 8), (n += t.elements);
    assert.ok(Math.abs(q.totals.bitsPerWeight - bits / n) < 1e-12, `bits per weight ${q.totals.bitsPerWeight} vs the file's ${bits / n}`);
    let checked = 0;
    for (const r of q.tensors) {
      const t = g.tensors.find((z) => z.name === (r.outputName ?? r.name))!;
      if (r.action !== 'quantized') {
        assert.ok(['F32', 'F16', 'BF16'].includes(t.type.name), `${t.name} kept as ${t.type.name}`);
        continue;
      }
      assert.equal(r.scheme, t.type.name.toLowerCase(), t.name);
      const y = await values(g, t.name);
      const a = x.get(t.name)!;
      let e2 = 0;
      let x2 = 0;
      for (let i = 0; i < y.length; i++) (e2 += (a[i] - y[i]) ** 2), (x2 += a[i] ** 2);
      const rmse = Math.sqrt(e2 / y.length);
      // The twins sum in their own order, some partly in f32: equal to a few parts per billion.
      assert.ok(Math.abs(r.rmse! - rmse) <= 1e-7 * rmse, `${t.name} (${t.type.name}): RMSE ${r.rmse} reported, ${rmse} measured`);
      assert.ok(Math.abs(r.snrDb! - 10 * Math.log10(x2 / e2)) < 1e-6, `${t.name}: SNR`);
      checked++;
    }
    assert.ok(checked >= 14, `${checked} quantized tensors checked`);
  });
}

test('--ftype Q4_K_M --json from the BF16 GGUF: each tensor its type and its measured error, the file\u2019s bits per weight; the bytes do not change', async (t) => {
  if (why) return skip(t);
  const out = join(dir, 'q4km.gguf');
  const stdout = new PassThrough();
  let text = '';
  stdout.on('data', (b) => (text += b));
  const code = await quantizeCommand.run([base, out, '--ftype', 'Q4_K_M', '--json', '--backend', 'cpu'], { stdout, stderr: new PassThrough(), signal: new AbortController().signal }).catch((e: unknown) => reportError(e, process.stderr));
  assert.equal(code, 0);
  const q = JSON.parse(text) as QuantReport;
  assert.equal(q.fileType, 'Q4_K_M');
  assert.ok(new Set(q.tensors.map((x) => x.scheme)).has('q6_k'), 'the mix');
  await checkAgainstFile(q, out);
  const plain = join(dir, 'q4km-plain.gguf');
  const r = await quantizeGgufFtype({ input: base, output: plain, ftype: 'Q4_K_M' }, { backend: 'cpu' });
  assert.equal(r.report, undefined, 'no error pass unless asked');
  assert.ok(readFileSync(plain).equals(readFileSync(out)), 'the report changes no byte');
  assert.match(reportMarkdown(q), /^# Quantization report: Q4_K_M \(gguf\)$/m);
  assert.match(reportMarkdown(q), /^\| blk\.0\.attn_q\.weight \| BF16 \[256, 256\] \| q4_k \| /m);
});

test('a folder to Q8_0 and Q5_K_M (the converter\u2019s own Q8_0 path and the twins): the report matches the file; --verbose prints a line per tensor', async (t) => {
  if (why) return skip(t);
  for (const ftype of ['Q8_0', 'Q5_K_M'] as const) {
    const out = join(dir, `${ftype}.gguf`);
    const r = await toGguf({ input: folder, output: out, ftype, report: true }, { backend: 'cpu' });
    assert.equal(r.report!.fileType, ftype);
    await checkAgainstFile(r.report!, out);
  }
  const stdout = new PassThrough();
  let text = '';
  stdout.on('data', (b) => (text += b));
  const out = join(dir, 'v.gguf');
  assert.equal(await quantizeCommand.run([base, out, '--ftype', 'Q4_K_S', '--verbose', '--backend', 'cpu'], { stdout, stderr: new PassThrough(), signal: new AbortController().signal }), 0);
  assert.match(text, /^blk\.1\.ffn_down\.weight: q5_0, RMSE \d\.\d{6}, max\|err\| \d\.\d{6}, SNR \d+\.\d dB, cosine 0\.\d{6}$/m);
  assert.match(text, /^blk\.0\.attn_norm\.weight: F32, not quantized$/m);
  assert.match(text, /^error over quantized tensors: RMSE .*; \d\.\d{4} bits per weight overall, \d\.\d{4} in quantized tensors$/m);
  assert.match(text, /^wrote .*v\.gguf: llama, \d+ tensors \(.*\), Q4_K_S, \d\.\d{4} bits per weight, \d+ bytes$/m);
});
