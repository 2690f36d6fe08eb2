/** Small safetensors files for the viewer tests, built byte by byte from the spec (independent of the writer). */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';


export interface T {
  name: string;
  dtype: 'F32' | 'BF16' | 'C64';
  shape: number[];
  values: Float64Array;
}

/** A safetensors file built from the spec: u64 header length, JSON header, packed little-endian data. */
export function writeSafetensors(path: string, tensors: T[], metadata?: Record<string, string>): void {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  const parts: Uint8Array[] = [];
  let off = 0;
  for (const t of tensors) {
    let bytes: Uint8Array;
    if (t.dtype === 'F32') bytes = new Uint8Array(Float32Array.from(t.values).buffer);
    else if (t.dtype === 'C64') bytes = new Uint8Array(Float32Array.from(t.values).buffer);
    else {
      // Test values are exactly representable in BF16: the top half of their f32 bits.
      const f = new Float32Array(t.values);
      const u = new Uint32Array(f.buffer);
      const b = new Uint16Array(u.length);
      for (let i = 0; i < u.length; i++) {
        assert.equal(u[i]! & 0xffff, 0, `value ${f[i]} of ${t.name} is not exact in BF16`);
        b[i] = u[i]! >>> 16;
      }
      bytes = new Uint8Array(b.buffer);
    }
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + bytes.length] };
    parts.push(bytes);
    off += bytes.length;
  }
  let json = JSON.stringify(header);
  while (json.length % 8) json += ' ';
  const head = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(head.length));
  writeFileSync(path, Buffer.concat([len, head, ...parts]));
}

/** Deterministic values exact in BF16: k/64 for small integers k (7 significant bits at most). */
export function bf16Values(n: number, seed: number): Float64Array {
  const v = new Float64Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    v[i] = ((s >>> 24) - 128) / 64;
  }
  return v;
}

