import assert from 'node:assert/strict';
import { readGguf, readTensorBytes, type GgufFile } from '../../src/format/gguf/reader';
import { NodeFileSource } from '../../src/format/source';

/** Two GGUF files with the same tensors: names, types, dims, every data byte and general.file_type. */

async function open(path: string): Promise<GgufFile> {
  return readGguf(await NodeFileSource.open(path));
}

async function bytesOf(f: GgufFile, name: string): Promise<Uint8Array> {
  const t = f.tensors.find((x) => x.name === name)!;
  const out = new Uint8Array(t.byteLength);
  await readTensorBytes(f, t, 0, out);
  return out;
}

/** Compares every tensor of ours with theirs; returns the type of each, for the caller's checks. */
export async function compare(ours: string, theirs: string): Promise<Map<string, string>> {
  const a = await open(ours);
  const b = await open(theirs);
  try {
    assert.deepEqual(a.tensors.map((t) => t.name).sort(), b.tensors.map((t) => t.name).sort());
    const types = new Map<string, string>();
    for (const tb of b.tensors) {
      const ta = a.tensors.find((x) => x.name === tb.name)!;
      assert.equal(ta.type.name, tb.type.name, `${tb.name}: type`);
      assert.deepEqual(ta.ne, tb.ne, `${tb.name}: dims`);
      const [x, y] = [await bytesOf(a, tb.name), await bytesOf(b, tb.name)];
      const diff = x.findIndex((v, i) => v !== y[i]);
      assert.ok(x.length === y.length && diff < 0, `${tb.name} (${tb.type.name}): ${x.length} vs ${y.length} bytes, first difference at byte ${diff}`);
      types.set(tb.name, tb.type.name);
    }
    const ft = a.metadata.get('general.file_type');
    assert.deepEqual(ft && 'value' in ft ? Number(ft.value) : undefined, Number((b.metadata.get('general.file_type') as { value: number }).value));
    return types;
  } finally {
    await a.source.close?.();
    await b.source.close?.();
  }
}

