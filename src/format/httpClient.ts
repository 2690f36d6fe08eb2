import { FormatError } from './errors';

/**
 * Redirects followed per request. The Hub needs one (its resolve URL to the CDN for
 * large files) or two (a renamed repository first); ten leaves room for proxies and
 * still stops a redirect loop at once.
 */
const MAX_REDIRECTS = 10;
/** Tries per request for 429, 5xx and dropped connections: rides out a restart of a server or a brief rate limit. */
const MAX_ATTEMPTS = 5;
/** First backoff; it doubles each try (0.5, 1, 2, 4 s), with jitter so parallel ranges do not retry in step. */
const BASE_DELAY_MS = 500;
/**
 * Longest wait between tries, also the cap on a server's Retry-After: a rate limiter
 * that asks for minutes is better reported than waited on with a frozen progress bar.
 */
const MAX_DELAY_MS = 30_000;
/**
 * A response that sends no byte for this long is a stalled connection, aborted and
 * retried: a CDN sends its first byte within a second, and a live transfer never
 * pauses this long between packets.
 */
const IDLE_TIMEOUT_MS = 30_000;
/** Characters of a server's error message kept in ours: enough for the Hub's reasons, bounded for one line. */
const SERVER_MESSAGE_CHARS = 200;

/** Statuses worth another try: rate limited, or a server or gateway that failed for now. */
const RETRY_STATUSES = new Set([408, 429, 500, 502, 503, 504]);
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

export interface HttpClientOptions {
  /** Bearer token, sent only to `authOrigin` (the Hub), never to a host a redirect leads to. */
  readonly token?: string | (() => Promise<string | undefined>);
  /** The only origin (`https://huggingface.co`) that ever sees the token. */
  readonly authOrigin?: string;
  /** Aborts every request of this client (the CLI's Ctrl-C, the extension's deactivation). */
  readonly signal?: AbortSignal;
  readonly attempts?: number;
  readonly baseDelayMs?: number;
  readonly maxDelayMs?: number;
  readonly idleTimeoutMs?: number;
  readonly fetch?: typeof fetch;
}

export interface HttpResponse {
  readonly res: Response;
  /** The URL that answered, after redirects. */
  readonly url: string;
  /** The Hub's X-Linked-Etag from a redirect on the way (the LFS object's hash), when there was one. */
  readonly linkedEtag?: string;
  /** The Hub's X-Repo-Commit: the commit a branch or tag resolved to. */
  readonly repoCommit?: string;
}

/** Not the caller's cancellation: a stalled response, aborted by the idle timer and retried. */
class StalledError extends Error {
  constructor() {
    super(`no data for ${IDLE_TIMEOUT_MS / 1000} s`);
  }
}

/** What `isCancelled` (src/pipelines/job) recognises, without the format layer importing pipelines. */
export function abortError(): Error {
  const e = new Error('cancelled');
  e.name = 'AbortError';
  return e;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError());
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Seconds or an HTTP date, as RFC 9110 allows; undefined when absent or unreadable. */
export function retryAfterMs(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const s = value.trim();
  if (/^\d+$/.test(s)) return Number(s) * 1000;
  const t = Date.parse(s);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

function oneLine(s: string): string {
  const t = s.replace(/\s+/g, ' ').trim();
  return t.length > SERVER_MESSAGE_CHARS ? t.slice(0, SERVER_MESSAGE_CHARS) + '…' : t;
}

/**
 * Requests over Node's `fetch` with the rules every read needs: redirects followed by
 * hand (bounded, https never downgraded, the token dropped on any other origin), 429
 * and 5xx retried with backoff, a stall timeout, and errors as `FormatError`s that name
 * the file as the user wrote it (never a signed CDN URL, never the token).
 */
export class HttpClient {
  private readonly fetchFn: typeof fetch;
  readonly attempts: number;

  constructor(readonly opts: HttpClientOptions = {}) {
    this.fetchFn = opts.fetch ?? fetch;
    this.attempts = opts.attempts ?? MAX_ATTEMPTS;
  }

  /** Backoff before try `attempt` (1-based count of failures so far), or the server's Retry-After within the cap. */
  delayMs(attempt: number, retryAfter?: number): number {
    const max = this.opts.maxDelayMs ?? MAX_DELAY_MS;
    if (retryAfter !== undefined) return Math.min(retryAfter, max);
    const base = (this.opts.baseDelayMs ?? BASE_DELAY_MS) * 2 ** (attempt - 1);
    return Math.min(max, base * (0.75 + Math.random() / 2));
  }

  /** The caller's signal and the client's, as one (either aborts the request). */
  linkSignal(signal?: AbortSignal): AbortSignal | undefined {
    const own = this.opts.signal;
    if (!own) return signal;
    if (!signal) return own;
    return AbortSignal.any([own, signal]);
  }

  /**
   * One GET, redirects followed, retried on 429/5xx and on network failures. Returns the
   * first response that is neither: the caller reads its body through `bodyChunks`.
   * `name` is the file as the user wrote it, for errors.
   */
  async get(url: string, headers: Record<string, string>, name: string, signal?: AbortSignal): Promise<HttpResponse> {
    const linked = this.linkSignal(signal);
    for (let attempt = 1; ; attempt++) {
      linked?.throwIfAborted();
      let r: HttpResponse;
      try {
        r = await this.follow(url, headers, name, linked);
      } catch (e) {
        if (e instanceof FormatError || linked?.aborted || attempt >= this.attempts || !transient(e)) throw this.failure(e, name, linked);
        await sleep(this.delayMs(attempt), linked);
        continue;
      }
      if (!RETRY_STATUSES.has(r.res.status)) return r;
      const wait = this.delayMs(attempt, retryAfterMs(r.res.headers.get('retry-after')));
      await discard(r.res);
      if (attempt >= this.attempts) {
        throw new FormatError('http', `${hostOf(r.url)} answered ${r.res.status} ${r.res.statusText} ${this.attempts} times; try again later`.replace(/ +/g, ' '), name);
      }
      await sleep(wait, linked);
    }
  }

  /** Turns a network failure or an abort into the error the caller should see. */
  failure(e: unknown, name: string, signal?: AbortSignal): unknown {
    if (signal?.aborted) return abortError();
    if (e instanceof FormatError) return e;
    const cause = (e as { cause?: { code?: string; message?: string } })?.cause;
    const why = cause?.code ?? cause?.message ?? (e as Error)?.message ?? String(e);
    return new FormatError('http', transient(e) ? `the connection failed after ${this.attempts} tries (${why})` : `the connection failed (${why})`, name);
  }

  private async follow(url: string, headers: Record<string, string>, name: string, signal?: AbortSignal): Promise<HttpResponse> {
    let current = url;
    let linkedEtag: string | undefined;
    let repoCommit: string | undefined;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const h: Record<string, string> = { 'accept-encoding': 'identity', 'user-agent': 'tensor-workbench', ...headers };
      const token = await this.tokenFor(current);
      if (token) h.authorization = `Bearer ${token}`;
      const res = await this.fetchHeaders(current, h, signal);
      repoCommit = res.headers.get('x-repo-commit') || repoCommit;
      if (!REDIRECT_STATUSES.has(res.status)) return { res, url: current, linkedEtag, repoCommit };
      const location = res.headers.get('location');
      linkedEtag = res.headers.get('x-linked-etag') || linkedEtag;
      await discard(res);
      if (!location) throw new FormatError('http', `${hostOf(current)} answered ${res.status} without a Location`, name);
      const next = new URL(location, current);
      if (next.protocol !== 'https:' && next.protocol !== 'http:') throw new FormatError('http', `a redirect leads to a ${next.protocol} URL, which is not read`, name);
      if (new URL(current).protocol === 'https:' && next.protocol === 'http:') throw new FormatError('http', `${hostOf(current)} redirects from https to plain http; refused`, name);
      current = next.href;
    }
    throw new FormatError('http', `more than ${MAX_REDIRECTS} redirects`, name);
  }

  /** A fetch whose headers must arrive within the idle timeout: a server that accepts and says nothing is retried, not waited on. */
  private async fetchHeaders(url: string, headers: Record<string, string>, signal?: AbortSignal): Promise<Response> {
    const stall = new AbortController();
    const timer = setTimeout(() => stall.abort(new StalledError()), this.opts.idleTimeoutMs ?? IDLE_TIMEOUT_MS);
    try {
      return await this.fetchFn(url, { headers, redirect: 'manual', signal: signal ? AbortSignal.any([signal, stall.signal]) : stall.signal });
    } finally {
      clearTimeout(timer);
    }
  }

  private async tokenFor(url: string): Promise<string | undefined> {
    const t = this.opts.token;
    if (!t || !this.opts.authOrigin || new URL(url).origin !== new URL(this.opts.authOrigin).origin) return undefined;
    return typeof t === 'string' ? t : await t();
  }

  /**
   * A FormatError for a final response that is not a success: 404 and the Hub's
   * not-found codes become `not_found` (so an index's missing shard reads as
   * `shard_missing`), 401/403 `http_auth`, anything else `http`.
   */
  async statusError(r: HttpResponse, name: string): Promise<FormatError> {
    const { res } = r;
    const hubCode = res.headers.get('x-error-code') ?? '';
    const hubMessage = res.headers.get('x-error-message');
    await discard(res);
    const said = hubMessage ? `: ${oneLine(hubMessage)}` : '';
    if (res.status === 404 || /NotFound$/.test(hubCode)) return new FormatError('not_found', `${hostOf(r.url)} has no such file (${res.status}${said})`, name);
    if (res.status === 401 || res.status === 403 || hubCode === 'GatedRepo') {
      const sent = this.opts.token !== undefined && this.opts.authOrigin !== undefined && new URL(r.url).origin === new URL(this.opts.authOrigin).origin;
      const hint = sent ? 'the token has no access to it' : 'set HF_TOKEN (or, in VS Code, run "Set Hugging Face Token") for a gated or private repository';
      return new FormatError('http_auth', `${hostOf(r.url)} refused access (${res.status}${said}); ${hint}`, name);
    }
    return new FormatError('http', `${hostOf(r.url)} answered ${res.status} ${res.statusText}${said}`.replace(/ +/g, ' ').trim(), name);
  }

  /**
   * Reads a response body chunk by chunk; a chunk that takes longer than the idle
   * timeout aborts the response with a StalledError (retryable, unlike a cancel).
   */
  async *bodyChunks(res: Response, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
    if (!res.body) return;
    const reader = res.body.getReader();
    const idle = this.opts.idleTimeoutMs ?? IDLE_TIMEOUT_MS;
    const linked = this.linkSignal(signal);
    let timer: NodeJS.Timeout | undefined;
    const onAbort = () => void reader.cancel().catch(() => undefined);
    linked?.addEventListener('abort', onAbort, { once: true });
    try {
      for (;;) {
        const stalled = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new StalledError()), idle);
        });
        const { done, value } = await Promise.race([reader.read(), stalled]);
        clearTimeout(timer);
        if (linked?.aborted) throw abortError();
        if (done) return;
        yield value;
      }
    } finally {
      clearTimeout(timer);
      linked?.removeEventListener('abort', onAbort);
      await reader.cancel().catch(() => undefined);
    }
  }
}

/** False for failures another try cannot fix: an unknown host name, a certificate the client refuses. */
function transient(e: unknown): boolean {
  const code = String((e as { cause?: { code?: unknown } })?.cause?.code ?? '');
  return code !== 'ENOTFOUND' && !/CERT|SSL|TLS|SELF_SIGNED/.test(code);
}

/** Ends a response without reading its body: the connection is dropped rather than drained. */
export async function discard(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => undefined);
}

/** The host of a URL, for messages: never the path or query, which may carry a signature. */
export function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return 'the server';
  }
}
