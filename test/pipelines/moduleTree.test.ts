// Module tree folding: expected trees written out by hand for small name lists.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildModuleTree, renderModuleTree, walkModuleTree, type ModuleNode, type TreeTensorInput } from '../../src/pipelines/moduleTree';
import { estimateMemory } from '../../src/pipelines/memory';

function layer(l: number, hidden = 8): TreeTensorInput[] {
  return [
    { name: `model.layers.${l}.attn.q.weight`, dtype: 'BF16', shape: [hidden, hidden] },
    { name: `model.layers.${l}.attn.q.bias`, dtype: 'F32', shape: [hidden] },
    { name: `model.layers.${l}.norm.weight`, dtype: 'F32', shape: [hidden] },
  ];
}

function find(root: ModuleNode, path: string): ModuleNode | undefined {
  let hit: ModuleNode | undefined;
  walkModuleTree(root, (n) => {
    if (n.path === path) hit = n;
  });
  return hit;
}

/** Child names of a node, for compact expectations. */
const names = (n: ModuleNode | undefined) => n?.children.map((c) => c.name);

test('identical numbered blocks fold into one node with totals for all members', () => {
  // Header order is alphabetical (10 before 2): folding must sort numerically.
  const ts = [0, 1, 10, 11, 2, 3, 4, 5, 6, 7, 8, 9].flatMap((l) => layer(l));
  const root = buildModuleTree(ts);
  assert.deepEqual(names(root), ['model']);
  const layers = find(root, 'model.layers')!;
  assert.deepEqual(names(layers), ['{0..11}']);
  const f = layers.children[0];
  assert.equal(f.path, 'model.layers.{0..11}');
  assert.deepEqual(f.fold && { count: f.fold.count, first: f.fold.first, last: f.fold.last, label: f.fold.label }, { count: 12, first: 0, last: 11, label: '{0..11}' });
  assert.deepEqual(f.fold!.members, Array.from({ length: 12 }, (_, i) => `model.layers.${i}`));
  // One member: 64 + 8 + 8 params; BF16 64×2 + F32 8×4 + 8×4 bytes.
  assert.deepEqual(f.fold!.each, { tensorCount: 3, params: 80, bytes: 192 });
  assert.equal(f.params, 960);
  assert.equal(f.bytes, 192 * 12);
  assert.equal(f.tensorCount, 36);
  assert.equal(root.params, 960);
  // The representative shows one member's structure under the folded path.
  assert.deepEqual(names(f), ['attn', 'norm']);
  assert.equal(f.children[0].path, 'model.layers.{0..11}.attn');
  assert.deepEqual(f.children[0].children[0].tensors.map((t) => [t.name, t.fullName]), [
    ['weight', 'model.layers.0.attn.q.weight'],
    ['bias', 'model.layers.0.attn.q.bias'],
  ]);
});

test('a block that differs, or a gap in the numbering, splits the run', () => {
  const ts = [...[0, 1, 2].flatMap((l) => layer(l)), ...layer(3, 16), ...[4, 5].flatMap((l) => layer(l)), ...[7, 8].flatMap((l) => layer(l)), ...layer(10)];
  const layers = find(buildModuleTree(ts), 'model.layers')!;
  assert.deepEqual(names(layers), ['{0..2}', '3', '{4..5}', '{7..8}', '10']);
  assert.equal(layers.children[1].fold, undefined);
  assert.equal(layers.children[1].params, 16 * 16 + 32);
  // Same names but another dtype also differs.
  const dt = [...layer(0), ...layer(1).map((t) => (t.name.endsWith('norm.weight') ? { ...t, dtype: 'F16' as const } : t))];
  assert.deepEqual(names(find(buildModuleTree(dt), 'model.layers')), ['0', '1']);
});

test('MoE experts fold inside each layer, and the layers still fold around them', () => {
  const ts: TreeTensorInput[] = [];
  for (let l = 0; l < 4; l++) {
    ts.push({ name: `model.layers.${l}.moe.gate.weight`, dtype: 'BF16', shape: [8, 4] });
    for (let e = 0; e < 8; e++) for (const w of ['w1', 'w2']) ts.push({ name: `model.layers.${l}.moe.experts.${e}.${w}.weight`, dtype: 'BF16', shape: [4, 4] });
  }
  const root = buildModuleTree(ts);
  const layers = find(root, 'model.layers')!;
  assert.deepEqual(names(layers), ['{0..3}']);
  const experts = find(root, 'model.layers.{0..3}.moe.experts')!;
  assert.deepEqual(names(experts), ['{0..7}']);
  assert.equal(experts.children[0].fold!.count, 8);
  assert.equal(experts.params, 8 * 2 * 16);
  assert.equal(root.params, 4 * (32 + 8 * 2 * 16));
  const text = renderModuleTree(root);
  assert.match(text, /layers\.\{0\.\.3\} ×4 +each 17 tensors/);
  assert.match(text, /experts\.\{0\.\.7\} ×8 +each 2 tensors, 32 params, 64 B/);
});

test('fold: false keeps every block; single-segment names sit on the root', () => {
  const ts = [...layer(0), ...layer(1), { name: 'scale', dtype: 'F32' as const, shape: [] }];
  const root = buildModuleTree(ts, { fold: false });
  assert.deepEqual(names(find(root, 'model.layers')), ['0', '1']);
  assert.deepEqual(root.tensors.map((t) => t.name), ['scale']);
  assert.equal(root.params, 2 * 80 + 1);
  assert.match(renderModuleTree(root), /^└─ scale  F32 \[\]$|^├─ scale  F32 \[\]$/m);
});

test('the text renderer caps its output', () => {
  const ts: TreeTensorInput[] = Array.from({ length: 1000 }, (_, i) => ({ name: `m.t${i}.weight`, dtype: 'U8', shape: [i + 1] }));
  const text = renderModuleTree(buildModuleTree(ts), { maxLines: 50 });
  const lines = text.trimEnd().split('\n');
  assert.equal(lines.length, 51);
  assert.match(lines[50], /^… \d+ more lines/);
});

test('memory estimates: bits per weight × parameters', () => {
  const m = estimateMemory(1_000_000);
  assert.deepEqual(
    m.map((x) => [x.format, x.bytes]),
    [
      ['FP32', 4_000_000],
      ['BF16', 2_000_000],
      ['FP8', 1_000_000],
      ['Q8_0', 1_062_500],
      ['Q4_0', 562_500],
    ],
  );
});
