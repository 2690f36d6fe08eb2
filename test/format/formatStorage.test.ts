// The model layer's storage types: plain dtypes from the safetensors reader, the
// whole units that chunks end on, and the decode kernel's dispatch on a storage.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { disposeBackends, getBackend } from '../../src/compute/backend';
import { decodeKernel } from '../../src/compute/decode/decode';
import { chunkElementsOf, MemorySource, openSource, partsOf, plainStorage, READERS, storageOf, storageUnit, storedBytes, type StorageType } from '../../src/format';
import { paddedFile, pattern } from '../fixtures/golden';

after(() => disposeBackends());

// ggml's Q4_0: 32 values in 18 bytes (an f16 scale and 16 bytes of nibbles).
const Q4_0: StorageType = { kind: 'blocks', type: 'Q4_0', blockElements: 32, blockBytes: 18 };

test('a safetensors tensor is stored plainly, in one data part', async () => {
  const json = '{"a":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},"b":{"dtype":"F4","shape":[6],"data_offsets":[12,15]}}';
  const bytes = paddedFile(json, pattern(15, 7));
  const m = await openSource(new MemorySource(bytes, 'm.safetensors'), 'm.safetensors', 'm.safetensors');
  try {
    for (const t of m.tensors) {
      // A plain tensor carries no storage of its own: a 50,000-tensor header allocates none.
      assert.equal(t.storage, undefined);
      assert.deepEqual(storageOf(t), { kind: 'dtype', dtype: t.dtype });
      assert.equal(storageOf(t), plainStorage(t.dtype), 'one shared storage object per dtype');
      assert.deepEqual(partsOf(t), [{ role: 'data', file: 0, byteOffset: t.byteOffset, byteLength: t.byteLength }]);
    }
  } finally {
    await m.close();
  }
  assert.equal(READERS[READERS.length - 1].name, 'safetensors', 'safetensors is the fallback, after every specific reader');
});

test('units: whole elements that end on a byte, or whole blocks', () => {
  assert.deepEqual(storageUnit(plainStorage('BF16')), { elements: 1, bytes: 2 });
  assert.deepEqual(storageUnit(plainStorage('F4')), { elements: 2, bytes: 1 });
  assert.deepEqual(storageUnit(plainStorage('F6_E2M3')), { elements: 4, bytes: 3 });
  assert.deepEqual(storageUnit(Q4_0), { elements: 32, bytes: 18 });
  // A chunk never splits a block, and holds at least one.
  assert.equal(chunkElementsOf(Q4_0, 1 << 20), Math.floor((1 << 20) / 18) * 32);
  assert.equal(chunkElementsOf(Q4_0, 10), 32);
  assert.equal(chunkElementsOf(plainStorage('F6_E3M2'), 10), 12);
  assert.equal(storedBytes(Q4_0, 96), 54);
  assert.throws(() => storedBytes(Q4_0, 40), /not a whole number of 32-value units/);
});

test('decode takes a plain storage as its dtype, and names a block type it has no decoder for', async () => {
  const cpu = await getBackend('cpu');
  // BF16 0x3f80 = 1, 0xc000 = -2.
  const bf16 = new Uint8Array([0x80, 0x3f, 0x00, 0xc0]);
  assert.deepEqual([...(await cpu.run(decodeKernel, { dtype: 'BF16', bytes: bf16, storage: plainStorage('BF16') }))], [1, -2]);
  const unknown = { kind: 'blocks', type: 'Q9_9', blockElements: 32, blockBytes: 18 } as const;
  await assert.rejects(cpu.run(decodeKernel, { dtype: 'U8', bytes: new Uint8Array(36), storage: unknown }), /no decoder for the block type Q9_9/);
  // Every ggml type has one: two Q4_0 blocks of scale 1 (f16 0x3c00) and code 8 (nibbles 0x88) decode to zeros.
  const q4 = new Uint8Array(36);
  for (const b of [0, 18]) q4.set([0x00, 0x3c, ...new Array(16).fill(0x88)], b);
  assert.deepEqual([...(await cpu.run(decodeKernel, { dtype: 'U8', bytes: q4, storage: Q4_0 }))], new Array(64).fill(0));
});
