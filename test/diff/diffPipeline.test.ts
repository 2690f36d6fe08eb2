import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Model } from '../../src/format/model';
import { diff, deltaHistogram, type DiffReport, type TensorDiff } from '../../src/pipelines/diff';
import { detectPrefixMapping } from '../../src/pipelines/diffMatch';
import { CancelledError } from '../../src/core/job';
import { writeSafetensors } from '../../src/format/writer';
import { forEachBackend } from '../compute/backends';
import { decodeRef, elementBits, encode, normals, openFile, rng, TempDir, writeModel, type FloatDType, type TestTensor } from './diffFixtures';

// Small chunks, so that even these small tensors stream in many chunks and exercise ordering.
const CHUNK = 1024;

function t(name: string, dtype: FloatDType, shape: number[], values: ArrayLike<number>): TestTensor {
  return { name, dtype, shape, values };
}

/** The float64 oracle of one tensor pair, from the stored bytes. */
function oracle(a: TestTensor, b: TestTensor) {
  const ea = encode(a.dtype, a.values);
  const eb = encode(b.dtype, b.values);
  const x = decodeRef(a.dtype, ea);
  const y = decodeRef(b.dtype, eb);
  let aa = 0, bb = 0, ab = 0, dd = 0, sad = 0, max = 0, maxI = -1, nDiff = 0;
  for (let i = 0; i < x.length; i++) {
    const d = y[i] - x[i];
    aa += x[i] * x[i];
    bb += y[i] * y[i];
    ab += x[i] * y[i];
    dd += d * d;
    sad += Math.abs(d);
    if (Math.abs(d) > max) {
      max = Math.abs(d);
      maxI = i;
    }
    if (elementBits(a.dtype, ea, i) !== elementBits(b.dtype, eb, i)) nDiff++;
  }
  return {
    relL2: aa > 0 ? Math.sqrt(dd) / Math.sqrt(aa) : null,
    absL2: Math.sqrt(dd),
    cosine: aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : null,
    maxAbsDiff: max,
    maxFlat: maxI,
    meanAbsDiff: sad / x.length,
    changedFraction: nDiff / x.length,
    changedElements: nDiff,
  };
}

function close(got: number | null, want: number | null, tol: number, what: string): void {
  if (want === null) return assert.equal(got, null, what);
  assert.ok(got !== null && Math.abs(got - want) <= tol * Math.max(1, Math.abs(want)), `${what}: ${got} vs ${want}`);
}

function checkTensor(got: TensorDiff, a: TestTensor, b: TestTensor, tol: number): void {
  const o = oracle(a, b);
  assert.equal(got.identical, false, `${a.name} identical`);
  close(got.relL2, o.relL2, tol, `${a.name} relL2`);
  close(got.absL2, o.absL2, tol, `${a.name} absL2`);
  close(got.cosine, o.cosine, tol, `${a.name} cosine`);
  assert.equal(got.maxAbsDiff, Math.fround(o.maxAbsDiff), `${a.name} maxAbsDiff`);
  const flat = got.maxAbsIndex!.reduce((s, i, d) => s * a.shape[d] + i, 0);
  assert.equal(flat, o.maxFlat, `${a.name} maxAbsIndex`);
  close(got.meanAbsDiff, o.meanAbsDiff, tol, `${a.name} meanAbsDiff`);
  assert.equal(got.changedElements, o.changedElements, `${a.name} changedElements`);
  assert.equal(got.changedFraction, o.changedFraction, `${a.name} changedFraction`);
}

/** A pair of checkpoints written to disk and opened through the format core. */
class Pair {
  a!: Model;
  b!: Model;
  constructor(
    readonly dir: TempDir,
    readonly ta: TestTensor[],
    readonly tb: TestTensor[],
  ) {}
  static async write(ta: TestTensor[], tb: TestTensor[]): Promise<Pair> {
    const p = new Pair(new TempDir(), ta, tb);
    p.a = await openFile(await writeModel(p.dir.file('a.safetensors'), ta));
    p.b = await openFile(await writeModel(p.dir.file('b.safetensors'), tb));
    return p;
  }
  async dispose(): Promise<void> {
    await this.a.close();
    await this.b.close();
    this.dir.dispose();
  }
  tensor(r: DiffReport, name: string): TensorDiff {
    const x = r.tensors.find((z) => z.name === name);
    assert.ok(x, `no result for ${name}`);
    return x;
  }
}

/** A base model and a copy with a dense small delta on some tensors, one changing only in its tail. */
function denseCase(dtype: FloatDType): { ta: TestTensor[]; tb: TestTensor[]; changed: string[] } {
  const r = rng(dtype.length * 17 + 3);
  const ta: TestTensor[] = [];
  const tb: TestTensor[] = [];
  const changed: string[] = [];
  for (let layer = 0; layer < 3; layer++) {
    for (const [mod, shape] of [['self_attn.q_proj', [48, 40]], ['mlp.down_proj', [40, 100]], ['input_layernorm', [40]]] as const) {
      const name = `model.layers.${layer}.${mod}.weight`;
      const n = shape.reduce((x, y) => x * y, 1);
      const va = Float64Array.from(normals(n, r), (x) => x * 0.02);
      let vb = va;
      if (layer >= 1 && mod !== 'input_layernorm') {
        vb = Float64Array.from(va, (x) => x + 0.002 * (r() - 0.5));
        changed.push(name);
      }
      if (layer === 2 && mod === 'mlp.down_proj') {
        // Only the last few elements move: the equal prefix spans several chunks.
        vb = Float64Array.from(va, (x, i) => (i >= n - 5 ? x * 1.5 : x));
      }
      ta.push(t(name, dtype, [...shape], va));
      tb.push(t(name, dtype, [...shape], vb));
    }
  }
  return { ta, tb, changed };
}

describe('diff pipeline', () => {
  let dir: TempDir;
  before(() => {
    dir = new TempDir();
  });
  after(() => dir.dispose());

  it('reports identical models as identical, without arithmetic', async () => {
    const { ta } = denseCase('BF16');
    const p = await Pair.write(ta, ta);
    try {
      const r = await diff(p.a, p.b, { backend: 'cpu', chunkBytes: CHUNK });
      assert.deepEqual([r.added, r.removed, r.changed], [[], [], []]);
      assert.equal(r.summary.different, 0);
      assert.equal(r.summary.identical, ta.length);
      for (const x of r.tensors) {
        assert.equal(x.identical, true);
        assert.equal(x.relL2, 0);
        assert.equal(x.changedFraction, 0);
        // Byte compare only: no norms were accumulated.
        assert.equal(x.normA, undefined);
      }
      assert.equal(r.bytesRead, 2 * ta.reduce((s, x) => s + x.values.length * 2, 0));
    } finally {
      await p.dispose();
    }
  });

  for (const dtype of ['BF16', 'F16', 'F32'] as const) {
    it(`matches the float64 oracle on a dense small delta (${dtype})`, async () => {
      const { ta, tb, changed } = denseCase(dtype);
      const p = await Pair.write(ta, tb);
      try {
        const r = await diff(p.a, p.b, { backend: 'cpu', chunkBytes: CHUNK });
        for (let i = 0; i < ta.length; i++) {
          const got = p.tensor(r, ta[i].name);
          if (ta[i].values === tb[i].values) assert.equal(got.identical, true, ta[i].name);
          else checkTensor(got, ta[i], tb[i], 1e-9);
        }
        assert.equal(r.summary.different, changed.length);
        // Per layer: layer 0 untouched, layers 1–2 changed in their two linear weights.
        const l0 = r.layers.find((g) => g.group === 'layers.0')!;
        const l1 = r.layers.find((g) => g.group === 'layers.1')!;
        assert.equal(l0.changedTensors, 0);
        assert.equal(l1.changedTensors, 2);
        assert.equal(l1.tensors, 3);
        const l1Changed = r.tensors.filter((x) => x.name.includes('layers.1.')).reduce((s, x) => s + x.changedElements, 0);
        assert.equal(l1.changedElements, l1Changed);
        assert.deepEqual(
          r.modules.map((g) => g.group),
          ['down_proj', 'norm', 'q_proj'],
        );
        assert.equal(r.modules.find((g) => g.group === 'norm')!.changedTensors, 0);
      } finally {
        await p.dispose();
      }
    });
  }

  it('reports ‖b − a‖ when A is all zeros, and says so', async () => {
    const vb = normals(64, rng(5));
    const p = await Pair.write([t('w', 'F32', [8, 8], new Float64Array(64))], [t('w', 'F32', [8, 8], vb)]);
    try {
      const r = await diff(p.a, p.b, { backend: 'cpu' });
      const x = r.tensors[0];
      assert.equal(x.relL2, null);
      assert.equal(x.cosine, null);
      close(x.absL2, Math.hypot(...decodeRef('F32', encode('F32', vb))), 1e-12, 'absL2');
      assert.match(x.note ?? '', /all zeros/);
    } finally {
      await p.dispose();
    }
  });

  it('lists added, removed and reshaped tensors without comparing them; a recast one is compared by value', async () => {
    const v = normals(24, rng(9));
    const p = await Pair.write(
      [t('keep', 'F32', [4, 6], v), t('gone', 'F32', [3], [1, 2, 3]), t('reshaped', 'F32', [4, 6], v), t('recast', 'F32', [24], v)],
      [t('keep', 'F32', [4, 6], v), t('new', 'BF16', [2], [1, 2]), t('reshaped', 'F32', [6, 4], v), t('recast', 'BF16', [24], v)],
    );
    try {
      const r = await diff(p.a, p.b, { backend: 'cpu' });
      assert.deepEqual(r.added, ['new']);
      assert.deepEqual(r.removed, ['gone']);
      assert.deepEqual(
        r.changed.map((c) => [c.name, c.shapeA, c.shapeB, c.dtypeA, c.dtypeB]).sort(),
        [['reshaped', [4, 6], [6, 4], 'F32', 'F32']],
      );
      assert.deepEqual(
        r.tensors.map((x) => [x.name, x.identical, x.dtypeB, x.decoded]),
        [
          ['keep', true, undefined, undefined],
          ['recast', false, 'BF16', true],
        ],
      );
      // BF16 keeps 8 significant bits: the rounding error is below 2^-8 of each value.
      const recast = r.tensors[1];
      assert.ok(recast.relL2! > 0 && recast.relL2! < 2 ** -8, `relL2 ${recast.relL2}`);
      assert.ok(recast.snrDb! > 48, `SNR ${recast.snrDb}`);
    } finally {
      await p.dispose();
    }
  });

  it('maps a wrapper prefix automatically, and takes an explicit mapping', async () => {
    const v = normals(16, rng(11));
    const w = Float64Array.from(v, (x) => x + 1);
    const names = ['model.embed_tokens.weight', 'model.layers.0.mlp.up_proj.weight', 'model.layers.1.mlp.up_proj.weight', 'lm_head.weight'];
    const p = await Pair.write(
      names.map((n) => t(n, 'F32', [4, 4], v)),
      names.map((n, i) => t(`base_model.model.${n}`, 'F32', [4, 4], i === 1 ? w : v)),
    );
    try {
      const r = await diff(p.a, p.b, { backend: 'cpu' });
      assert.deepEqual(r.mapping, { a: '', b: 'base_model.model.', auto: true });
      assert.deepEqual([r.added, r.removed], [[], []]);
      assert.equal(r.tensors.length, 4);
      assert.equal(p.tensor(r, names[1]).identical, false);
      assert.equal(p.tensor(r, names[1]).nameB, `base_model.model.${names[1]}`);
      assert.equal(r.summary.identical, 3);
      // A mapping that matches nothing leaves every name unmatched: not an error.
      const none = await diff(p.a, p.b, { backend: 'cpu', mapping: { a: 'x.', b: 'y.' } });
      assert.equal(none.tensors.length, 0);
      assert.equal(none.added.length, 4);
      assert.equal(none.removed.length, 4);
      const explicit = await diff(p.a, p.b, { backend: 'cpu', mapping: { a: 'model.', b: 'base_model.model.model.' } });
      assert.deepEqual(explicit.mapping, { a: 'model.', b: 'base_model.model.model.', auto: false });
      // lm_head sits outside the given prefixes: it stays unmatched.
      assert.deepEqual([explicit.added, explicit.removed], [['base_model.model.lm_head.weight'], ['lm_head.weight']]);
    } finally {
      await p.dispose();
    }
  });

  it('detects prefix differences only when they match more names', () => {
    const a = ['model.layers.0.q.weight', 'model.layers.1.q.weight', 'model.norm.weight'];
    assert.equal(detectPrefixMapping(a, a), undefined);
    assert.deepEqual(detectPrefixMapping(a, a.map((n) => `base_model.model.${n}`)), { a: '', b: 'base_model.model.' });
    assert.deepEqual(detectPrefixMapping(a.map((n) => `transformer.${n.slice(6)}`), a), { a: 'transformer.', b: 'model.' });
    assert.equal(detectPrefixMapping(['x.weight'], ['y.bias']), undefined);
  });

  it('shows a low-rank change as low-rank', async () => {
    const [m, n] = [96, 80];
    const r = rng(21);
    const va = normals(m * n, r);
    const u = normals(m * 3, r);
    const v = normals(n * 3, r);
    // rank 1 for `one`; rank 3 with singular values far apart for `three`
    const one = Float64Array.from(va, (x, i) => x + 0.1 * u[Math.floor(i / n)] * v[i % n]);
    const three = Float64Array.from(va, (x, i) => {
      const row = Math.floor(i / n);
      const col = i % n;
      return x + 0.1 * u[row] * v[col] + 0.05 * u[m + row] * v[n + col] + 0.02 * u[2 * m + row] * v[2 * n + col];
    });
    const dense = Float64Array.from(va, (x) => x + 0.01 * (r() - 0.5));
    const p = await Pair.write(
      [t('one', 'F32', [m, n], va), t('three', 'F32', [m, n], va), t('dense', 'F32', [m, n], va)],
      [t('one', 'F32', [m, n], one), t('three', 'F32', [m, n], three), t('dense', 'F32', [m, n], dense)],
    );
    try {
      const res = await diff(p.a, p.b, { backend: 'cpu', rank: { sketch: 24 }, chunkBytes: 4096 });
      const e1 = p.tensor(res, 'one').rankEnergy!;
      assert.ok(e1['1'] > 0.9999, `rank-1 energy ${e1['1']}`);
      const e3 = p.tensor(res, 'three').rankEnergy!;
      assert.ok(e3['1'] < 0.95, `rank-3 change at rank 1: ${e3['1']}`);
      assert.ok(e3['4'] > 0.9999, `rank-3 change at rank 4: ${e3['4']}`);
      const ed = p.tensor(res, 'dense').rankEnergy!;
      // A uniform random 96 × 80 matrix spreads its energy: rank 4 holds well under a fifth.
      assert.ok(ed['4'] < 0.2, `dense change at rank 4: ${ed['4']}`);
      assert.ok(res.rankSeconds! >= 0 && res.rankBytesRead! > 0);
    } finally {
      await p.dispose();
    }
  });

  it('widens F64 and integer tensors, counting differing elements on the stored bytes', async () => {
    const n = 300;
    const r = rng(77);
    const fa = normals(n, r);
    // Some changes far below F32 resolution: distinct in F64, equal once widened.
    const fb = Float64Array.from(fa, (x, i) => (i % 3 === 0 ? x + 0.5 : i % 3 === 1 ? x * (1 + 1e-12) : x));
    const ia = Int32Array.from({ length: n }, (_, i) => i * 1000);
    const ib = Int32Array.from(ia, (x, i) => (i % 5 === 0 ? x + 7 : x));
    const p = new Pair(new TempDir(), [], []);
    const bytes = (x: ArrayBufferView) => new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    await writeSafetensors(p.dir.file('a.safetensors'), [
      { name: 'f64', dtype: 'F64', shape: [n], data: bytes(fa) },
      { name: 'i32', dtype: 'I32', shape: [n], data: bytes(ia) },
    ]);
    await writeSafetensors(p.dir.file('b.safetensors'), [
      { name: 'f64', dtype: 'F64', shape: [n], data: bytes(fb) },
      { name: 'i32', dtype: 'I32', shape: [n], data: bytes(ib) },
    ]);
    p.a = await openFile(p.dir.file('a.safetensors'));
    p.b = await openFile(p.dir.file('b.safetensors'));
    try {
      const res = await diff(p.a, p.b, { backend: 'cpu', chunkBytes: 512 });
      const f = p.tensor(res, 'f64');
      assert.equal(f.changedElements, 200);
      // relL2 in f64 over the F32-widened values: the 1e-12 changes vanish, the +0.5 ones remain.
      const w = Float64Array.from(fa, (x) => Math.fround(x));
      const wb = Float64Array.from(fb, (x) => Math.fround(x));
      const dd = w.reduce((s, x, i) => s + (wb[i] - x) ** 2, 0);
      close(f.relL2, Math.sqrt(dd / w.reduce((s, x) => s + x * x, 0)), 1e-9, 'f64 relL2');
      const i = p.tensor(res, 'i32');
      assert.equal(i.changedElements, 60);
      assert.equal(i.maxAbsDiff, 7);
      assert.deepEqual(i.maxAbsIndex, [0]);
    } finally {
      await p.dispose();
    }
  });

  it('stops with CancelledError when cancelled', async () => {
    const { ta, tb } = denseCase('BF16');
    const p = await Pair.write(ta, tb);
    try {
      const ac = new AbortController();
      ac.abort();
      await assert.rejects(diff(p.a, p.b, { backend: 'cpu', signal: ac.signal }), CancelledError);
    } finally {
      await p.dispose();
    }
  });
});

/** Sylvester's construction: rows are exactly orthogonal, each of norm √n. */
function hadamard(n: number): number[][] {
  let h = [[1]];
  while (h.length < n) h = [...h.map((r) => [...r, ...r]), ...h.map((r) => [...r, ...r.map((x) => -x)])];
  return h;
}

/** Δ = Σ s_i h_i g_iᵀ / √(m n): its singular values are exactly s (up to F32 storage). */
function knownSpectrum(m: number, n: number, s: number[]): Float64Array {
  const hm = hadamard(m);
  const hn = hadamard(n);
  const out = new Float64Array(m * n);
  s.forEach((si, i) => {
    const scale = si / Math.sqrt(m * n);
    for (let r = 0; r < m; r++) for (let c = 0; c < n; c++) out[r * n + c] += scale * hm[i + 1][r] * hn[(3 * i + 2) % n][c];
  });
  return out;
}

forEachBackend('diff pipeline', (backend) => {
  const tol = backend.kind === 'cpu' ? 1e-9 : 1e-5;
  it('matches the float64 oracle on every tensor', async () => {
    const { ta, tb } = denseCase('BF16');
    const p = await Pair.write(ta, tb);
    try {
      const r = await diff(p.a, p.b, { backend: backend.kind, chunkBytes: CHUNK });
      for (let i = 0; i < ta.length; i++) {
        const got = p.tensor(r, ta[i].name);
        if (ta[i].values === tb[i].values) assert.equal(got.identical, true);
        else checkTensor(got, ta[i], tb[i], tol);
      }
      // The Δ histogram of one changed tensor: every differing element lands in a bin.
      const name = 'model.layers.1.self_attn.q_proj.weight';
      const x = p.tensor(r, name);
      const h = await deltaHistogram(p.a, p.b, p.a.tensor(name)!, p.b.tensor(name)!, { bins: 16, lo: -x.maxAbsDiff, hi: x.maxAbsDiff }, { backend: backend.kind, chunkBytes: CHUNK });
      assert.equal(h.reduce((s, c) => s + c, 0), x.changedElements);
    } finally {
      await p.dispose();
    }
  });

  it('estimates the energy of a known spectrum', async () => {
    const [m, n] = [128, 128];
    const s = Array.from({ length: 100 }, (_, i) => 0.9 ** i);
    const total = s.reduce((x, y) => x + y * y, 0);
    const exact = (r: number) => s.slice(0, r).reduce((x, y) => x + y * y, 0) / total;
    const small = knownSpectrum(64, 32, [3, 2, 1, 0.5, 0.25]);
    const p = await Pair.write(
      [t('big', 'F32', [m, n], new Float64Array(m * n)), t('small', 'F32', [64, 32], new Float64Array(64 * 32))],
      [t('big', 'F32', [m, n], knownSpectrum(m, n, s)), t('small', 'F32', [64, 32], small)],
    );
    try {
      const r = await diff(p.a, p.b, { backend: backend.kind, rank: { powerIterations: 2 }, chunkBytes: 8192 });
      const big = p.tensor(r, 'big');
      for (const k of [1, 4, 16, 64] as const) {
        const got = big.rankEnergy![`${k}`];
        // Ritz values never exceed the true ones; with 72 columns and two passes the top 16 are accurate.
        assert.ok(got <= exact(k) + 1e-4, `rank ${k}: ${got} > ${exact(k)}`);
        assert.ok(got >= exact(k) - (k === 64 ? 0.05 : 0.01), `rank ${k}: ${got} vs ${exact(k)}`);
      }
      assert.ok(Math.abs(big.singularValues![0] - 1) < 1e-3, `σ1 ${big.singularValues![0]}`);
      // 32 columns ≤ the sketch: computed exactly.
      const sm = p.tensor(r, 'small');
      assert.deepEqual(
        sm.singularValues!.slice(0, 6).map((x) => Math.round(x * 1e4) / 1e4),
        [3, 2, 1, 0.5, 0.25, 0],
      );
      close(sm.rankEnergy!['4'], (9 + 4 + 1 + 0.25) / (9 + 4 + 1 + 0.25 + 0.0625), 1e-5, 'small rank 4');
    } finally {
      await p.dispose();
    }
  });
});
