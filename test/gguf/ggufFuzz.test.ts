import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FormatError } from '../../src/format/errors';
import { ggufArrayItems, readGguf } from '../../src/format/gguf/reader';
import { MemorySource, type ByteSource } from '../../src/format/source';
import { buildGguf, V, type Bytes, type TensorSpec } from './ggufBuild';

/**
 * Mutated GGUF files: only FormatError may come out, every parse finishes in bounded time, and
 * no read (hence no buffer sized by the file's own claims) exceeds the file's real size. Each
 * lazy array of a file that parses is then decoded too. TW_FUZZ_ITERATIONS raises the count.
 */
const ITERATIONS = Number(process.env.TW_FUZZ_ITERATIONS ?? 10_000);
const SEED = Number(process.env.TW_FUZZ_SEED ?? 0x6075);
/** A parse of a file of a few KiB that takes longer than this is a hang, not slowness. */
const PARSE_LIMIT_MS = 2000;

class Rng {
  constructor(private x: number) {
    this.x = x >>> 0 || 1;
  }
  next(): number {
    let x = this.x;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (this.x = x >>> 0);
  }
  int(n: number): number {
    return this.next() % n;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)];
  }
}

class WatchedSource implements ByteSource {
  maxRead = 0;
  private readonly inner: MemorySource;
  constructor(bytes: Uint8Array) {
    this.inner = new MemorySource(bytes, 'fuzz.gguf');
  }
  get name() {
    return this.inner.name;
  }
  get size() {
    return this.inner.size;
  }
  read(offset: number, into: Uint8Array): Promise<number> {
    this.maxRead = Math.max(this.maxRead, into.length);
    return this.inner.read(offset, into);
  }
  close() {
    return this.inner.close();
  }
}

/** Valid seed files: every value type, long (lazy) and nested arrays, several tensor types. */
function seed(r: Rng): Uint8Array {
  const strs = (n: number) => Array.from({ length: n }, (_, i) => (b: Bytes) => b.str(`t${i}${'é'.repeat(i % 3)}`));
  const kvs = [
    ['general.architecture', ...V.str('llama')],
    ['general.alignment', ...V.u32(r.pick([8, 16, 32, 64]))],
    ['a.u64', ...V.u64(2n ** 63n + BigInt(r.next()))],
    ['a.f32', ...V.f32(1.5)],
    ['a.bool', ...V.bool(1)],
    ['a.tokens', ...V.arr(8, strs(r.pick([3, 70, 200])))],
    ['a.scores', ...V.arr(6, Array.from({ length: r.pick([2, 100]) }, (_, i) => V.f32(i)[1]))],
    ['a.nested', ...V.arr(9, [V.arr(8, strs(2))[1], V.arr(8, strs(80))[1]])],
    ['a.flags', ...V.arr(7, Array.from({ length: 90 }, (_, i) => V.bool(i & 1)[1]))],
  ] as [string, number, (b: Bytes) => void][];
  const tensors: TensorSpec[] = [
    { name: 'tok_embd.weight', ne: [64, 2], type: 8, size: 2 * 2 * 34 },
    { name: 'blk.0.attn_q.weight', ne: [256, 1], type: 12, size: 144 },
    { name: 'norm', ne: [8], type: 0, size: 32 },
    { name: 'h', ne: [4, 2, 1, 1], type: 30, size: 16 },
  ];
  return buildGguf({ kvs: kvs.slice(0, 2 + r.int(kvs.length - 1)), tensors: tensors.slice(0, r.int(tensors.length + 1)), version: r.pick([2, 3]) });
}

const AWKWARD_U64 = [0n, 1n, 7n, 8n, 13n, 64n, 2n ** 31n, 2n ** 32n - 1n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n];
const AWKWARD_BYTES = [0x00, 0xff, 0x7f, 0x80, 0x01, 0x09, 0x08, 0x0c, 0x0d, 0xc3];

function mutate(src: Uint8Array, r: Rng): Uint8Array {
  let b = Array.from(src);
  const rounds = 1 + r.int(4);
  for (let k = 0; k < rounds; k++) {
    const at = r.int(Math.max(1, b.length));
    switch (r.int(7)) {
      case 0:
        if (b.length) b[at] ^= 1 << r.int(8);
        break;
      case 1:
        if (b.length) b[at] = r.pick(AWKWARD_BYTES);
        break;
      case 2: // a count, length or offset that lies (u64-sized, often where one is stored)
        {
          let v = r.pick(AWKWARD_U64);
          if (r.int(3) === 0) v = BigInt(b.length + r.int(64) - 32) & (2n ** 64n - 1n);
          const pos = r.int(2) ? at : 8 + 8 * r.int(2);
          for (let i = 0; i < 8 && pos + i < b.length; i++) b[pos + i] = Number((v >> BigInt(8 * i)) & 255n);
        }
        break;
      case 3:
        b.splice(at, 0, r.pick(AWKWARD_BYTES));
        break;
      case 4:
        b.splice(at, 1 + r.int(16));
        break;
      case 5:
        b = b.slice(0, at);
        break;
      case 6: // a type field set to an awkward value
        if (at + 4 <= b.length) b.splice(at, 4, r.pick([9, 13, 8, 7, 4, 99, 0xffffffff]), 0, 0, 0);
        break;
    }
  }
  return Uint8Array.from(b);
}

test(`GGUF reader: ${ITERATIONS} mutated files, only FormatError, bounded reads and time`, async () => {
  const r = new Rng(SEED);
  const seeds = Array.from({ length: 24 }, () => seed(r));
  let parsed = 0;
  const codes = new Map<string, number>();
  for (let i = 0; i < ITERATIONS; i++) {
    const bytes = mutate(r.pick(seeds), r);
    const source = new WatchedSource(bytes);
    const started = performance.now();
    try {
      const f = await readGguf(source);
      for (const v of f.metadata.values()) if (v.type === 'array' && !v.items) await ggufArrayItems(f, v);
      parsed++;
    } catch (e) {
      if (!(e instanceof FormatError)) assert.fail(`seed ${SEED} iteration ${i}: ${String((e as Error).stack ?? e)}`);
      codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
    }
    const ms = performance.now() - started;
    assert.ok(ms < PARSE_LIMIT_MS, `seed ${SEED} iteration ${i}: ${ms.toFixed(0)} ms`);
    assert.ok(source.maxRead <= bytes.length, `seed ${SEED} iteration ${i}: a read of ${source.maxRead} bytes from a ${bytes.length}-byte file`);
  }
  console.log(`# ${parsed} parsed, refusals by code: ${[...codes].sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} ${n}`).join(', ')}`);
  assert.ok(parsed > 0 && codes.size >= 8, 'the mutations reach both valid files and many rules');
});
