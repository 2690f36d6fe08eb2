// The streamed JSON report is the one-piece JSON.stringify(doc, null, 2), byte for byte.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { DiffReport, TensorDiff } from '../../src/pipelines/diff';
import { diffJsonChunks } from '../../src/pipelines/diffReport';

function tensor(i: number): TensorDiff {
  const identical = i % 3 === 0;
  return {
    name: `layers.${i}.w "quoted"\n${i % 2 ? '\u00e9' : ''}`,
    nameB: i % 5 === 0 ? `b.${i}` : undefined,
    dtype: 'F32',
    shape: i % 4 === 0 ? [] : [i, 2],
    numel: 2 * i,
    identical,
    relL2: identical ? 0 : i % 7 === 0 ? null : i / 1000,
    absL2: i / 10,
    ...(identical ? {} : { normA: i, normB: i + 1, snrDb: i % 11 === 0 ? null : 3.5 }),
    cosine: identical ? 1 : 0.5,
    maxAbsDiff: i,
    maxAbsIndex: identical ? null : [i, 1],
    meanAbsDiff: 0.25,
    changedFraction: 0.5,
    changedElements: i,
    ...(i % 6 === 1 ? { rankEnergy: { '1': 0.5, '4': 0.75, '16': 0.9, '64': 1 }, singularValues: [3, 2, 1] } : {}),
    note: i % 9 === 0 ? 'A is all zeros' : undefined,
  };
}

function report(n: number): DiffReport {
  return {
    a: 'a/"x".safetensors',
    b: 'b.safetensors',
    mapping: n % 2 ? { a: 'model.', b: '', auto: true } : undefined,
    added: ['p', 'q'],
    removed: [],
    changed: [{ name: 'c', shapeA: [1], shapeB: [2], dtypeA: 'F32', dtypeB: 'F16' }],
    tensors: Array.from({ length: n }, (_, i) => tensor(i)),
    layers: [{ group: 'layers.0', tensors: 1, changedTensors: 1, elements: 2, changedElements: 1, changedFraction: 0.5, sumSqDiff: 1, meanRelL2: 0.1, maxRelL2: 0.2 }],
    modules: [],
    summary: { compared: n, identical: 0, different: n, elements: 0, changedElements: 0, bitsPerWeightA: 32, bitsPerWeightB: 32, relL2: null, snrDb: null },
    backend: 'cpu (cpu ×2)',
    seconds: 1.25,
    bytesRead: 100,
    rankSeconds: n % 2 ? 0.5 : undefined,
    rankBytesRead: undefined,
  };
}

it('the chunks join to JSON.stringify of the document, for empty, small and many-chunk reports', () => {
  for (const n of [0, 1, 2, 511, 512, 513, 1500]) {
    const r = report(n);
    const doc = { a: r.a, b: r.b, mapping: r.mapping, summary: r.summary, added: r.added, removed: r.removed, changed: r.changed, tensors: r.tensors, layers: r.layers, modules: r.modules, backend: r.backend, seconds: r.seconds, bytesRead: r.bytesRead, rankSeconds: r.rankSeconds, rankBytesRead: r.rankBytesRead };
    const chunks = [...diffJsonChunks(r)];
    assert.equal(chunks.join(''), JSON.stringify(doc, null, 2) + '\n', `${n} tensors`);
    // Streamed: more than one piece once there are tensors.
    if (n > 0) assert.ok(chunks.length >= 3, `${n} tensors in ${chunks.length} chunks`);
  }
});
