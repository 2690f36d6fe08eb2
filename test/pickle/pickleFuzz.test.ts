// Mutated checkpoints (bytes flipped, inserted, removed, truncated) never crash the reader
// and never hang it: each either opens or fails with one FormatError, within a time bound.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FormatError } from '../../src/format/errors';
import { MemorySource } from '../../src/format/source';
import { readTorchCheckpoint } from '../../src/format/pickle/torch';
import { layoutOf } from '../../src/format/pickle/layout';
import { cleanTensorPickle, torchZip } from './pickleBuilder';
import { torchAvailable, torchFixtures } from './torchFixtures';

/** Mutations per seed file: enough to reach every opcode handler and ZIP field many times. */
const RUNS = 4000;
/** One mutated file may take this long; real ones take well under a millisecond. */
const PER_FILE_MS = 2000;

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

function mutate(b: Uint8Array, r: () => number): Uint8Array {
  const out = Uint8Array.from(b);
  const kind = Math.floor(r() * 5);
  const at = Math.floor(r() * out.length);
  if (kind === 0) return out.subarray(0, at); // truncate
  if (kind === 1) {
    for (let i = 0; i < 1 + Math.floor(r() * 8); i++) out[Math.floor(r() * out.length)] = Math.floor(r() * 256);
    return out;
  }
  if (kind === 2) {
    // The pickle sits near the start of a torch zip: aim there too.
    for (let i = 0; i < 4; i++) out[Math.floor(r() * Math.min(out.length, 600))] ^= 1 << Math.floor(r() * 8);
    return out;
  }
  if (kind === 3) {
    const ins = Uint8Array.from({ length: 1 + Math.floor(r() * 16) }, () => Math.floor(r() * 256));
    const res = new Uint8Array(out.length + ins.length);
    res.set(out.subarray(0, at));
    res.set(ins, at);
    res.set(out.subarray(at), at + ins.length);
    return res;
  }
  out[at] = [0x00, 0xff, 0x7f, 0x80][Math.floor(r() * 4)];
  return out;
}

function seeds(): { name: string; bytes: Uint8Array }[] {
  const built = torchZip(cleanTensorPickle('w', 4).stop().build(), { '0': new Uint8Array(16) });
  const out = [{ name: 'built.pt', bytes: built }];
  if (torchAvailable()) {
    for (const f of ['every_dtype.pt', 'views_legacy.pt', 'lightning.ckpt']) out.push({ name: f, bytes: new Uint8Array(readFileSync(join(torchFixtures(), f))) });
  }
  return out;
}

test(`fuzz: ${RUNS} mutations of each seed checkpoint: a FormatError or a result, never a crash or a hang`, async () => {
  let opened = 0;
  let refused = 0;
  for (const [k, seed] of seeds().entries()) {
    const r = rng(0x5eed + k);
    for (let i = 0; i < RUNS; i++) {
      const bytes = mutate(seed.bytes, r);
      const t0 = Date.now();
      try {
        const ckpt = await readTorchCheckpoint(new MemorySource(bytes, seed.name));
        layoutOf(ckpt.root);
        opened++;
      } catch (e) {
        if (!(e instanceof FormatError)) assert.fail(`${seed.name} mutation ${i}: ${(e as Error)?.stack ?? e}`);
        refused++;
      }
      assert.ok(Date.now() - t0 < PER_FILE_MS, `${seed.name} mutation ${i} took ${Date.now() - t0} ms`);
    }
  }
  assert.ok(opened > 0 && refused > 0, `opened ${opened}, refused ${refused}`);
});
