import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { FormatError, MemorySource, openModel, parseIndex, type ByteSource, type FormatErrorCode, type SourceOpener } from '../../src/format';
import { paddedFile, pattern } from '../fixtures/golden';

type Spec = Record<string, [string, number[]][]>; // shard file -> [name, shape] (U8/F32 mix)

/** Builds shard files by hand (no project writer) and an index mapping each tensor to its shard. */
function buildShards(spec: Spec): { files: Map<string, Uint8Array>; weightMap: Record<string, string> } {
  const files = new Map<string, Uint8Array>();
  const weightMap: Record<string, string> = {};
  let seed = 1;
  for (const [shard, ts] of Object.entries(spec)) {
    let off = 0;
    const parts = ts.map(([name, shape]) => {
      const n = shape.reduce((a, b) => a * b, 1) * 4;
      const e = `${JSON.stringify(name)}:{"dtype":"F32","shape":[${shape.join(',')}],"data_offsets":[${off},${off + n}]}`;
      off += n;
      weightMap[name] = shard;
      return e;
    });
    files.set(shard, paddedFile(`{"__metadata__":{"format":"pt","shard":"${shard}"},${parts.join(',')}}`, pattern(off, seed++)));
  }
  return { files, weightMap };
}

const SPEC: Spec = {
  'model-00001-of-00003.safetensors': [['embed', [4, 2]], ['layers.0.w', [2, 2]]],
  'model-00002-of-00003.safetensors': [['layers.1.w', [2, 2]], ['layers.10.w', [3]]],
  'model-00003-of-00003.safetensors': [['lm_head', [4, 2]], ['norm', []]],
};

function indexText(weightMap: Record<string, string>, extra = ''): string {
  return `{"metadata":{"total_size":1}${extra},"weight_map":${JSON.stringify(weightMap)}}`;
}

/** An in-memory SourceOpener: the format core never assumes Node's fs. */
class MapOpener implements SourceOpener {
  opened = 0;
  closed = 0;
  constructor(private readonly files: Map<string, Uint8Array | string>) {}
  async open(path: string): Promise<ByteSource> {
    const f = this.files.get(path);
    if (f === undefined || typeof f === 'string') throw new FormatError('not_found', 'no such file', path);
    this.opened++;
    const mem = new MemorySource(f, path);
    return { name: path, size: mem.size, read: (o, i) => mem.read(o, i), close: async () => void this.closed++ };
  }
  async readText(path: string): Promise<string> {
    const f = this.files.get(path);
    if (typeof f !== 'string') throw new FormatError('not_found', 'no such file', path);
    return f;
  }
  async list(path: string): Promise<string[]> {
    const names = [...this.files.keys()].filter((k) => k.startsWith(path + '/')).map((k) => k.slice(path.length + 1));
    if (names.length === 0 && !this.files.has(path + '/')) throw new FormatError('not_found', 'no such folder', path);
    return names.filter((n) => n !== '');
  }
}

function memModel(spec: Spec, edit?: (files: Map<string, Uint8Array | string>, wm: Record<string, string>) => void) {
  const { files, weightMap } = buildShards(spec);
  const all = new Map<string, Uint8Array | string>();
  for (const [k, v] of files) all.set(`/m/${k}`, v);
  edit?.(all, weightMap);
  if (!all.has('/m/model.safetensors.index.json')) all.set('/m/model.safetensors.index.json', indexText(weightMap));
  return { all, files, opener: new MapOpener(all) };
}

async function expectError(p: Promise<unknown>, code: FormatErrorCode, tensor?: string, file?: string) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof FormatError, String(e));
    assert.equal(e.code, code, e.message);
    if (tensor !== undefined) assert.equal(e.tensor, tensor, e.message);
    if (file !== undefined) assert.equal(e.file, file, e.message);
    return true;
  });
}

test('an index opens as one model: shard order, header order, data from the right shard', async () => {
  const { opener, files } = memModel(SPEC);
  for (const path of ['/m/model.safetensors.index.json', '/m']) {
    const m = await openModel(path, opener);
    assert.equal(m.path, path);
    assert.deepEqual(m.files.map((f) => f.path), Object.keys(SPEC).map((k) => `/m/${k}`));
    assert.deepEqual(m.tensors.map((t) => t.name), Object.values(SPEC).flat().map(([n]) => n));
    assert.deepEqual({ ...m.metadata }, { format: 'pt', shard: 'model-00001-of-00003.safetensors' });
    for (const t of m.tensors) {
      const shard = files.get(Object.keys(SPEC)[t.file])!;
      const got = new Uint8Array(t.byteLength);
      await m.read(t, 0, got);
      assert.deepEqual(got, shard.subarray(t.byteOffset, t.byteOffset + t.byteLength), t.name);
      const streamed: number[] = [];
      for await (const c of m.chunks(t, { chunkBytes: 8 })) streamed.push(...c);
      assert.deepEqual(Uint8Array.from(streamed), got);
    }
    assert.equal(m.tensor('norm')!.numel, 1);
    await m.close();
  }
  assert.equal(opener.closed, opener.opened, 'close releases every shard');
});

test('the same sharded model opens from disk through the default Node opener', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tw-sharded-'));
  try {
    const { files, weightMap } = buildShards(SPEC);
    for (const [k, v] of files) await writeFile(join(dir, k), v);
    await writeFile(join(dir, 'model.safetensors.index.json'), indexText(weightMap));
    await writeFile(join(dir, 'config.json'), '{}');
    const m = await openModel(dir);
    assert.equal(m.files.length, 3);
    assert.equal(m.tensors.length, 6);
    const t = m.tensor('lm_head')!;
    const got = new Uint8Array(t.byteLength);
    await m.read(t, 0, got);
    const shard = files.get('model-00003-of-00003.safetensors')!;
    assert.deepEqual(got, shard.subarray(t.byteOffset, t.byteOffset + t.byteLength));
    await m.close();
    await rm(join(dir, 'model-00002-of-00003.safetensors'));
    await expectError(openModel(join(dir, 'model.safetensors.index.json')), 'shard_missing', undefined, join(dir, 'model-00002-of-00003.safetensors'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a missing shard is shard_missing, naming the shard', async () => {
  const { opener } = memModel(SPEC, (all) => all.delete('/m/model-00002-of-00003.safetensors'));
  await expectError(openModel('/m/model.safetensors.index.json', opener), 'shard_missing', undefined, '/m/model-00002-of-00003.safetensors');
  assert.equal(opener.closed, opener.opened, 'shards opened before the failure are closed');
});

test('a tensor the index places in a shard that lacks it is tensor_missing', async () => {
  const { opener } = memModel(SPEC, (_all, wm) => {
    wm['ghost'] = 'model-00001-of-00003.safetensors';
  });
  await expectError(openModel('/m/model.safetensors.index.json', opener), 'tensor_missing', 'ghost', '/m/model-00001-of-00003.safetensors');
  const moved = memModel(SPEC, (_all, wm) => {
    wm['norm'] = 'model-00001-of-00003.safetensors';
  });
  await assert.rejects(openModel('/m', moved.opener), (e: unknown) => e instanceof FormatError && e.code === 'tensor_missing' && e.tensor === 'norm' && e.message.includes('model-00003-of-00003'));
});

test('a tensor in two shards is tensor_duplicate', async () => {
  const spec: Spec = { ...SPEC, 'model-00003-of-00003.safetensors': [['lm_head', [4, 2]], ['embed', [4, 2]]] };
  const { opener } = memModel(spec, (_all, wm) => {
    wm['embed'] = 'model-00001-of-00003.safetensors';
  });
  await expectError(openModel('/m', opener), 'tensor_duplicate', 'embed');
});

test('a tensor listed twice in weight_map is tensor_duplicate', async () => {
  const { opener } = memModel(SPEC, (all, wm) => {
    const text = indexText(wm).replace('"weight_map":{', '"weight_map":{"embed":"model-00002-of-00003.safetensors",');
    all.set('/m/model.safetensors.index.json', text);
  });
  await expectError(openModel('/m', opener), 'tensor_duplicate', 'embed');
});

test('a shard tensor the index does not list is index_invalid', async () => {
  const { opener } = memModel(SPEC, (_all, wm) => {
    delete wm['layers.10.w'];
  });
  await expectError(openModel('/m', opener), 'index_invalid', 'layers.10.w');
});

test('an invalid shard reports its own error, naming the shard', async () => {
  const { opener } = memModel(SPEC, (all) => {
    const b = all.get('/m/model-00002-of-00003.safetensors') as Uint8Array;
    all.set('/m/model-00002-of-00003.safetensors', b.subarray(0, b.length - 1));
  });
  await expectError(openModel('/m', opener), 'truncated', 'layers.10.w', '/m/model-00002-of-00003.safetensors');
});

test('malformed indexes are index_invalid', () => {
  const bad: [string, string][] = [
    ['not json', '{"weight_map":'],
    ['not an object', '[1]'],
    ['no weight_map', '{"metadata":{}}'],
    ['weight_map array', '{"weight_map":["a"]}'],
    ['non-string shard', '{"weight_map":{"a":1}}'],
    ['empty shard name', '{"weight_map":{"a":""}}'],
    ['escaping the folder', '{"weight_map":{"a":"../x.safetensors"}}'],
    ['absolute shard path', '{"weight_map":{"a":"/etc/x.safetensors"}}'],
    ['metadata not an object', '{"metadata":3,"weight_map":{"a":"x.safetensors"}}'],
    ['empty weight_map', '{"weight_map":{}}'],
    ['duplicate top-level key', '{"weight_map":{"a":"x"},"weight_map":{"a":"x"}}'],
  ];
  for (const [why, text] of bad) {
    assert.throws(() => parseIndex(text, 'i.json'), (e: unknown) => e instanceof FormatError && e.code === 'index_invalid' && e.file === 'i.json', why);
  }
  const ok = parseIndex('{"metadata":{"total_size":12},"weight_map":{"b":"s2.safetensors","a":"s1.safetensors","c":"s1.safetensors"}}', 'i.json');
  assert.deepEqual(ok.shards, ['s1.safetensors', 's2.safetensors']);
  assert.deepEqual([...ok.weightMap.keys()], ['b', 'a', 'c']);
});

test('folders: one file opens, several or none are errors that say what is there', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tw-folder-'));
  try {
    const one = buildShards({ 'model.safetensors': [['w', [2]]] }).files.get('model.safetensors')!;
    await mkdir(join(dir, 'single'));
    await writeFile(join(dir, 'single', 'model.safetensors'), one);
    await writeFile(join(dir, 'single', 'README.md'), 'x');
    const m = await openModel(join(dir, 'single'));
    assert.equal(m.path, join(dir, 'single'));
    assert.deepEqual(m.tensors.map((t) => t.name), ['w']);
    assert.equal(m.files[0].path, join(dir, 'single', 'model.safetensors'));
    await m.close();

    await mkdir(join(dir, 'two'));
    await writeFile(join(dir, 'two', 'a.safetensors'), one);
    await writeFile(join(dir, 'two', 'b.safetensors'), one);
    await assert.rejects(openModel(join(dir, 'two')), (e: unknown) => e instanceof FormatError && e.code === 'unsupported' && e.message.includes('a.safetensors') && e.message.includes('b.safetensors'));

    await mkdir(join(dir, 'none'));
    await writeFile(join(dir, 'none', 'weights.bin'), 'x');
    await assert.rejects(openModel(join(dir, 'none')), (e: unknown) => e instanceof FormatError && e.code === 'not_found' && e.message.includes('weights.bin'));

    await mkdir(join(dir, 'custom'));
    const { files, weightMap } = buildShards({ 'unet-1.safetensors': [['a', [1]]], 'unet-2.safetensors': [['b', [1]]] });
    for (const [k, v] of files) await writeFile(join(dir, 'custom', k), v);
    await writeFile(join(dir, 'custom', 'diffusion_pytorch_model.safetensors.index.json'), indexText(weightMap));
    const c = await openModel(join(dir, 'custom'));
    assert.deepEqual(c.tensors.map((t) => t.name), ['a', 'b']);
    await c.close();

    await expectError(openModel(join(dir, 'absent.safetensors')), 'not_found');
    await expectError(openModel(join(dir, 'absent')), 'not_found');
    await expectError(openModel(join(dir, 'absent.index.json')), 'not_found');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
