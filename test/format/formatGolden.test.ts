import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { FormatError, MemorySource, openModel, readFileHeader, type FormatErrorCode } from '../../src/format';
import { goldenCases, writeGoldenFiles, type GoldenCase } from '../fixtures/golden';

// The npm `safetensors` package: an independent (if lenient) reader, for the valid files.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { SafeTensor } = require('safetensors') as { SafeTensor: new (b: Uint8Array) => { metadata: Map<string, { dtype: string; shape: number[]; data_offsets: number[] }>; getTensor(n: string): Uint8Array } };

const cases = goldenCases();

async function outcome(c: GoldenCase, file: string) {
  try {
    const { tensors, file: mf } = await readFileHeader(new MemorySource(c.bytes, file));
    return { tensors, metadata: mf.metadata };
  } catch (e) {
    if (!(e instanceof FormatError)) throw e;
    return { error: e };
  }
}

test('golden case names are unique', () => {
  assert.equal(new Set(cases.map((c) => c.name)).size, cases.length);
});

for (const c of cases) {
  test(`golden ${c.name}: ${c.rule}`, async () => {
    const file = `golden/${c.name}.safetensors`;
    const got = await outcome(c, file);
    if ('error' in c.expect) {
      assert.ok('error' in got, `expected error ${c.expect.error}, got ${JSON.stringify(got)}`);
      const e = got.error!;
      assert.equal(e.code, c.expect.error, e.message);
      assert.equal(e.file, file, 'the error names the file');
      assert.ok(e.message.includes(file), `message names the file: ${e.message}`);
      assert.equal(e.tensor, c.expect.tensor, `the error names tensor ${c.expect.tensor}: ${e.message}`);
      if (c.expect.tensor !== undefined) assert.ok(e.message.includes(`'${c.expect.tensor}'`), e.message);
    } else {
      assert.ok(!('error' in got), `expected success, got ${'error' in got ? got.error!.message : ''}`);
      const tensors = got.tensors!.map((t) => ({ name: t.name, dtype: t.dtype, shape: [...t.shape], byteOffset: t.byteOffset, byteLength: t.byteLength }));
      assert.deepEqual(tensors, c.expect.tensors.map((t) => ({ ...t, shape: [...t.shape] })));
      assert.deepEqual({ ...got.metadata }, c.expect.metadata);
      for (const t of got.tensors!) assert.equal(t.numel, t.shape.reduce((a, b) => a * b, 1));
    }
  });
}

test('golden: every header error code the reader emits has a case', () => {
  const emitted: FormatErrorCode[] = [
    'file_too_small', 'header_too_large', 'header_length', 'header_utf8', 'header_start', 'header_json', 'duplicate_key',
    'metadata_invalid', 'tensor_invalid', 'dtype_unknown', 'shape_invalid', 'offsets_invalid', 'overflow', 'size_mismatch',
    'misaligned', 'offsets_hole', 'offsets_overlap', 'truncated', 'trailing_bytes',
  ];
  const covered = new Set(cases.flatMap((c) => ('error' in c.expect ? [c.expect.error] : [])));
  for (const code of emitted) assert.ok(covered.has(code), `no golden case for ${code}`);
});

test('golden valid files read the same through the npm safetensors reader', () => {
  let compared = 0;
  for (const c of cases) {
    if ('error' in c.expect) continue;
    // That reader treats every key as a tensor, so it only reads files without __metadata__.
    const text = new TextDecoder().decode(c.bytes.subarray(8, 8 + Number(new DataView(c.bytes.buffer, c.bytes.byteOffset).getBigUint64(0, true))));
    if (text.includes('__metadata__') || text.includes('"extra"')) continue;
    const st = new SafeTensor(c.bytes.slice());
    for (const t of c.expect.tensors) {
      const m = st.metadata.get(t.name);
      assert.ok(m, `${c.name}: npm reader lacks ${t.name}`);
      assert.equal(m.dtype, t.dtype);
      assert.deepEqual(m.shape, t.shape);
      assert.deepEqual(m.data_offsets, [t.byteOffset, t.byteOffset + t.byteLength]);
      assert.deepEqual(st.getTensor(t.name), c.bytes.subarray(t.byteOffset, t.byteOffset + t.byteLength));
    }
    assert.equal(st.metadata.size, c.expect.tensors.length);
    compared++;
  }
  assert.ok(compared >= 10, `compared only ${compared} files`);
});

test('golden files on disk open through openModel with the same results', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tw-golden-'));
  try {
    await writeGoldenFiles(dir);
    for (const c of cases) {
      const path = join(dir, `${c.name}.safetensors`);
      try {
        const m = await openModel(path);
        await m.close();
        assert.ok(!('error' in c.expect), `${c.name}: expected ${'error' in c.expect ? c.expect.error : ''}`);
        assert.deepEqual(m.tensors.map((t) => t.name), c.expect.tensors.map((t) => t.name));
      } catch (e) {
        assert.ok(e instanceof FormatError, String(e));
        assert.ok('error' in c.expect, `${c.name}: ${e.message}`);
        assert.equal(e.code, c.expect.error);
        assert.equal(e.file, path);
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
