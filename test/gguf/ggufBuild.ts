/**
 * A minimal GGUF byte builder for tests: it writes exactly what it is told, valid or not, so a
 * test can make each rule fail on its own.
 */

export type Enc = (b: Bytes) => void;

export class Bytes {
  private parts: number[] = [];
  get length(): number {
    return this.parts.length;
  }
  u8(v: number): this {
    this.parts.push(v & 255);
    return this;
  }
  u32(v: number): this {
    for (let i = 0; i < 4; i++) this.parts.push((v >>> (8 * i)) & 255);
    return this;
  }
  u64(v: number | bigint): this {
    let x = BigInt.asUintN(64, BigInt(v));
    for (let i = 0; i < 8; i++, x >>= 8n) this.parts.push(Number(x & 255n));
    return this;
  }
  raw(b: ArrayLike<number>): this {
    for (let i = 0; i < b.length; i++) this.parts.push(b[i]);
    return this;
  }
  str(s: string): this {
    const b = new TextEncoder().encode(s);
    return this.u64(b.length).raw(b);
  }
  pad(align: number): this {
    while (this.parts.length % align) this.parts.push(0);
    return this;
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

export interface TensorSpec {
  name: string;
  ne: number[];
  type: number;
  /** Offset in the data section; default: packed after the previous tensor, aligned. */
  offset?: number;
  /** Data bytes; default: zeros of the right size. */
  size: number;
}

export interface GgufSpec {
  version?: number;
  alignment?: number;
  /** key, value type code, encoder of the value. */
  kvs?: [string, number, Enc][];
  tensors?: TensorSpec[];
  /** Override the counts written in the header. */
  tensorCount?: number | bigint;
  kvCount?: number | bigint;
}

export const V = {
  u8: (x: number): [number, Enc] => [0, (b) => b.u8(x)],
  u32: (x: number): [number, Enc] => [4, (b) => b.u32(x)],
  i32: (x: number): [number, Enc] => [5, (b) => b.u32(x)],
  f32: (x: number): [number, Enc] => [6, (b) => b.raw(new Uint8Array(Float32Array.of(x).buffer))],
  bool: (x: number): [number, Enc] => [7, (b) => b.u8(x)],
  str: (s: string): [number, Enc] => [8, (b) => b.str(s)],
  u64: (x: number | bigint): [number, Enc] => [10, (b) => b.u64(x)],
  arr: (itemType: number, items: Enc[]): [number, Enc] => [9, (b) => { b.u32(itemType).u64(items.length); for (const e of items) e(b); }],
};

export function buildGguf(spec: GgufSpec): Uint8Array {
  const align = spec.alignment ?? 32;
  const b = new Bytes().raw([0x47, 0x47, 0x55, 0x46]).u32(spec.version ?? 3);
  const tensors = spec.tensors ?? [];
  const kvs = spec.kvs ?? [];
  b.u64(spec.tensorCount ?? tensors.length).u64(spec.kvCount ?? kvs.length);
  for (const [k, t, enc] of kvs) {
    b.str(k).u32(t);
    enc(b);
  }
  let at = 0;
  const offsets = tensors.map((t) => {
    const off = t.offset ?? at;
    at = Math.ceil((off + t.size) / align) * align;
    return off;
  });
  tensors.forEach((t, i) => {
    b.str(t.name).u32(t.ne.length);
    for (const n of t.ne) b.u64(n);
    b.u32(t.type).u64(offsets[i]);
  });
  if (tensors.length) b.pad(align);
  const data = new Uint8Array(Math.max(0, ...tensors.map((t, i) => offsets[i] + t.size)));
  for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) & 255;
  return b.raw(data).bytes();
}
