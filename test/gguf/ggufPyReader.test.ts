import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { FormatError } from '../../src/format/errors';
import { ggufArrayItems, readGguf, type GgufFile } from '../../src/format/gguf/reader';
import { openGguf } from '../../src/format/gguf/split';
import { GGUF_VALUE_TYPES, type GgufArray, type GgufItem, type GgufValue } from '../../src/format/gguf/values';
import { NodeFileSource } from '../../src/format/source';

/**
 * Files written by gguf-py's GGUFWriter (every value type, nested arrays, every tensor type,
 * v2, alignment 64, a 150,000-token vocabulary, a 3-part split set, big-endian), read by our
 * reader and compared, key by key and tensor by tensor, with what gguf-py's GGUFReader reads.
 * Needs `pip install gguf numpy` (scripts/oracles.sh); fails without it under CI=true.
 */

interface PyDump {
  fields: Record<string, { types: number[]; value: unknown }>;
  tensors: { name: string; type: number; ne: number[]; elements: number; bytes: number; offset: number }[];
}

let dir = '';
let unavailable: string | false = false;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'tw-gguf-py-'));
  // The vocabulary file and gguf-py's dump of it take most of the ~40 s on a slow machine.
  const r = spawnSync('python3', [join(__dirname, '..', 'test', 'gguf', 'gguf_fixtures.py'), dir], { encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) {
    unavailable = `gguf-py fixtures failed (${r.error?.message ?? r.stderr.trim().split('\n').pop()}); run scripts/oracles.sh`;
    if (process.env.CI === 'true') assert.fail(unavailable);
    console.log(`# skipping: ${unavailable}`);
  }
});
after(() => rmSync(dir, { recursive: true, force: true }));

function code(v: GgufValue | { type: string }): number {
  return GGUF_VALUE_TYPES.indexOf(v.type as never);
}

/** gguf-py's JSON form of an array: integers as decimal strings, nested arrays flattened. */
async function plain(file: GgufFile, a: GgufArray): Promise<unknown[]> {
  const out: unknown[] = [];
  const float = a.itemType === 'f32' || a.itemType === 'f64';
  for (const x of await ggufArrayItems(file, a)) {
    if (typeof x === 'object') out.push(...(await plain(file, x)));
    else out.push(typeof x === 'bigint' || (typeof x === 'number' && !float) ? String(x) : x);
  }
  return out;
}

async function compareFile(path: string, dump: PyDump): Promise<GgufFile> {
  const source = await NodeFileSource.open(path);
  const file = await readGguf(source);
  try {
    assert.deepEqual([...file.metadata.keys()].sort(), Object.keys(dump.fields).sort(), `${path}: keys`);
    for (const [key, f] of Object.entries(dump.fields)) {
      const v = file.metadata.get(key)!;
      assert.equal(code(v), f.types[0], `${key}: value type`);
      if (v.type === 'array') {
        assert.equal(code(v), 9);
        let types = [code(v)];
        let inner: GgufItem = v;
        while (typeof inner === 'object' && inner.type === 'array') {
          types.push(code({ type: inner.itemType }));
          const first: GgufItem[] = inner.length ? await ggufArrayItems(file, inner, 0, 1) : [];
          if (inner.itemType !== 'array' || !first.length) break;
          inner = first[0];
        }
        types = types.slice(0, f.types.length);
        assert.deepEqual(types, f.types, `${key}: array types`);
        const items = await plain(file, v);
        assert.deepEqual(items, f.value, `${key}: items`);
      } else {
        const ours = typeof v.value === 'bigint' || (typeof v.value === 'number' && !['f32', 'f64'].includes(v.type)) ? String(v.value) : v.value;
        assert.deepEqual(ours, f.value, `${key}: value`);
      }
    }
    assert.equal(file.tensors.length, dump.tensors.length, `${path}: tensor count`);
    file.tensors.forEach((t, i) => {
      const p = dump.tensors[i];
      assert.deepEqual(
        { name: t.name, type: t.type.id, ne: t.ne, elements: t.elements, bytes: t.byteLength, offset: t.fileOffset },
        { ...p, ne: p.ne.length === 0 ? [] : p.ne },
        `${path}: tensor ${i}`,
      );
      assert.deepEqual(t.shape, [...t.ne].reverse());
    });
  } finally {
    await source.close();
  }
  return file;
}

for (const name of ['all-types', 'v2', 'aligned64', 'vocab', 'split-00001-of-00003', 'split-00002-of-00003', 'split-00003-of-00003']) {
  test(`${name}.gguf: every key and tensor info equals gguf-py's GGUFReader`, async (t) => {
    if (unavailable) return t.skip(unavailable);
    const dump = JSON.parse(readFileSync(join(dir, `${name}.json`), 'utf8')) as PyDump;
    const file = await compareFile(join(dir, `${name}.gguf`), dump);
    if (name === 'v2') assert.equal(file.version, 2);
    if (name === 'aligned64') assert.equal(file.alignment, 64);
  });
}

test('vocab.gguf: the 150,000-entry arrays stay lazy until asked for', async (t) => {
  if (unavailable) return t.skip(unavailable);
  const source = await NodeFileSource.open(join(dir, 'vocab.gguf'));
  const started = performance.now();
  const file = await readGguf(source);
  const ms = performance.now() - started;
  await source.close();
  const tokens = file.metadata.get('tokenizer.ggml.tokens')!;
  assert.equal(tokens.type, 'array');
  assert.equal(tokens.type === 'array' && tokens.length, 150_000);
  assert.equal(tokens.type === 'array' && tokens.items, undefined);
  console.log(`# opened a 150,000-token vocabulary in ${ms.toFixed(1)} ms`);
});

test('a split set opens as one model from any of its parts', async (t) => {
  if (unavailable) return t.skip(unavailable);
  const names = readdirSync(dir).filter((n) => n.startsWith('split-') && n.endsWith('.json')).sort();
  const expected = names.flatMap((n) => (JSON.parse(readFileSync(join(dir, n), 'utf8')) as PyDump).tensors.map((x) => x.name));
  for (const part of [1, 2, 3]) {
    const model = await openGguf(join(dir, `split-0000${part}-of-00003.gguf`));
    try {
      assert.equal(model.parts.length, 3);
      assert.deepEqual(model.tensors.map((x) => x.name), expected);
      assert.deepEqual(model.tensors.map((x) => x.part), [0, 0, 0, 1, 1, 1, 2]);
      assert.ok(model.metadata.has('test.string'));
    } finally {
      await model.close();
    }
  }
});

test('a big-endian file is refused with its own code', async (t) => {
  if (unavailable) return t.skip(unavailable);
  const source = await NodeFileSource.open(join(dir, 'big-endian.gguf'));
  await assert.rejects(readGguf(source), (e: unknown) => e instanceof FormatError && e.code === 'gguf_big_endian' && /big-endian GGUF v3/.test(e.message));
  await source.close();
});
