// Builds pickle bytes and ZIP containers by hand, for hostile inputs that no tool would write.
import { deflateRawSync } from 'node:zlib';

export class P {
  private readonly parts: number[] = [];
  op(...bytes: number[]): this {
    return this.raw(bytes);
  }
  raw(bytes: ArrayLike<number>): this {
    for (let i = 0; i < bytes.length; i++) this.parts.push(bytes[i]);
    return this;
  }
  proto(n: number): this {
    return this.op(0x80, n);
  }
  text(s: string): this {
    for (const c of Buffer.from(s, 'latin1')) this.parts.push(c);
    return this;
  }
  global(module: string, name: string): this {
    return this.op(0x63).text(`${module}\n${name}\n`);
  }
  shortStr(s: string): this {
    const b = Buffer.from(s, 'utf8');
    return this.op(0x8c, b.length).raw(b);
  }
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    // BINUNICODE (protocol 1+), which torch's own weights-only loader accepts under protocol 2.
    return this.op(0x58, ...le32(b.length)).raw(b);
  }
  int(n: number): this {
    return this.op(0x4a, ...le32(n));
  }
  bytes(b: Uint8Array): this {
    return this.op(0x42, ...le32(b.length)).raw(b);
  }
  mark(): this {
    return this.op(0x28);
  }
  tuple(): this {
    return this.op(0x74);
  }
  reduce(): this {
    return this.op(0x52);
  }
  put(i: number): this {
    return this.op(0x71, i);
  }
  get(i: number): this {
    return this.op(0x68, i);
  }
  stop(): this {
    return this.op(0x2e);
  }
  build(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

export function le32(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}

function le16(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff];
}

/** A ZIP archive of stored (or deflated) entries, with optional tricks on the central directory. */
export function zip(entries: { name: string; data: Uint8Array; deflate?: boolean; localName?: string }[], opts: { truncateCentral?: number } = {}): Uint8Array {
  const out: number[] = [];
  const central: number[] = [];
  for (const e of entries) {
    const data = e.deflate ? new Uint8Array(deflateRawSync(e.data)) : e.data;
    const name = Buffer.from(e.name, 'utf8');
    const localName = Buffer.from(e.localName ?? e.name, 'utf8');
    const offset = out.length;
    const method = e.deflate ? 8 : 0;
    out.push(...le32(0x04034b50), ...le16(20), ...le16(0x800), ...le16(method), 0, 0, 0, 0, ...le32(0), ...le32(data.length), ...le32(e.data.length), ...le16(localName.length), ...le16(0), ...localName);
    for (const x of data) out.push(x);
    central.push(...le32(0x02014b50), ...le16(20), ...le16(20), ...le16(0x800), ...le16(method), 0, 0, 0, 0, ...le32(0), ...le32(data.length), ...le32(e.data.length), ...le16(name.length), 0, 0, 0, 0, 0, 0, 0, 0, ...le32(0), ...le32(offset), ...name);
  }
  const cdOffset = out.length;
  const cd = opts.truncateCentral !== undefined ? central.slice(0, opts.truncateCentral) : central;
  for (const x of cd) out.push(x);
  out.push(...le32(0x06054b50), 0, 0, 0, 0, ...le16(entries.length), ...le16(entries.length), ...le32(central.length), ...le32(cdOffset), 0, 0);
  return Uint8Array.from(out);
}

/** A torch-style zip checkpoint around `pkl`, with tensor storages `data/<key>`. */
export function torchZip(pkl: Uint8Array, storages: Record<string, Uint8Array> = {}, extra: { name: string; data: Uint8Array }[] = []): Uint8Array {
  return zip([
    { name: 'archive/data.pkl', data: pkl },
    { name: 'archive/byteorder', data: Buffer.from('little') },
    ...Object.entries(storages).map(([k, v]) => ({ name: `archive/data/${k}`, data: v })),
    ...extra,
  ]);
}

/** A pickle of {name: _rebuild_tensor_v2(storage '0' FloatStorage, 0, (n,), (1,), False, OrderedDict())}. */
export function cleanTensorPickle(name: string, n: number): P {
  return new P()
    .proto(2)
    .op(0x7d) // EMPTY_DICT
    .str(name)
    .global('torch._utils', '_rebuild_tensor_v2')
    .mark()
    .mark().str('storage').global('torch', 'FloatStorage').str('0').str('cpu').int(n).tuple()
    .op(0x51) // BINPERSID
    .int(0)
    .mark().int(n).tuple()
    .mark().int(1).tuple()
    .op(0x89) // False
    .global('collections', 'OrderedDict').op(0x29).reduce()
    .tuple()
    .reduce()
    .op(0x73); // SETITEM
}
