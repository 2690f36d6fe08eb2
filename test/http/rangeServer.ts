/**
 * A local HTTP server for the HTTP reader's tests: it serves files with Range requests
 * the way a CDN does (206, Content-Range, ETag), answers the Hub's resolve and tree
 * URLs, and injects faults on demand. It listens on 127.0.0.1 and, as "another host"
 * for redirects, on 127.0.0.2, never beyond loopback, and closes itself after
 * SELF_CLOSE_MS even if a test forgets to.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Far longer than any test file's run; only a test that hangs or forgets close() meets it. */
const SELF_CLOSE_MS = 300_000;
/** Size of each write of a synthetic body: small enough that backpressure stops it early. */
const WRITE_CHUNK = 64 << 10;

export type Fault =
  | { kind: 'status'; status: number; retryAfter?: string; headers?: Record<string, string> }
  /** A 206 whose Content-Length and body hold only the first half of the range asked for. */
  | { kind: 'short' }
  /** A 206 that announces the whole range, sends half, then drops the connection. */
  | { kind: 'drop' }
  /** Headers, then silence (for cancellation and the idle timeout). */
  | { kind: 'stall' }
  /** No answer at all: the request is read and left hanging. */
  | { kind: 'silent' }
  /** A 302 to `to` (a path on this server, or a full URL). */
  | { kind: 'redirect'; to: string };

export interface LoggedRequest {
  readonly path: string;
  /** 127.0.0.1 or 127.0.0.2: which "host" was asked. */
  readonly host: string;
  readonly range?: string;
  readonly authorization?: string;
  status: number;
  bytesSent: number;
}

export interface RangeServer {
  /** `http://127.0.0.1:PORT` */
  readonly base: string;
  /** `http://127.0.0.2:PORT2`: the same files, as another host. */
  readonly other: string;
  readonly log: LoggedRequest[];
  /** Files by URL path (`/m/model.safetensors`); Hub repos live under `/OWNER/REPO/resolve/REV/…`. */
  readonly files: Map<string, Uint8Array>;
  /** Faults for the next requests whose path ends with `suffix` (or any path for ''), one per request, in order. */
  inject(suffix: string, ...faults: Fault[]): void;
  /** Replaces a file's bytes: the next responses carry a new ETag. */
  replace(path: string, bytes: Uint8Array): void;
  /** Paths answered 200 with a synthetic body of this many bytes, ignoring Range. */
  readonly noRange: Map<string, number>;
  /** When set, `/…/resolve/…` requests to 127.0.0.1 are redirected (302) to the same path on the other host, as the Hub does to its CDN. */
  redirectResolve: boolean;
  /** When set, tree listings come in pages of this many entries, linked with `Link: <…>; rel="next"`. */
  pageSize: number | undefined;
  /** When set, no 206 covers more than this many bytes (as some CDNs cap their ranges). */
  capRange: number | undefined;
  /** Hub repo `OWNER/REPO` → its files (`path inside repo` → URL path served). */
  readonly repos: Map<string, Map<string, string>>;
  /** Hub repo → the commit `main` points at: sent as X-Repo-Commit, and accepted as a revision. */
  readonly commits: Map<string, string>;
  close(): Promise<void>;
}

function etagOf(bytes: Uint8Array): string {
  return `"${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}"`;
}

function listen(server: Server, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve((server.address() as AddressInfo).port));
  });
}

/** `otherHost: false` skips the 127.0.0.2 listener (macOS routes only 127.0.0.1 by default); `other` is then ''. */
export async function startRangeServer(opts: { otherHost?: boolean } = {}): Promise<RangeServer> {
  const files = new Map<string, Uint8Array>();
  const etags = new Map<string, string>();
  const faults: { suffix: string; fault: Fault }[] = [];
  const log: LoggedRequest[] = [];
  const repos = new Map<string, Map<string, string>>();
  const commits = new Map<string, string>();
  const noRange = new Map<string, number>();
  let base = '';
  let other = '';

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = decodeURIComponent(url.pathname);
    const entry: LoggedRequest = {
      path,
      host: req.socket.localAddress?.replace(/^::ffff:/, '') ?? '',
      range: req.headers.range,
      authorization: req.headers.authorization,
      status: 0,
      bytesSent: 0,
    };
    log.push(entry);
    const send = (status: number, headers: Record<string, string | number>, body?: Uint8Array) => {
      entry.status = status;
      res.writeHead(status, headers);
      entry.bytesSent += body?.length ?? 0;
      res.end(body);
    };
    const tree = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)(?:\/(.*))?$/.exec(path);
    if (tree) {
      const repo = repos.get(tree[1]);
      if (!repo) return send(404, { 'x-error-code': 'RepoNotFound' });
      const dir = tree[3] ? tree[3] + '/' : '';
      const list = [...repo.keys()].filter((p) => p.startsWith(dir) && !p.slice(dir.length).includes('/')).map((p) => ({ type: 'file', path: p, size: files.get(repo.get(p)!)?.length ?? 0 }));
      const at = Number(url.searchParams.get('cursor') ?? 0);
      const size = state.pageSize ?? list.length;
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (at + size < list.length) headers.link = `<${url.pathname}?cursor=${at + size}>; rel="next"`;
      return send(200, headers, Buffer.from(JSON.stringify(list.slice(at, at + size))));
    }
    let filePath = path;
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    if (resolve) {
      const commit = commits.get(resolve[1]);
      if (commit) res.setHeader('x-repo-commit', commit);
      if (resolve[2] !== 'main' && resolve[2] !== commit) return send(404, { 'x-error-code': 'RevisionNotFound', 'x-error-message': 'Invalid rev id: ' + resolve[2] });
      const mapped = repos.get(resolve[1])?.get(resolve[3]);
      if (!mapped) return send(404, { 'x-error-code': 'EntryNotFound', 'x-error-message': 'Entry not found' });
      if (redirect.on && entry.host === '127.0.0.1') {
        return send(302, { location: `${other}${mapped}?signature=abc`, 'x-linked-etag': etags.get(mapped) ?? '' });
      }
      filePath = mapped;
    }
    const i = faults.findIndex((f) => path.endsWith(f.suffix) || filePath.endsWith(f.suffix));
    const fault = i >= 0 ? faults.splice(i, 1)[0].fault : undefined;
    if (fault?.kind === 'silent') return;
    if (fault?.kind === 'redirect') return send(302, { location: fault.to });
    if (fault?.kind === 'status') return send(fault.status, { ...(fault.retryAfter ? { 'retry-after': fault.retryAfter } : {}), ...fault.headers });
    const synthetic = noRange.get(filePath);
    if (synthetic !== undefined) return sendWhole(res, entry, synthetic);
    const bytes = files.get(filePath);
    if (!bytes) return send(404, {});
    const tag = etags.get(filePath)!;
    const common = { etag: tag, 'accept-ranges': 'bytes', 'last-modified': 'Mon, 07 Dec 2026 00:00:00 GMT' };
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (!m) return send(200, { ...common, 'content-length': bytes.length }, bytes);
    const start = Number(m[1]);
    const end = Math.min(m[2] === '' ? bytes.length - 1 : Number(m[2]), bytes.length - 1, start + (state.capRange ?? Infinity) - 1);
    if (start >= bytes.length) return send(416, { ...common, 'content-range': `bytes */${bytes.length}` });
    const body = bytes.subarray(start, end + 1);
    const headers = { ...common, 'content-range': `bytes ${start}-${end}/${bytes.length}`, 'content-length': body.length };
    if (fault?.kind === 'short') {
      const half = body.subarray(0, Math.floor(body.length / 2));
      return send(206, { ...headers, 'content-length': half.length }, half);
    }
    if (fault?.kind === 'drop' || fault?.kind === 'stall') {
      entry.status = 206;
      res.writeHead(206, headers);
      if (fault.kind === 'stall') return void res.flushHeaders();
      const half = body.subarray(0, Math.floor(body.length / 2));
      entry.bytesSent += half.length;
      res.write(half, () => res.socket?.destroy());
      return;
    }
    send(206, headers, body);
  };

  const redirect = { on: false };
  const state: { capRange: number | undefined; pageSize: number | undefined } = { capRange: undefined, pageSize: undefined };
  const servers = opts.otherHost === false ? [createServer(handler)] : [createServer(handler), createServer(handler)];
  const port = await listen(servers[0], '127.0.0.1');
  base = `http://127.0.0.1:${port}`;
  if (servers.length > 1) other = `http://127.0.0.2:${await listen(servers[1], '127.0.0.2')}`;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    clearTimeout(timer);
    for (const s of servers) s.closeAllConnections();
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  };
  const timer = setTimeout(() => void close(), SELF_CLOSE_MS);
  timer.unref();
  for (const s of servers) s.unref();

  return {
    base,
    other,
    log,
    files,
    inject: (suffix, ...fs) => faults.push(...fs.map((fault) => ({ suffix, fault }))),
    replace: (p, bytes) => {
      files.set(p, bytes);
      etags.set(p, etagOf(bytes));
    },
    noRange,
    get redirectResolve() {
      return redirect.on;
    },
    set redirectResolve(v: boolean) {
      redirect.on = v;
    },
    get pageSize() {
      return state.pageSize;
    },
    set pageSize(v: number | undefined) {
      state.pageSize = v;
    },
    get capRange() {
      return state.capRange;
    },
    set capRange(v: number | undefined) {
      state.capRange = v;
    },
    repos,
    commits,
    close,
  };
}

/** A 200 with a large synthetic body, written with backpressure until the client goes away. */
function sendWhole(res: ServerResponse, entry: LoggedRequest, size: number): void {
  entry.status = 200;
  res.writeHead(200, { 'content-length': size, etag: '"whole"' });
  const chunk = new Uint8Array(WRITE_CHUNK);
  let sent = 0;
  let gone = false;
  res.on('close', () => (gone = true));
  const pump = () => {
    while (!gone && sent < size) {
      const n = Math.min(WRITE_CHUNK, size - sent);
      sent += n;
      entry.bytesSent = sent;
      if (!res.write(n === WRITE_CHUNK ? chunk : chunk.subarray(0, n))) return void res.once('drain', pump);
    }
    if (!gone) res.end();
  };
  pump();
}

/** Adds a file to the server (with its ETag); `path` is the URL path. */
export function serve(server: RangeServer, path: string, bytes: Uint8Array): string {
  server.replace(path, bytes);
  return server.base + path;
}
