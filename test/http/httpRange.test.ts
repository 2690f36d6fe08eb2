/**
 * The HTTP ByteSource and opener against a local Range server: request counts for the
 * header, byte-exact reads, and every fault a CDN or a proxy can produce.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { FormatError, HttpOpener, openModel, parseHubPath, hubFileUrl, type FormatErrorCode } from '../../src/format';
import { retryAfterMs } from '../../src/format/httpClient';
import { MAX_RANGE_BYTES, PREFIX_BYTES, parseContentRange } from '../../src/format/httpSource';
import { paddedFile, pattern } from '../fixtures/golden';
import { openerFor } from '../../src/vscode/workspaceSource';
import { REMOTE_SCHEME, setHubTokenSource } from '../../src/vscode/remoteSource';
import type * as vscode from 'vscode';
import { serve, startRangeServer, type Fault, type RangeServer } from './rangeServer';

let server: RangeServer;
before(async () => {
  server = await startRangeServer();
});
after(() => server.close());

/** Short backoff: the retry logic is under test, not the production delays. */
function opener(extra: ConstructorParameters<typeof HttpOpener>[0] = {}): HttpOpener {
  return new HttpOpener({ endpoint: server.base, env: {}, baseDelayMs: 5, maxDelayMs: 3000, ...extra });
}

/** A safetensors file of `count` U8 tensors of `each` bytes; names padded so the header reaches `nameLen` per entry. */
function modelBytes(count: number, each: number, nameLen = 8, seed = 1): Uint8Array {
  const parts: string[] = [];
  for (let i = 0; i < count; i++) parts.push(`"${`t${i}`.padEnd(nameLen, '_')}":{"dtype":"U8","shape":[${each}],"data_offsets":[${i * each},${(i + 1) * each}]}`);
  return paddedFile(`{"__metadata__":{"format":"pt"},${parts.join(',')}}`, pattern(count * each, seed));
}

function requestsFor(path: string, since: number): number {
  return server.log.slice(since).filter((r) => r.path === path).length;
}

async function rejectsWith(p: Promise<unknown>, code: FormatErrorCode, message?: RegExp): Promise<FormatError> {
  let err: unknown;
  await assert.rejects(p, (e) => ((err = e), true));
  assert.ok(err instanceof FormatError, `expected FormatError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  if (message) assert.match(err.message, message);
  return err;
}

async function readAll(path: string, o = opener()): Promise<{ bytes: Map<string, Uint8Array>; requests: number }> {
  const since = server.log.length;
  const m = await openModel(path, o);
  const bytes = new Map<string, Uint8Array>();
  try {
    for (const t of m.tensors) {
      const b = new Uint8Array(t.byteLength);
      await m.read(t, 0, b);
      bytes.set(t.name, b);
    }
  } finally {
    await m.close();
  }
  return { bytes, requests: server.log.length - since };
}

test('a header within the prefix costs one request; a longer one two', async () => {
  const small = modelBytes(3, 10);
  const url = serve(server, '/one/small.safetensors', small);
  let since = server.log.length;
  const m = await openModel(url, opener());
  assert.equal(requestsFor('/one/small.safetensors', since), 1);
  assert.deepEqual(m.tensors.map((t) => t.name), ['t0______', 't1______', 't2______']);
  await m.close();

  // About 2,000 entries of ~100 bytes: a header past the 128 KiB prefix.
  const big = modelBytes(2000, 4, 40);
  assert.ok(big.length > PREFIX_BYTES + 8);
  const bigUrl = serve(server, '/one/big.safetensors', big);
  since = server.log.length;
  const m2 = await openModel(bigUrl, opener());
  assert.equal(requestsFor('/one/big.safetensors', since), 2);
  assert.equal(m2.tensors.length, 2000);
  // The data of the last tensor, read over the network, is the file's own bytes.
  const last = m2.tensors[1999];
  const got = new Uint8Array(4);
  await m2.read(last, 0, got);
  assert.deepEqual(got, big.subarray(last.byteOffset, last.byteOffset + 4));
  await m2.close();
});

test('a large tensor is read in bounded ranges, byte for byte', async () => {
  const each = MAX_RANGE_BYTES * 2 + 12345;
  const file = modelBytes(2, each, 8, 7);
  const url = serve(server, '/ranges/m.safetensors', file);
  const since = server.log.length;
  const m = await openModel(url, opener());
  const t = m.tensors[1];
  const chunks: Uint8Array[] = [];
  for await (const c of m.chunks(t, { chunkBytes: 8 << 20 })) chunks.push(c.slice());
  const joined = Buffer.concat(chunks);
  assert.ok(Buffer.from(file.subarray(t.byteOffset, t.byteOffset + t.byteLength)).equals(joined));
  const ranges = server.log.slice(since + 1).map((r) => parseContentRange(`bytes ${r.range!.slice(6)}/${file.length}`)!);
  assert.ok(ranges.length >= 3);
  for (const r of ranges) assert.ok(r.end - r.start + 1 <= MAX_RANGE_BYTES, `range of ${r.end - r.start + 1} bytes`);
  await m.close();
});

test('503 then success, and 429 with Retry-After, are retried', async () => {
  const file = modelBytes(2, 1000);
  const url = serve(server, '/retry/m.safetensors', file);
  server.inject('/retry/m.safetensors', { kind: 'status', status: 503 }, { kind: 'status', status: 503 });
  const { bytes } = await readAll(url);
  assert.deepEqual(bytes.get('t1______'), file.subarray(file.length - 1000));

  server.inject('/retry/m.safetensors', { kind: 'status', status: 429, retryAfter: '1' });
  const started = Date.now();
  const m = await openModel(url, opener());
  // Retry-After: 1 was honoured (the backoff alone would have been 5 ms).
  assert.ok(Date.now() - started >= 950, `waited ${Date.now() - started} ms`);
  await m.close();

  // Retry-After beyond the cap is cut to the cap.
  server.inject('/retry/m.safetensors', { kind: 'status', status: 429, retryAfter: '3600' });
  const t0 = Date.now();
  await (await openModel(url, opener({ maxDelayMs: 200 }))).close();
  assert.ok(Date.now() - t0 < 2000);
  assert.equal(retryAfterMs('Wed, 21 Oct 2015 07:28:00 GMT', Date.parse('Wed, 21 Oct 2015 07:27:58 GMT')), 2000);
});

test('a server that keeps failing is an http error after a bounded number of tries', async () => {
  const url = serve(server, '/down/m.safetensors', modelBytes(1, 10));
  server.inject('/down/m.safetensors', ...Array.from({ length: 5 }, () => ({ kind: 'status' as const, status: 502 })));
  const since = server.log.length;
  await rejectsWith(openModel(url, opener()), 'http', /502.*5 times/);
  assert.equal(requestsFor('/down/m.safetensors', since), 5);
});

test('a short body and a dropped connection are resumed, never zero-filled', async () => {
  const each = 300_000;
  const file = modelBytes(2, each, 8, 3);
  const url = serve(server, '/short/m.safetensors', file);
  const m = await openModel(url, opener());
  const t = m.tensors[1];
  const expected = file.subarray(t.byteOffset, t.byteOffset + each);
  server.inject('/short/m.safetensors', { kind: 'short' });
  const a = new Uint8Array(each);
  await m.read(t, 0, a);
  assert.deepEqual(a, expected);
  server.inject('/short/m.safetensors', { kind: 'drop' });
  const since = server.log.length;
  const b = new Uint8Array(each);
  await m.read(t, 0, b);
  assert.deepEqual(b, expected);
  // The second request asked only for the part the dropped one did not deliver.
  const resumed = server.log.slice(since).map((r) => r.range);
  assert.equal(resumed.length, 2);
  assert.notEqual(resumed[0], resumed[1]);
  // A server that always cuts the body short fails after the tries, with no partial result.
  server.inject('/short/m.safetensors', ...Array.from({ length: 5 }, () => ({ kind: 'short' as const })));
  const c = new Uint8Array(each);
  await rejectsWith(m.read(t, 0, c), 'http', /sent \d+ of the 300000 bytes/);
  await m.close();
});

test('a server that stops answering, before or during a body, is given up on and asked again', async () => {
  const file = modelBytes(1, 200_000, 8, 4);
  const url = serve(server, '/idle/m.safetensors', file);
  server.inject('/idle/m.safetensors', { kind: 'silent' });
  const o = opener({ idleTimeoutMs: 300 });
  const m = await openModel(url, o);
  server.inject('/idle/m.safetensors', { kind: 'stall' });
  const b = new Uint8Array(200_000);
  const started = Date.now();
  await m.read(m.tensors[0], 0, b);
  assert.deepEqual(b, file.subarray(file.length - 200_000));
  assert.ok(Date.now() - started < 5000);
  await m.close();
});

test('random reads under random faults return exactly the file bytes', async () => {
  const file = modelBytes(1, 3 * MAX_RANGE_BYTES + 777, 8, 11);
  const url = serve(server, '/rand/m.safetensors', file);
  const m = await openModel(url, opener());
  const t = m.tensors[0];
  let x = 12345;
  const rand = (n: number) => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) % n);
  const kinds: Fault[] = [{ kind: 'short' }, { kind: 'drop' }, { kind: 'status', status: 503 }, { kind: 'status', status: 429, retryAfter: '0' }];
  for (let i = 0; i < 60; i++) {
    const len = 1 + rand(i % 5 === 0 ? t.byteLength : 200_000);
    const off = rand(t.byteLength - len + 1);
    // At most two faults per read: the retries (five tries per range) always get through.
    for (let k = rand(3); k > 0; k--) server.inject('/rand/m.safetensors', kinds[rand(kinds.length)]);
    const b = new Uint8Array(len);
    await m.read(t, off, b);
    const want = file.subarray(t.byteOffset + off, t.byteOffset + off + len);
    assert.ok(Buffer.from(b).equals(want), `read ${i}: ${len} bytes at ${off}`);
  }
  await m.close();
});

test('a file replaced between requests is file_changed, not mixed data', async () => {
  const file = modelBytes(2, 5000);
  const url = serve(server, '/etag/m.safetensors', file);
  const m = await openModel(url, opener());
  const changed = file.slice();
  changed[changed.length - 1] ^= 0xff;
  server.replace('/etag/m.safetensors', changed);
  await rejectsWith(m.read(m.tensors[1], 0, new Uint8Array(5000)), 'file_changed', /changed since it was opened/);
  await m.close();
});

test('the token goes to the Hub host only, never to the host a redirect leads to', async () => {
  const file = modelBytes(2, 2000);
  server.replace('/cdn/acme/tiny/model.safetensors', file);
  server.repos.set('acme/tiny', new Map([['model.safetensors', '/cdn/acme/tiny/model.safetensors']]));
  server.redirectResolve = true;
  try {
    const since = server.log.length;
    const { bytes } = await readAll('hf://acme/tiny/model.safetensors', opener({ token: 'hf_secret' }));
    assert.deepEqual(bytes.get('t1______'), file.subarray(file.length - 2000));
    const seen = server.log.slice(since);
    const hub = seen.filter((r) => r.host === '127.0.0.1');
    const cdn = seen.filter((r) => r.host === '127.0.0.2');
    assert.ok(hub.length >= 1 && cdn.length >= 2, JSON.stringify(seen));
    for (const r of hub) assert.equal(r.authorization, 'Bearer hf_secret');
    for (const r of cdn) assert.equal(r.authorization, undefined);
    // The resolved CDN URL is reused: only the first read went through the Hub.
    assert.equal(hub.length, 1);
    // A plain https?:// URL on another host gets no token either.
    const before2 = server.log.length;
    await (await openModel(server.other + '/cdn/acme/tiny/model.safetensors', opener({ token: 'hf_secret' }))).close();
    assert.equal(server.log[before2].authorization, undefined);
  } finally {
    server.redirectResolve = false;
  }
});

test('an expired CDN URL is resolved again through the Hub, once', async () => {
  const file = modelBytes(2, 3000);
  server.replace('/cdn/acme/exp/model.safetensors', file);
  server.repos.set('acme/exp', new Map([['model.safetensors', '/cdn/acme/exp/model.safetensors']]));
  server.redirectResolve = true;
  try {
    const m = await openModel('hf://acme/exp/model.safetensors', opener());
    server.inject('/cdn/acme/exp/model.safetensors', { kind: 'status', status: 403 });
    const since = server.log.length;
    const b = new Uint8Array(3000);
    await m.read(m.tensors[1], 0, b);
    assert.deepEqual(b, file.subarray(file.length - 3000));
    assert.deepEqual(server.log.slice(since).map((r) => [r.host, r.status]), [['127.0.0.2', 403], ['127.0.0.1', 302], ['127.0.0.2', 206]]);
    // A second refusal from the fresh URL is an error, not another loop.
    server.inject('/cdn/acme/exp/model.safetensors', { kind: 'status', status: 403 }, { kind: 'status', status: 403 });
    await rejectsWith(m.read(m.tensors[1], 0, b), 'http_auth');
    await m.close();
  } finally {
    server.redirectResolve = false;
  }
});

test('a server that caps its ranges is followed range after range, without counting failures', async () => {
  const file = modelBytes(1, 500_000, 8, 9);
  const url = serve(server, '/cap/m.safetensors', file);
  const m = await openModel(url, opener({ attempts: 2 }));
  server.capRange = 64_000;
  try {
    const since = server.log.length;
    const b = new Uint8Array(500_000);
    await m.read(m.tensors[0], 0, b);
    assert.deepEqual(b, file.subarray(file.length - 500_000));
    assert.ok(server.log.length - since >= 7);
  } finally {
    server.capRange = undefined;
    await m.close();
  }
});

test('redirects: bounded, relative ones resolved, https never downgraded to http', async () => {
  const file = modelBytes(1, 64);
  serve(server, '/moved/new.safetensors', file);
  server.inject('/moved/old.safetensors', { kind: 'redirect', to: '/moved/new.safetensors' });
  const m = await openModel(server.base + '/moved/old.safetensors', opener());
  assert.equal(m.tensors.length, 1);
  await m.close();
  // A loop: each answer sends the client back to the same path.
  server.inject('/loop/x.safetensors', ...Array.from({ length: 20 }, () => ({ kind: 'redirect' as const, to: '/loop/x.safetensors' })));
  await rejectsWith(openModel(server.base + '/loop/x.safetensors', opener()), 'http', /more than 10 redirects/);
  // No TLS server here: a stand-in fetch answers the https request with a redirect to http.
  const seen: string[] = [];
  const fakeFetch = (async (url: string | URL | Request) => {
    seen.push(String(url));
    return new Response(null, { status: 302, headers: { location: 'http://mirror.example/m.safetensors' } });
  }) as typeof fetch;
  await rejectsWith(openModel('https://files.example/m.safetensors', opener({ fetch: fakeFetch })), 'http', /from https to plain http; refused/);
  assert.deepEqual(seen, ['https://files.example/m.safetensors']);
});

test('a server that ignores Range is refused without downloading the body', async () => {
  const size = 1 << 30;
  server.noRange.set('/norange/huge.safetensors', size);
  const since = server.log.length;
  const err = await rejectsWith(openModel(server.base + '/norange/huge.safetensors', opener()), 'http_no_range', /ignores Range/);
  assert.match(err.message, /^http:\/\/127\.0\.0\.1:\d+\/norange\/huge\.safetensors: /);
  // Give the server a moment to notice the closed connection, then count what it managed to write.
  await new Promise((r) => setTimeout(r, 200));
  const sent = server.log.slice(since).reduce((a, r) => a + r.bytesSent, 0);
  assert.ok(sent < 64 << 20, `the server wrote ${sent} bytes of ${size}`);
});

test('not found, auth and Hub errors map to the project codes', async () => {
  await rejectsWith(openModel(server.base + '/nothing/here.safetensors', opener()), 'not_found');
  server.repos.set('acme/gated', new Map([['model.safetensors', '/gated/model.safetensors']]));
  server.replace('/gated/model.safetensors', modelBytes(1, 4));
  server.inject('/gated/model.safetensors', { kind: 'status', status: 401, headers: { 'x-error-code': 'GatedRepo', 'x-error-message': 'Access to model acme/gated is restricted.' } });
  await rejectsWith(openModel('hf://acme/gated/model.safetensors', opener()), 'http_auth', /restricted.*HF_TOKEN/);
  await rejectsWith(openModel('hf://acme/gated@v9/model.safetensors', opener()), 'not_found', /Invalid rev id/);
  await rejectsWith(openModel('hf://acme/tiny/missing.safetensors', opener()), 'not_found');
});

test('a missing shard of a sharded model over HTTP is shard_missing', async () => {
  const shard = modelBytes(1, 8);
  serve(server, '/sh/model-00001-of-00002.safetensors', shard);
  const index = JSON.stringify({ metadata: {}, weight_map: { t0______: 'model-00001-of-00002.safetensors', x: 'model-00002-of-00002.safetensors' } });
  serve(server, '/sh/model.safetensors.index.json', new TextEncoder().encode(index));
  await rejectsWith(openModel(server.base + '/sh/model.safetensors.index.json', opener()), 'shard_missing');
});

test('the shards of a model opened at a branch are read at the commit the branch resolved to', async () => {
  const commit = 'c0ffee0123456789abcdef0123456789abcdef01';
  // Two shards with distinct tensor names: t0______ in the first, u0 in the second.
  server.replace('/pin/model-00001-of-00002.safetensors', modelBytes(1, 16));
  server.replace('/pin/model-00002-of-00002.safetensors', paddedFile('{"u0":{"dtype":"U8","shape":[16],"data_offsets":[0,16]}}', pattern(16, 5)));
  const files = new Map(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'].map((n) => [n, `/pin/${n}`]));
  const index = { metadata: {}, weight_map: { t0______: 'model-00001-of-00002.safetensors', u0: 'model-00002-of-00002.safetensors' } };
  server.replace('/pin/model.safetensors.index.json', new TextEncoder().encode(JSON.stringify(index)));
  files.set('model.safetensors.index.json', '/pin/model.safetensors.index.json');
  server.repos.set('acme/pinned', files);
  server.commits.set('acme/pinned', commit);
  const since = server.log.length;
  // The listing comes one file a page: all three pages are followed.
  server.pageSize = 1;
  const m = await openModel('hf://acme/pinned', opener()).finally(() => (server.pageSize = undefined));
  assert.deepEqual(m.tensors.map((t) => t.name), ['t0______', 'u0']);
  await m.close();
  assert.equal(server.log.slice(since).filter((r) => r.path.startsWith('/api/models/acme/pinned/tree/')).length, 3);
  const resolves = server.log.slice(since).filter((r) => r.path.includes('/resolve/')).map((r) => r.path);
  assert.equal(resolves[0], '/acme/pinned/resolve/main/model.safetensors.index.json');
  assert.deepEqual(resolves.slice(1).sort(), [`/acme/pinned/resolve/${commit}/model-00001-of-00002.safetensors`, `/acme/pinned/resolve/${commit}/model-00002-of-00002.safetensors`]);
});

test('cancelling aborts the request in flight', async () => {
  const file = modelBytes(1, 1 << 20);
  const url = serve(server, '/stall/m.safetensors', file);
  const m = await openModel(url, opener());
  server.inject('/stall/m.safetensors', { kind: 'stall' });
  const ac = new AbortController();
  const started = Date.now();
  const reading = (async () => {
    for await (const _ of m.chunks(m.tensors[0], { signal: ac.signal })) void _;
  })();
  setTimeout(() => ac.abort(), 100);
  await assert.rejects(reading, (e: Error) => e.name === 'AbortError');
  assert.ok(Date.now() - started < 5000);
  // Model.read takes the signal too (the streamer reads through it).
  server.inject('/stall/m.safetensors', { kind: 'stall' });
  const ac2 = new AbortController();
  setTimeout(() => ac2.abort(), 100);
  const t1 = Date.now();
  await assert.rejects(m.read(m.tensors[0], 0, new Uint8Array(1 << 20), ac2.signal), (e: Error) => e.name === 'AbortError');
  assert.ok(Date.now() - t1 < 5000);
  await m.close();
});

test('hf:// paths: owner, repo, revision and path', () => {
  assert.deepEqual(parseHubPath('hf://acme/tiny/model.safetensors'), { owner: 'acme', name: 'tiny', revision: 'main', file: 'model.safetensors' });
  assert.deepEqual(parseHubPath('hf://acme/tiny@refs%2Fpr%2F1/sub/m.safetensors'), { owner: 'acme', name: 'tiny', revision: 'refs/pr/1', file: 'sub/m.safetensors' });
  assert.equal(hubFileUrl('https://huggingface.co', parseHubPath('hf://acme/tiny@v1.0/a b.safetensors')), 'https://huggingface.co/acme/tiny/resolve/v1.0/a%20b.safetensors');
  const o = new HttpOpener({ env: {} });
  assert.equal(o.urlOf('https://huggingface.co/acme/tiny/blob/main/model.safetensors'), 'https://huggingface.co/acme/tiny/resolve/main/model.safetensors');
  assert.equal(o.urlOf('https://example.com/acme/tiny/blob/main/model.safetensors'), 'https://example.com/acme/tiny/blob/main/model.safetensors');
  assert.equal(new HttpOpener({ env: { HF_ENDPOINT: 'http://127.0.0.1:9/' } }).urlOf('hf://a/b/c.safetensors'), 'http://127.0.0.1:9/a/b/resolve/main/c.safetensors');
  assert.equal(new HttpOpener({ env: { HF_ENDPOINT: 'http://x:1', TW_HF_ENDPOINT: 'http://y:2' } }).endpoint, 'http://y:2');
  for (const bad of ['hf://acme', 'hf:///tiny/x', 'hf://acme/tiny/../x', 'hf://acme/tiny@/x']) assert.throws(() => parseHubPath(bad), FormatError, bad);
});

test('the extension reads a remote URI through an HttpOpener that sends the stored token to the Hub', async () => {
  const file = modelBytes(1, 32);
  server.replace('/ext/model.safetensors', file);
  server.repos.set('acme/ext', new Map([['model.safetensors', '/ext/model.safetensors']]));
  const saved = process.env.TW_HF_ENDPOINT;
  process.env.TW_HF_ENDPOINT = server.base;
  setHubTokenSource(async () => 'hf_from_secret_storage');
  try {
    const uri = { scheme: REMOTE_SCHEME, path: '/hf/acme/ext/model.safetensors', query: encodeURIComponent('hf://acme/ext/model.safetensors') } as vscode.Uri;
    const { opener, path } = openerFor(uri, {} as never);
    assert.ok(opener instanceof HttpOpener);
    assert.equal(path, 'hf://acme/ext/model.safetensors');
    const since = server.log.length;
    const m = await openModel(path, opener);
    assert.equal(m.tensors.length, 1);
    await m.close();
    assert.equal(server.log[since].authorization, 'Bearer hf_from_secret_storage');
  } finally {
    if (saved === undefined) delete process.env.TW_HF_ENDPOINT;
    else process.env.TW_HF_ENDPOINT = saved;
  }
});
