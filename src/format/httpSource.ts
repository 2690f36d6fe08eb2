import { FormatError } from './errors';
import { abortError, discard, hostOf, HttpClient, sleep, type HttpResponse } from './httpClient';
import type { ByteSource } from './source';

/**
 * The first request asks for this many bytes: the 8-byte length and, for nearly every
 * checkpoint, the whole header (a shard of a 70B model lists a few hundred tensors in
 * 20–80 KB), so opening a file costs one round trip. A longer header costs a second
 * request for the rest. 128 KiB takes ~10 ms on a 100 Mbit/s link, less than a round trip.
 */
export const PREFIX_BYTES = 128 << 10;
/**
 * A read is split into ranges of at most this size, fetched in parallel: one TCP stream
 * rarely fills a fast link to a distant CDN, and a dropped range is resumed from where it
 * stopped. Each range fills the caller's buffer in place, so the size costs no memory.
 */
export const MAX_RANGE_BYTES = 4 << 20;
/**
 * Ranges in flight per opener (one model, all its shards): the six connections per host
 * that browsers use, which the Hub's CDN serves at full speed; more invite 429s. With
 * the reader's two 8 MiB chunks in flight that is 4 ranges, so a stream never waits on this.
 */
export const MAX_PARALLEL_RANGES = 6;
/** Tries to re-resolve a cached CDN URL that stopped answering (signed URLs expire after about an hour). */
const MAX_RESOLVES = 1;

/** Bounds the requests in flight across every source of one opener. */
export class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly limit: number) {}

  async run<T>(f: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((r) => this.waiting.push(r));
    this.active++;
    try {
      return await f();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}

/**
 * What identifies one version of the file: a changed value mid-read means mixed data.
 * `linkedEtag` is the Hub's X-Linked-Etag (the LFS object's hash), sent with its redirect
 * to the CDN: it outlives the CDN URL, so a re-resolved URL on another CDN host (with
 * ETags of its own) is checked against it, and `etag` then follows the new host.
 */
interface Version {
  readonly size: number;
  etag: string | null;
  readonly lastModified: string | null;
  readonly linkedEtag: string | null;
}

/** `bytes A-B/TOTAL` (RFC 9110 §14.4); a `*` total is refused, since offsets need the size. */
export function parseContentRange(value: string | null): { start: number; end: number; total: number } | undefined {
  const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(value?.trim() ?? '');
  if (!m) return undefined;
  const [start, end, total] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (![start, end, total].every(Number.isSafeInteger) || end < start || end >= total) return undefined;
  return { start, end, total };
}

/**
 * A file read with HTTP Range requests. Opening it costs one request (the prefix); each
 * read fetches only the bytes asked for, in bounded parallel ranges. Every response must
 * be a 206 for exactly the range asked, of the same file version (size, ETag or
 * Last-Modified) as the first; a server that answers 200 is refused before its body is
 * read, and a body that ends early is resumed where it stopped, never zero-filled.
 */
export class HttpSource implements ByteSource {
  /** The opening prefix, kept until the header has been read from it. */
  private prefix: Uint8Array | undefined;
  /** Where the bytes come from after redirects (the CDN), used until it stops answering. */
  private resolved: string;
  /** The commit the Hub resolved the path's revision to, when it said. */
  repoCommit: string | undefined;

  private constructor(
    private readonly client: HttpClient,
    private readonly limiter: Limiter,
    private readonly url: string,
    readonly name: string,
    private readonly version: Version,
    prefix: Uint8Array,
    resolved: string,
  ) {
    this.prefix = prefix;
    this.resolved = resolved;
  }

  get size(): number {
    return this.version.size;
  }

  /** Requests the prefix: its Content-Range gives the size, its ETag the version that every later read must match. */
  static async open(client: HttpClient, limiter: Limiter, url: string, name: string, signal?: AbortSignal): Promise<HttpSource> {
    return limiter.run(async () => {
      const r = await client.get(url, { range: `bytes=0-${PREFIX_BYTES - 1}` }, name, signal);
      if (r.res.status === 416) {
        // An empty file has no byte 0; its size is in `bytes */0`.
        const total = /^bytes \*\/(\d+)$/.exec(r.res.headers.get('content-range') ?? '');
        await discard(r.res);
        if (total && Number(total[1]) === 0) return new HttpSource(client, limiter, url, name, { size: 0, etag: null, lastModified: null, linkedEtag: null }, new Uint8Array(0), r.url);
        throw new FormatError('http', `${hostOf(r.url)} refused the range of the first ${PREFIX_BYTES} bytes (416)`, name);
      }
      const range = await checkPartial(client, r, name, 0, undefined);
      const version: Version = { size: range.total, etag: r.res.headers.get('etag'), lastModified: r.res.headers.get('last-modified'), linkedEtag: r.linkedEtag ?? null };
      const prefix = new Uint8Array(range.end + 1);
      let got: number;
      try {
        got = await readBody(client, r, prefix, name, signal);
      } catch (e) {
        if (!isRetryable(e)) throw client.failure(e, name, signal);
        got = e.received;
      }
      // The prefix is only a cache: a body cut short keeps what came, and reads fetch the rest.
      const source = new HttpSource(client, limiter, url, name, version, prefix.subarray(0, got), r.url);
      source.repoCommit = r.repoCommit;
      return source;
    });
  }

  async read(offset: number, into: Uint8Array, signal?: AbortSignal): Promise<number> {
    if (offset >= this.size) return 0;
    const n = Math.min(into.length, this.size - offset);
    let from = 0;
    const prefix = this.prefix;
    if (prefix && offset < prefix.length) {
      from = Math.min(n, prefix.length - offset);
      into.set(prefix.subarray(offset, offset + from));
    }
    // The prefix serves the 8-byte length, then the header: the read after the first is the header's.
    if (offset > 0) this.prefix = undefined;
    if (from === n) return n;
    const ranges: [number, number][] = [];
    for (let at = from; at < n; at += MAX_RANGE_BYTES) ranges.push([at, Math.min(n, at + MAX_RANGE_BYTES)]);
    // One failed range aborts its siblings: nothing is left downloading for a read that already failed.
    const local = new AbortController();
    const linked = signal ? AbortSignal.any([signal, local.signal]) : local.signal;
    const results = await Promise.allSettled(
      ranges.map(([a, b]) =>
        this.limiter.run(() => this.fetchRange(offset + a, into.subarray(a, b), linked)).catch((e: unknown) => {
          local.abort();
          throw e;
        }),
      ),
    );
    signal?.throwIfAborted();
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected' && !(r.reason instanceof Error && r.reason.name === 'AbortError'));
    if (failed) throw failed.reason;
    if (results.some((r) => r.status === 'rejected')) throw abortError();
    return n;
  }

  async close(): Promise<void> {
    this.prefix = undefined;
  }

  /**
   * Fills `into` from `start`. A response that delivers all it announced but less than
   * asked (a server may cap its ranges) is followed by a request for the rest; a body
   * that ends or breaks before what it announced costs one of the client's tries, and
   * the next request asks only for what is missing.
   */
  private async fetchRange(start: number, into: Uint8Array, signal: AbortSignal): Promise<void> {
    let got = 0;
    let resolves = 0;
    let failures = 0;
    while (got < into.length) {
      signal.throwIfAborted();
      const from = start + got;
      const to = start + into.length - 1;
      const r = await this.client.get(this.resolved, { range: `bytes=${from}-${to}` }, this.name, signal);
      if ((r.res.status === 401 || r.res.status === 403 || r.res.status === 410) && this.resolved !== this.url && resolves < MAX_RESOLVES) {
        // A signed CDN URL expired: ask the origin again for a fresh one.
        await discard(r.res);
        resolves++;
        this.resolved = this.url;
        continue;
      }
      if (r.res.status === 416) {
        await discard(r.res);
        throw new FormatError('file_changed', `${hostOf(r.url)} has fewer than ${to + 1} bytes now; the file changed since it was opened`, this.name);
      }
      const range = await checkPartial(this.client, r, this.name, from, this.version);
      this.resolved = r.url;
      const announced = Math.min(range.end - from + 1, into.length - got);
      let n: number;
      let why: unknown;
      try {
        n = await readBody(this.client, r, into.subarray(got, got + announced), this.name, signal);
      } catch (e) {
        if (!isRetryable(e) || signal.aborted) throw this.client.failure(e, this.name, signal);
        // Bytes already received stay: the next request asks only for the rest.
        n = e.received;
        why = e.why;
      }
      got += n;
      if (n === announced) continue;
      if (++failures >= this.client.attempts) {
        if (why !== undefined) throw this.client.failure(why, this.name, signal);
        throw new FormatError('http', `${hostOf(r.url)} sent ${got} of the ${into.length} bytes from offset ${start} in ${failures} tries`, this.name);
      }
      await sleep(this.client.delayMs(failures), signal);
    }
  }
}

/** A body that ended or broke before its last byte; `received` bytes of it were kept. */
class ShortBody extends Error {
  constructor(
    readonly received: number,
    readonly why: unknown,
  ) {
    super(`the connection broke after ${received} bytes`);
  }
}

function isRetryable(e: unknown): e is ShortBody {
  return e instanceof ShortBody && !(e.why instanceof FormatError) && !(e.why instanceof Error && e.why.name === 'AbortError');
}

/**
 * Checks that a response is a 206 for a range starting at `from` of the expected
 * version. A 200 means the server ignores Range: its body (the whole file) is dropped unread.
 */
async function checkPartial(client: HttpClient, r: HttpResponse, name: string, from: number, version: Version | undefined): Promise<{ start: number; end: number; total: number }> {
  const { res } = r;
  if (res.status === 200) {
    await discard(res);
    throw new FormatError('http_no_range', `${hostOf(r.url)} ignores Range requests (it answered 200 with the whole file); reading a model this way would download all of it, so it is refused`, name);
  }
  if (res.status !== 206) throw await client.statusError(r, name);
  const range = parseContentRange(res.headers.get('content-range'));
  if (!range || range.start !== from) {
    await discard(res);
    throw new FormatError('http', `${hostOf(r.url)} answered a range request with Content-Range '${res.headers.get('content-range') ?? ''}', not bytes ${from}-…/size`, name);
  }
  if (version) {
    const etag = res.headers.get('etag');
    const lastModified = res.headers.get('last-modified');
    const linked = r.linkedEtag ?? null;
    const viaHub = version.linkedEtag !== null && linked !== null;
    const changed =
      range.total !== version.size ||
      (viaHub && linked !== version.linkedEtag) ||
      (!viaHub && version.etag !== null && etag !== null && etag !== version.etag) ||
      (!viaHub && version.etag === null && version.lastModified !== null && lastModified !== null && lastModified !== version.lastModified);
    if (viaHub && !changed) version.etag = etag;
    if (changed) {
      await discard(res);
      throw new FormatError('file_changed', `the file on ${hostOf(r.url)} changed since it was opened (size ${range.total}, ETag ${etag ?? 'none'}; was ${version.size}, ${version.etag ?? 'none'}); reopen it`, name);
    }
  }
  return range;
}

/**
 * Copies a 206 body into `into`; returns the bytes received (fewer when the server ended
 * the body early). A broken connection throws ShortBody with what was kept; more bytes
 * than asked is an error, not something to truncate.
 */
async function readBody(client: HttpClient, r: HttpResponse, into: Uint8Array, name: string, signal?: AbortSignal): Promise<number> {
  let got = 0;
  try {
    for await (const chunk of client.bodyChunks(r.res, signal)) {
      if (got + chunk.length > into.length) {
        throw new FormatError('http', `${hostOf(r.url)} sent more bytes than the ${into.length} asked for`, name);
      }
      into.set(chunk, got);
      got += chunk.length;
    }
  } catch (e) {
    if (e instanceof FormatError || signal?.aborted) throw e instanceof FormatError ? e : abortError();
    throw new ShortBody(got, e);
  }
  return got;
}
