import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import type { Command, CommandIO } from '../../src/cli/command';
import { inspectCommand } from '../../src/cli/inspect';
import { statsCommand } from '../../src/cli/stats';
import { openModel } from '../../src/format/openModel';
import { storageOf, typeNameOf } from '../../src/format/model';
import { stats } from '../../src/pipelines/stats';

/**
 * GGUF files written by gguf-py open through `openModel` like any model: names, ggml type
 * names, row-major shapes (gguf-py's `ne` reversed), metadata and tokenizer; and `stats` on
 * their tensors equals numpy's on gguf-py's dequantized values (gguf.quants is tested
 * against libggml). Needs gguf-py and numpy (scripts/oracles.sh); fails without them under CI.
 */

interface PyStats {
  type: string;
  shape: number[];
  count: number;
  min: number;
  max: number;
  mean: number;
  std: number;
  zeros: number;
  absMax: number;
}

let dir = '';
let oracle: { tensors: Record<string, PyStats>; ne: Record<string, number[]> };
let unavailable: string | false = false;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'tw-gguf-model-'));
  const r = spawnSync('python3', [join(__dirname, '..', 'test', 'gguf', 'ggufModel_fixtures.py'), dir], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) {
    unavailable = `gguf-py fixtures failed (${r.error?.message ?? r.stderr.trim().split('\n').pop()}); run scripts/oracles.sh`;
    if (process.env.CI === 'true') assert.fail(unavailable);
    return;
  }
  oracle = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

async function run(cmd: Command, argv: string[]): Promise<string> {
  const stdout = new PassThrough();
  const chunks: Buffer[] = [];
  stdout.on('data', (c: Buffer) => chunks.push(c));
  const io: CommandIO = { stdout, stderr: new PassThrough(), signal: new AbortController().signal };
  assert.equal(await cmd.run(argv, io), 0);
  return Buffer.concat(chunks).toString('utf8');
}

function close(actual: number | null, want: number, rel: number, what: string): void {
  assert.ok(actual !== null && Math.abs(actual - want) <= rel * Math.max(Math.abs(want), 1e-30), `${what}: ${actual} vs ${want}`);
}

test('a gguf-py file opens as a Model: type names, row-major shapes, blocks as storage', async (t) => {
  if (unavailable) return t.skip(unavailable);
  const m = await openModel(join(dir, 'model.gguf'));
  try {
    assert.deepEqual(m.tensors.map((x) => x.name).sort(), Object.keys(oracle.tensors).sort());
    for (const x of m.tensors) {
      const o = oracle.tensors[x.name];
      assert.equal(typeNameOf(x), o.type, x.name);
      assert.deepEqual(x.shape, o.shape, x.name);
      assert.deepEqual(x.shape, [...oracle.ne[x.name]].reverse(), x.name);
      assert.equal(x.numel, o.count);
      const s = storageOf(x);
      if (['F32', 'F16', 'BF16'].includes(o.type)) assert.deepEqual(s, { kind: 'dtype', dtype: o.type });
      else assert.equal(s.kind === 'blocks' && s.type, o.type);
    }
    assert.equal(m.metadata['general.architecture'], 'llama');
    assert.equal(m.metadata['tokenizer.ggml.tokens'], '[1000 × string]');
    assert.equal(m.metadata['tokenizer.ggml.bos_token_id'], '1');
    assert.ok(m.notes?.some((n) => n === 'tokenizer llama (pre default): 1000 tokens, merges absent; BOS 1 "<s>", EOS 2 "</s>"; chat template 50 chars'), String(m.notes));
    assert.ok(m.notes?.some((n) => n === 'architecture llama: layers 2, embedding 512, heads 8'), String(m.notes));
  } finally {
    await m.close();
  }
});

test("stats on every tensor equals numpy's on gguf-py's dequantized values", async (t) => {
  if (unavailable) return t.skip(unavailable);
  for (const path of [join(dir, 'model.gguf'), join(dir, 'split-00003-of-00004.gguf')]) {
    const m = await openModel(path);
    try {
      assert.equal(m.tensors.length, Object.keys(oracle.tensors).length, path);
      // Once through the batched small-tensor path (the default) and once through slices.
      for (const smallTensorBytes of [undefined, 0]) {
        const r = await stats(m, { backend: 'cpu', smallTensorBytes });
        for (const s of r.tensors) {
          const o = oracle.tensors[s.name];
          const what = `${path} ${s.name} (${smallTensorBytes ?? 'batched'})`;
          assert.equal(s.dtype, o.type, what);
          assert.equal(s.count, o.count, what);
          assert.equal(s.finite, o.count, what);
          assert.equal(s.zeros, o.zeros, `${what}: zeros`);
          assert.equal(s.min, o.min, `${what}: min`);
          assert.equal(s.max, o.max, `${what}: max`);
          assert.equal(s.absMax, o.absMax, `${what}: absMax`);
          close(s.mean, o.mean, 1e-9, `${what}: mean`);
          close(s.std, o.std, 1e-9, `${what}: std`);
        }
      }
    } finally {
      await m.close();
    }
  }
});

test('inspect and stats on the command line: ggml type names, row-major shapes, bits per weight, type mix, tokenizer', async (t) => {
  if (unavailable) return t.skip(unavailable);
  const doc = JSON.parse(await run(inspectCommand, [join(dir, 'split-00001-of-00004.gguf'), '--json']));
  assert.equal(doc.files.length, 4);
  const byName = new Map<string, { dtype: string; shape: number[]; byteLength: number }>(doc.tensors.map((x: { name: string }) => [x.name, x]));
  for (const [name, o] of Object.entries(oracle.tensors)) {
    assert.equal(byName.get(name)?.dtype, o.type, name);
    assert.deepEqual(byName.get(name)?.shape, o.shape, name);
  }
  const bytes = doc.tensors.reduce((s: number, x: { byteLength: number }) => s + x.byteLength, 0);
  close(doc.bitsPerWeight, (8 * bytes) / doc.parameters.total, 1e-12, 'bitsPerWeight');
  const text = await run(inspectCommand, [join(dir, 'model.gguf')]);
  assert.match(text, new RegExp(`${doc.bitsPerWeight.toFixed(2)} bits per weight; F32 8\\.1%, F16 8\\.0%`));
  assert.match(text, /Q6_K 4\.0%/);
  assert.match(text, /tokenizer llama \(pre default\): 1000 tokens, merges absent; BOS 1 "<s>", EOS 2 "<\/s>"/);
  const st = JSON.parse(await run(statsCommand, [join(dir, 'model.gguf'), '--json', '--backend', 'cpu']));
  const q4k = st.tensors.find((x: { name: string }) => x.name === 'k.q4_k');
  assert.equal(q4k.dtype, 'Q4_K');
  assert.deepEqual(q4k.shape, oracle.tensors['k.q4_k'].shape);
  assert.equal(q4k.max, oracle.tensors['k.q4_k'].max);
});
