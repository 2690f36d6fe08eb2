import { FormatError, type FormatErrorCode } from '../errors';
import type { ByteSource } from '../source';

/**
 * A forward reader over a ByteSource for the GGUF header: little-endian numbers, in bounded
 * chunks, never past the end of the file and never allocating more than the file can back.
 */

/** Bytes fetched per read: large enough that a 150,000-token vocabulary takes a few dozen reads. */
const CHUNK = 1 << 20;

const utf8 = new TextDecoder('utf-8', { fatal: true });

export class Cursor {
  private buf = new Uint8Array(0);
  private view = new DataView(this.buf.buffer);
  /** File offset of buf[0]. */
  private bufStart = 0;
  /** Absolute file offset of the next byte to read. */
  pos: number;

  constructor(
    readonly source: ByteSource,
    pos = 0,
  ) {
    this.pos = pos;
  }

  get remaining(): number {
    return this.source.size - this.pos;
  }

  fail(code: FormatErrorCode, message: string, tensor?: string): never {
    throw new FormatError(code, message, this.source.name, tensor);
  }

  /** Makes `n` (≤ CHUNK) bytes at pos available in buf; fails with `truncated` past the end. */
  private async fill(n: number, what: string): Promise<void> {
    if (n > this.remaining) this.fail('truncated', `${what} at byte ${this.pos} runs past the end of the file (${this.source.size} bytes)`);
    const len = Math.min(Math.max(n, CHUNK), this.remaining);
    const buf = new Uint8Array(len);
    const got = await this.source.read(this.pos, buf);
    if (got < n) this.fail('truncated', `the file ended at byte ${this.pos + got} while reading ${what}`);
    this.buf = buf.subarray(0, got);
    this.view = new DataView(this.buf.buffer, 0, got);
    this.bufStart = this.pos;
  }

  /** Offset in buf of `n` bytes at pos, after which pos moves past them. */
  private async take(n: number, what: string): Promise<number> {
    let at = this.pos - this.bufStart;
    if (at < 0 || at + n > this.buf.length) {
      await this.fill(n, what);
      at = 0;
    }
    this.pos += n;
    return at;
  }

  // Each reader awaits `take` before touching buf or view: a refill replaces both.
  async u8(what: string): Promise<number> {
    const at = await this.take(1, what);
    return this.buf[at];
  }
  async u32(what: string): Promise<number> {
    const at = await this.take(4, what);
    return this.view.getUint32(at, true);
  }
  async u64(what: string): Promise<bigint> {
    const at = await this.take(8, what);
    return this.view.getBigUint64(at, true);
  }

  /** A u64 that must be a safe integer (a count, length or offset). */
  async size(what: string): Promise<number> {
    const at = await this.take(8, what);
    const hi = this.view.getUint32(at + 4, true);
    const lo = this.view.getUint32(at, true);
    // 2^21 × 2^32 = 2^53: anything above is not a safe integer.
    if (hi >= 1 << 21) this.fail('overflow', `${what} ${this.view.getBigUint64(at, true)} is not below 2^53`);
    return hi * 4294967296 + lo;
  }

  /** A fixed-size little-endian value at pos, read through a DataView getter. */
  async fixed<T>(n: number, what: string, get: (v: DataView, at: number) => T): Promise<T> {
    const at = await this.take(n, what);
    return get(this.view, at);
  }

  /** `n` raw bytes; n is checked against the file before anything is allocated. */
  async bytes(n: number, what: string): Promise<Uint8Array> {
    if (n > this.remaining) this.fail('truncated', `${what} of ${n} bytes at byte ${this.pos} runs past the end of the file`);
    if (n <= CHUNK) {
      const at = await this.take(n, what);
      return this.buf.subarray(at, at + n);
    }
    const out = new Uint8Array(n);
    for (let done = 0; done < n; ) {
      const part = Math.min(CHUNK, n - done);
      const at = await this.take(part, what);
      out.set(this.buf.subarray(at, at + part), done);
      done += part;
    }
    return out;
  }

  /** A gguf_string_t: u64 length, then strict UTF-8; `limit` bounds the byte length (checked before reading). */
  async string(what: string, code: FormatErrorCode = 'gguf_string', limit?: { min: number; max: number }): Promise<string> {
    const n = await this.size(`length of ${what}`);
    if (limit && (n < limit.min || n > limit.max)) this.fail(code, `${what} is ${n} bytes long; ${limit.min}–${limit.max} bytes are allowed`);
    if (n > this.remaining) this.fail('gguf_string', `${what} claims ${n} bytes; only ${this.remaining} remain in the file`);
    const b = await this.bytes(n, what);
    try {
      return utf8.decode(b);
    } catch {
      return this.fail('gguf_string', `${what} is not valid UTF-8`);
    }
  }

  /**
   * Moves past `count` gguf strings, checking each length against the file. The lengths are read
   * straight from the buffer while it holds them: a vocabulary is a few hundred thousand strings.
   */
  async skipStrings(count: number, what: string): Promise<void> {
    for (let i = 0; i < count; i++) {
      let at = this.pos - this.bufStart;
      if (at < 0 || at + 8 > this.buf.length) {
        await this.fill(8, `length of ${what}[${i}]`);
        at = 0;
      }
      const hi = this.view.getUint32(at + 4, true);
      const n = hi * 4294967296 + this.view.getUint32(at, true);
      // 2^21 × 2^32 = 2^53, as in size().
      if (hi >= 1 << 21 || n > this.remaining - 8) this.fail('truncated', `${what}[${i}] claims ${n} bytes; only ${this.remaining - 8} remain in the file`);
      this.pos += 8 + n;
    }
  }

  /** Moves past `n` bytes without reading them; fails if they run past the end. */
  skip(n: number, what: string): void {
    if (n > this.remaining) this.fail('truncated', `${what} of ${n} bytes at byte ${this.pos} runs past the end of the file`);
    this.pos += n;
  }
}
