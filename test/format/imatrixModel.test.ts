import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { disposeBackends } from '../../src/compute/backend';
import { isFormatError } from '../../src/format/errors';
import { gguf, GGML_TYPE, writeGguf } from '../../src/format/gguf/writer';
import { readImatrix } from '../../src/format/imatrix';
import { imatrixReader, looksLikeImatrixPath } from '../../src/format/imatrixModel';
import type { SourceOpener } from '../../src/format/model';
import { openModel } from '../../src/format/openModel';
import { MemorySource } from '../../src/format/source';
import { ModelService } from '../../src/pipelines/viewer/modelService';

/**
 * llama.cpp importance matrices open as models: a legacy .dat file's entries become F32
 * vectors read in place (checked against the quantizer's own loader, an independent parser
 * of the same layout), the viewer's statistics name the hottest channel, a GGUF imatrix
 * under an .imatrix name opens as the GGUF it is, damaged files are one FormatError each,
 * and mutated files never crash or hang the reader.
 */

const dir = mkdtempSync(join(tmpdir(), 'tw-imatrix-model-'));
after(async () => {
  rmSync(dir, { recursive: true, force: true });
  await disposeBackends();
});

interface Entry {
  readonly name: string;
  readonly ncall: number;
  readonly values: Float32Array;
}

function legacy(entries: readonly Entry[], trailer?: { chunks: number; dataset: string }): Uint8Array {
  const parts: Buffer[] = [];
  const i32 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    parts.push(b);
  };
  i32(entries.length);
  for (const e of entries) {
    i32(Buffer.byteLength(e.name));
    parts.push(Buffer.from(e.name));
    i32(e.ncall);
    i32(e.values.length);
    parts.push(Buffer.from(e.values.buffer, e.values.byteOffset, e.values.byteLength));
  }
  if (trailer) {
    i32(trailer.chunks);
    i32(Buffer.byteLength(trailer.dataset));
    parts.push(Buffer.from(trailer.dataset));
  }
  return new Uint8Array(Buffer.concat(parts));
}

// Importance as real activations have it: mostly small, a few channels far above the rest.
const hot = (n: number, at: number, scale: number) => Float32Array.from({ length: n }, (_, i) => (i === at ? 900 : 1 + ((i * 7) % 5)) * scale);

const ENTRIES: Entry[] = [
  { name: 'blk.0.attn_q.weight', ncall: 10, values: hot(256, 37, 10) },
  { name: 'blk.0.ffn_down.weight', ncall: 10, values: hot(320, 300, 10) },
  // Two experts' columns one after the other.
  { name: 'blk.0.ffn_up_exps.weight', ncall: 4, values: hot(512, 260, 4) },
];

test('a legacy imatrix opens as a model: one F32 vector per entry, its call count and the dataset as metadata, the hottest channel first in the statistics', async () => {
  const path = join(dir, 'imatrix.dat');
  writeFileSync(path, legacy(ENTRIES, { chunks: 10, dataset: 'wiki.train.raw' }));
  const model = await openModel(path);
  const svc = new ModelService(model, { backend: () => 'cpu' });
  try {
    assert.deepEqual(model.tensors.map((t) => [t.name, t.dtype, t.shape]), ENTRIES.map((e) => [e.name, 'F32', [1, e.values.length]]));
    assert.equal(model.metadata['imatrix.dataset'], 'wiki.train.raw');
    assert.equal(model.metadata['imatrix.chunk_count'], '10');
    assert.equal(model.metadata['imatrix.ncall.blk.0.ffn_up_exps.weight'], '4');
    // The quantizer's loader divides by the call count: the model's values over ncall are its entries.
    const loaded = await readImatrix(path);
    for (const e of ENTRIES) {
      const t = model.tensor(e.name)!;
      const raw = new Uint8Array(t.byteLength);
      await model.read(t, 0, raw);
      const v = new Float32Array(raw.buffer);
      assert.deepEqual(v, e.values, e.name);
      assert.deepEqual(v.map((x) => Math.fround(x / e.ncall)), loaded.entries.get(e.name), e.name);
    }
    const s = (await svc.tensorStats('blk.0.ffn_down.weight', 16)).stats;
    const want = ENTRIES[1].values;
    assert.equal(s.count, 320);
    assert.equal(s.max, 9000);
    assert.ok(Math.abs(s.mean! - want.reduce((a, b) => a + b, 0) / 320) < 1e-9 * s.mean!);
    assert.deepEqual(s.topK[0], { index: 300, value: 9000 });
  } finally {
    await model.close();
  }
});

test('a GGUF imatrix named .imatrix opens as the GGUF it is; the names the reader claims', async () => {
  const path = join(dir, 'model.imatrix');
  const v = hot(256, 5, 1);
  await writeGguf(path, [['general.type', gguf.str('imatrix')], ['imatrix.chunk_count', gguf.u32(3)]], [
    { name: 'blk.0.attn_q.weight.in_sum2', dims: [256, 1], ggmlType: GGML_TYPE.F32, byteLength: 1024, data: new Uint8Array(v.buffer) },
    { name: 'blk.0.attn_q.weight.counts', dims: [1, 1], ggmlType: GGML_TYPE.F32, byteLength: 4, data: new Uint8Array(new Float32Array([3]).buffer) },
  ]);
  const model = await openModel(path);
  try {
    assert.deepEqual(model.tensors.map((t) => t.name), ['blk.0.attn_q.weight.in_sum2', 'blk.0.attn_q.weight.counts']);
    assert.equal(model.metadata['general.type'], 'imatrix');
  } finally {
    await model.close();
  }
  assert.deepEqual(['imatrix.dat', 'a/b/my-imatrix-v2.dat', 'x.imatrix', 'X.IMATRIX', 'data.dat', 'imatrix.dat.bak'].map(looksLikeImatrixPath), [true, true, true, true, false, false]);
});

function opener(bytes: Uint8Array): SourceOpener {
  return { open: async () => new MemorySource(bytes, 'x.imatrix'), readText: async () => '', list: async () => [] };
}

async function codeOf(bytes: Uint8Array): Promise<string> {
  try {
    const m = await imatrixReader.open('x.imatrix', opener(bytes));
    await m.close();
    return 'ok';
  } catch (e) {
    if (!isFormatError(e)) throw e;
    return e.code;
  }
}

test('damaged legacy files: one FormatError each, with the rule it breaks', async () => {
  const good = legacy(ENTRIES, { chunks: 10, dataset: 'wiki' });
  const i32At = (b: Uint8Array, at: number, v: number) => {
    const c = b.slice();
    new DataView(c.buffer).setInt32(at, v, true);
    return c;
  };
  const cases: Array<[string, Uint8Array, string]> = [
    ['good', good, 'ok'],
    ['no trailer', legacy(ENTRIES), 'ok'],
    ['cut inside the values', good.slice(0, 100), 'truncated'],
    ['cut inside a name', good.slice(0, 10), 'truncated'],
    ['no entries', i32At(good, 0, 0), 'unsupported'],
    ['a name length of a megabyte', i32At(good, 4, 1 << 20), 'unsupported'],
    ['a value count past the end', i32At(good, 8 + 19 + 4, 1 << 28), 'truncated'],
    ['a negative value count', i32At(good, 8 + 19 + 4, -1), 'shape_invalid'],
    ['the same name twice', legacy([ENTRIES[0], ENTRIES[0]]), 'duplicate_key'],
    ['bytes after the dataset', new Uint8Array([...good, 0]), 'trailing_bytes'],
    ['a name that is not UTF-8', legacy([{ ...ENTRIES[0], name: 'a\udc80' }]).map((b, i) => (i === 8 ? 0xff : b)), 'unsupported'],
  ];
  for (const [what, bytes, want] of cases) assert.equal(await codeOf(bytes), want, what);
});

test('mutated legacy files: only FormatError comes out, each open in bounded time', async () => {
  const seeds = [legacy(ENTRIES, { chunks: 10, dataset: 'wiki' }), legacy(ENTRIES.slice(0, 1))];
  let x = 0x1ca7;
  const rnd = (n: number) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
  // Each open of a few KiB taking longer than this is a hang.
  const LIMIT_MS = 2000;
  const codes = new Set<string>();
  for (let k = 0; k < 2000; k++) {
    const b = seeds[rnd(seeds.length)].slice(0, undefined);
    const kind = rnd(3);
    let bytes = b;
    if (kind === 0) bytes = b.slice(0, rnd(b.length));
    else for (let m = 0; m <= rnd(4); m++) b[rnd(b.length)] = rnd(256);
    if (kind === 2) new DataView(b.buffer).setInt32(4 * rnd(8), [0, -1, 1 << 30, 0x7fffffff][rnd(4)], true);
    const t0 = Date.now();
    codes.add(await codeOf(bytes));
    assert.ok(Date.now() - t0 < LIMIT_MS, `mutation ${k} took ${Date.now() - t0} ms`);
  }
  assert.ok(codes.has('ok') && codes.size >= 4, [...codes].join(' '));
});
