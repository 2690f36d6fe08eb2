import { FormatError } from '../errors';

/**
 * A minimal protobuf wire-format reader: varints, fixed32/64 and length-delimited
 * fields, every length checked against the bytes left. It knows no schema; callers
 * pick the fields they need and skip the rest.
 */

export const WIRE = { varint: 0, fixed64: 1, bytes: 2, fixed32: 5 } as const;

// A varint holds at most 64 bits: 10 groups of 7. More means a corrupt or hostile file.
const MAX_VARINT_BYTES = 10;

export interface ProtoField {
  readonly field: number;
  readonly wire: number;
  /** varint (as a number; values past 2^53 lose precision, which no field we read reaches). */
  readonly int: number;
  /** fixed32 bits, for float fields. */
  readonly f32: number;
  /** Bytes of a length-delimited field: a view into the message, not a copy. */
  readonly bytes: Uint8Array;
}

export class ProtoReader {
  private pos = 0;
  private readonly view: DataView;
  constructor(
    private readonly buf: Uint8Array,
    private readonly file?: string,
  ) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  private fail(msg: string): never {
    throw new FormatError('tokenizer_invalid', `protobuf: ${msg} at byte ${this.pos}`, this.file);
  }

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  varint(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < MAX_VARINT_BYTES; i++) {
      if (this.pos >= this.buf.length) this.fail('varint runs past the end');
      const b = this.buf[this.pos++];
      result += (b & 0x7f) * mul;
      if (!(b & 0x80)) return result;
      mul *= 128;
    }
    return this.fail('varint longer than 10 bytes');
  }

  private take(n: number): Uint8Array {
    if (n > this.buf.length - this.pos) this.fail(`field of ${n} bytes runs past the end`);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** The next field, or undefined at the end of the message. */
  next(): ProtoField | undefined {
    if (this.done) return undefined;
    const key = this.varint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (field === 0) this.fail('field number 0');
    const empty = this.buf.subarray(0, 0);
    switch (wire) {
      case WIRE.varint:
        return { field, wire, int: this.varint(), f32: 0, bytes: empty };
      case WIRE.fixed64:
        this.take(8);
        return { field, wire, int: 0, f32: 0, bytes: empty };
      case WIRE.bytes:
        return { field, wire, int: 0, f32: 0, bytes: this.take(this.varint()) };
      case WIRE.fixed32: {
        const at = this.pos;
        this.take(4);
        return { field, wire, int: 0, f32: this.view.getFloat32(at, true), bytes: empty };
      }
      default:
        return this.fail(`wire type ${wire} (groups are not used by any format read here)`);
    }
  }
}
