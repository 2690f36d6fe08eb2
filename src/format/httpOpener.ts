import { FormatError } from './errors';
import { hostOf, HttpClient, sleep, type HttpClientOptions } from './httpClient';
import { HttpSource, Limiter, MAX_PARALLEL_RANGES } from './httpSource';
import type { SourceOpener } from './model';
import type { ByteSource } from './source';

export const DEFAULT_HF_ENDPOINT = 'https://huggingface.co';
/** An index or a config read whole over HTTP gets the same cap as an index on disk (MAX_INDEX_BYTES). */
const MAX_TEXT_BYTES = 100_000_000;
/** A page of a repository listing: a few hundred bytes per file, so 10 MB is tens of thousands of files. */
const MAX_LISTING_BYTES = 10_000_000;
/**
 * Pages of a listing followed: the Hub pages a folder by about a thousand files, and a
 * model folder holds tens; fifty pages is a folder no one opens as one model.
 */
const MAX_LISTING_PAGES = 50;

/** True for what `openModel` reads over HTTP: `https://…`, `http://…` and `hf://OWNER/REPO…`. */
export function isRemotePath(path: string): boolean {
  return /^(https?|hf):\/\//i.test(path);
}

/**
 * The Hub to read `hf://` paths from, and the only origin that ever receives the token:
 * `TW_HF_ENDPOINT`, else `HF_ENDPOINT` (as huggingface_hub reads it, for mirrors), else huggingface.co.
 */
export function hubEndpoint(env: NodeJS.ProcessEnv = process.env): string {
  const raw = env.TW_HF_ENDPOINT || env.HF_ENDPOINT || DEFAULT_HF_ENDPOINT;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new FormatError('unsupported', `is not a URL`, raw);
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new FormatError('unsupported', 'a Hub endpoint must be an http(s) URL', raw);
  return u.href.replace(/\/+$/, '');
}

export interface HubPath {
  readonly owner: string;
  readonly name: string;
  /** Branch, tag or commit; `main` when the path names none. */
  readonly revision: string;
  /** The path inside the repository ('' for the repository itself). */
  readonly file: string;
}

const REPO_PART = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/**
 * `hf://OWNER/REPO[@REVISION][/PATH]`. A revision with a slash (`refs/pr/1`) is written
 * percent-encoded (`@refs%2Fpr%2F1`), as the Hub's own URLs do.
 */
export function parseHubPath(path: string): HubPath {
  if (!/^hf:\/\//i.test(path)) throw new FormatError('unsupported', 'is not an hf:// path', path);
  const parts = path.slice('hf://'.length).split('/');
  const [owner, repo = ''] = parts;
  const at = repo.indexOf('@');
  const name = at < 0 ? repo : repo.slice(0, at);
  let revision = 'main';
  if (at >= 0) {
    try {
      revision = decodeURIComponent(repo.slice(at + 1));
    } catch {
      revision = '';
    }
  }
  if (!REPO_PART.test(owner) || !REPO_PART.test(name) || revision === '') {
    throw new FormatError('unsupported', 'an hf:// path is hf://OWNER/REPO[@REVISION]/PATH', path);
  }
  const rest = parts.slice(2);
  if (rest.length > 0 && rest[rest.length - 1] === '') rest.pop();
  if (rest.some((s) => s === '' || s === '.' || s === '..')) throw new FormatError('unsupported', 'the path inside the repository has an empty, . or .. part', path);
  return { owner, name, revision, file: rest.join('/') };
}

const encodePath = (p: string): string => p.split('/').map(encodeURIComponent).join('/');

/** The Hub's download URL for a file: `ENDPOINT/OWNER/REPO/resolve/REVISION/PATH`. */
export function hubFileUrl(endpoint: string, p: HubPath): string {
  return `${endpoint}/${p.owner}/${p.name}/resolve/${encodeURIComponent(p.revision)}/${encodePath(p.file)}`;
}

/** The Hub's listing of a folder: `ENDPOINT/api/models/OWNER/REPO/tree/REVISION[/PATH]`. */
export function hubTreeUrl(endpoint: string, p: HubPath): string {
  return `${endpoint}/api/models/${p.owner}/${p.name}/tree/${encodeURIComponent(p.revision)}${p.file ? '/' + encodePath(p.file) : ''}`;
}

export interface HttpOpenerOptions extends Omit<HttpClientOptions, 'authOrigin'> {
  /** The Hub; defaults to `hubEndpoint(env)`. */
  readonly endpoint?: string;
  /** Where `HF_TOKEN` and the endpoint variables are read (tests pass their own). */
  readonly env?: NodeJS.ProcessEnv;
}

/**
 * Opens models over HTTP: `https://` URLs as given, `hf://` paths on the Hub. Paths stay
 * as the user wrote them (errors name them; an index's shards are joined to its folder
 * the same way as on disk). The token (`HF_TOKEN`, or the one given) goes to the Hub only.
 */
export class HttpOpener implements SourceOpener {
  readonly client: HttpClient;
  readonly endpoint: string;
  private readonly limiter = new Limiter(MAX_PARALLEL_RANGES);
  /**
   * `OWNER/REPO@REVISION` → the commit the Hub first resolved it to. Every later file of
   * that revision is read at that commit, so the shards of a model opened at `main`
   * come from one commit even if a push lands while they open.
   */
  private readonly pins = new Map<string, string>();

  constructor(opts: HttpOpenerOptions = {}) {
    const env = opts.env ?? process.env;
    this.endpoint = opts.endpoint ? opts.endpoint.replace(/\/+$/, '') : hubEndpoint(env);
    const token = opts.token ?? (env.HF_TOKEN || undefined);
    this.client = new HttpClient({ ...opts, token, authOrigin: this.endpoint });
  }

  /** The URL that serves a path's bytes. */
  urlOf(path: string): string {
    if (/^hf:\/\//i.test(path)) {
      const hub = parseHubPath(path);
      const pinned = this.pins.get(pinKey(hub));
      return hubFileUrl(this.endpoint, pinned ? { ...hub, revision: pinned } : hub);
    }
    let u: URL;
    try {
      u = new URL(path);
    } catch {
      throw new FormatError('unsupported', 'is not a URL', path);
    }
    if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new FormatError('unsupported', 'only http(s):// and hf:// URLs are read over the network', path);
    // The Hub's page for a file (…/blob/REV/PATH) is HTML; its bytes are at …/resolve/REV/PATH.
    if (u.origin === new URL(this.endpoint).origin) u.pathname = u.pathname.replace(/^(\/[^/]+\/[^/]+)\/blob\//, '$1/resolve/');
    return u.href;
  }

  async open(path: string): Promise<ByteSource> {
    const source = await HttpSource.open(this.client, this.limiter, this.urlOf(path), path);
    this.pin(path, source.repoCommit);
    return source;
  }

  async readText(path: string): Promise<string> {
    const { bytes, repoCommit } = await this.getWhole(this.urlOf(path), path, MAX_TEXT_BYTES);
    this.pin(path, repoCommit);
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      throw new FormatError('index_invalid', 'is not valid UTF-8', path);
    }
  }

  /**
   * Lists a folder of a Hub repository through its tree API, following its pages
   * (`Link: <…>; rel="next"`); plain https:// has no listing.
   */
  async list(path: string): Promise<string[]> {
    if (!/^hf:\/\//i.test(path)) {
      throw new FormatError('unsupported', 'an https:// URL must name a .safetensors file or a .safetensors.index.json (a plain web server cannot list a folder)', path);
    }
    const hub = parseHubPath(path);
    const pinned = this.pins.get(pinKey(hub));
    const names: string[] = [];
    let url: string | undefined = hubTreeUrl(this.endpoint, pinned ? { ...hub, revision: pinned } : hub);
    for (let page = 0; url !== undefined; page++) {
      if (page >= MAX_LISTING_PAGES) throw new FormatError('unsupported', `the folder lists more than ${MAX_LISTING_PAGES} pages of files; open its index or a file by name`, path);
      const { bytes, link } = await this.getWhole(url, path, MAX_LISTING_BYTES);
      let entries: unknown;
      try {
        entries = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
      } catch {
        entries = undefined;
      }
      if (!Array.isArray(entries)) throw new FormatError('http', `${hostOf(this.endpoint)} answered the folder listing with something other than a JSON list`, path);
      for (const e of entries as { type?: unknown; path?: unknown }[]) {
        if (e?.type === 'file' && typeof e.path === 'string') names.push(e.path.slice(e.path.lastIndexOf('/') + 1));
      }
      const next = /<([^>]+)>\s*;\s*rel="?next"?/.exec(link ?? '')?.[1];
      url = next === undefined ? undefined : new URL(next, url).href;
    }
    return names;
  }

  private pin(path: string, commit: string | undefined): void {
    if (!commit || !/^hf:\/\//i.test(path) || !/^[0-9a-f]{40}$/.test(commit)) return;
    const key = pinKey(parseHubPath(path));
    if (!this.pins.has(key)) this.pins.set(key, commit);
  }

  /** A small file whole (a plain GET, so a server without Range support still serves it), within `cap` bytes. */
  private async getWhole(url: string, name: string, cap: number): Promise<{ bytes: Uint8Array; repoCommit?: string; link?: string }> {
    for (let attempt = 1; ; attempt++) {
      const r = await this.client.get(url, {}, name);
      if (r.res.status !== 200) throw await this.client.statusError(r, name);
      const declared = Number(r.res.headers.get('content-length') ?? NaN);
      if (declared > cap) {
        await r.res.body?.cancel().catch(() => undefined);
        throw new FormatError('index_invalid', `is ${declared} bytes, above the ${cap}-byte limit for a file read whole`, name);
      }
      const parts: Uint8Array[] = [];
      let got = 0;
      try {
        for await (const chunk of this.client.bodyChunks(r.res)) {
          got += chunk.length;
          if (got > cap) throw new FormatError('index_invalid', `is above the ${cap}-byte limit for a file read whole`, name);
          parts.push(chunk);
        }
        if (Number.isSafeInteger(declared) && got !== declared) throw new Error(`the body ended after ${got} of ${declared} bytes`);
      } catch (e) {
        if (e instanceof FormatError || attempt >= this.client.attempts) throw this.client.failure(e, name, this.client.opts.signal);
        await sleep(this.client.delayMs(attempt), this.client.opts.signal);
        continue;
      }
      const out = new Uint8Array(got);
      let at = 0;
      for (const p of parts) {
        out.set(p, at);
        at += p.length;
      }
      return { bytes: out, repoCommit: r.repoCommit, link: r.res.headers.get('link') ?? undefined };
    }
  }
}

function pinKey(p: HubPath): string {
  return `${p.owner}/${p.name}@${p.revision}`;
}
