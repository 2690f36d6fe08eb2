import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as vscode from 'vscode';
import { FormatError } from '../../src/format/errors';
import { NodeFileSource } from '../../src/format/source';
import { WORKSPACE_FS_MAX_BYTES, WorkspaceFileSource, WorkspaceSourceOpener, nodeSourceOpener, openerFor } from '../../src/vscode/workspaceSource';

/** Just enough of vscode.Uri for the opener: scheme, path and `with`. */
function fakeUri(scheme: string, path: string): vscode.Uri {
  const u = {
    scheme,
    authority: 'host',
    path,
    query: '',
    fragment: '',
    fsPath: path,
    with(change: { path?: string }) {
      return fakeUri(scheme, change.path ?? path);
    },
    toString() {
      return `${scheme}://host${path}`;
    },
  };
  return u as unknown as vscode.Uri;
}

/** An in-memory vscode.FileSystem that counts whole-file reads and can fail or change a file. */
function fakeFs(files: Map<string, Uint8Array>) {
  const calls = { readFile: 0 };
  let failNext = false;
  const notFound = () => Object.assign(new Error('not found'), { code: 'FileNotFound' });
  return {
    calls,
    failOnce() {
      failNext = true;
    },
    fs: {
      async stat(uri: vscode.Uri) {
        const f = files.get(uri.path);
        if (!f) throw notFound();
        return { type: 1, ctime: 0, mtime: 1234, size: f.length };
      },
      async readFile(uri: vscode.Uri) {
        calls.readFile++;
        if (failNext) {
          failNext = false;
          throw Object.assign(new Error('connection reset'), { code: 'Unavailable' });
        }
        const f = files.get(uri.path);
        if (!f) throw notFound();
        return f;
      },
      async readDirectory(uri: vscode.Uri) {
        const prefix = `${uri.path}/`;
        return [...files.keys()].filter((p) => p.startsWith(prefix)).map((p) => [p.slice(prefix.length), 1] as [string, vscode.FileType]);
      },
    } as unknown as vscode.FileSystem,
  };
}

const bytes = Uint8Array.from({ length: 1000 }, (_, i) => (i * 37 + 11) & 0xff);

test('reads through workspace.fs match the bytes, fetching the file once', async () => {
  const f = fakeFs(new Map([['/m/a.safetensors', bytes]]));
  const src = await new WorkspaceSourceOpener(f.fs, fakeUri('vfs', '/')).open('/m/a.safetensors');
  assert.equal(src.size, 1000);
  assert.equal(src.mtimeMs, 1234);
  assert.equal(src.name, 'vfs://host/m/a.safetensors');
  for (const [offset, len] of [[0, 8], [8, 100], [990, 64], [1000, 4], [2000, 4]] as const) {
    const into = new Uint8Array(len);
    const n = await src.read(offset, into);
    const want = bytes.slice(offset, offset + len);
    assert.equal(n, want.length, `read at ${offset}`);
    assert.deepEqual(into.subarray(0, n), want);
  }
  assert.equal(f.calls.readFile, 1);
  await src.close();
});

test('a failed fetch is not cached: the next read retries', async () => {
  const f = fakeFs(new Map([['/a', bytes]]));
  const src = await WorkspaceFileSource.open(f.fs, fakeUri('vfs', '/a'));
  f.failOnce();
  await assert.rejects(src.read(0, new Uint8Array(4)), (e) => e instanceof FormatError && e.code === 'io' && /connection reset/.test(e.message));
  const into = new Uint8Array(4);
  assert.equal(await src.read(0, into), 4);
  assert.deepEqual(into, bytes.slice(0, 4));
});

test('a file that changed size between stat and read is reported, not misread', async () => {
  const files = new Map([['/a', bytes]]);
  const f = fakeFs(files);
  const src = await WorkspaceFileSource.open(f.fs, fakeUri('vfs', '/a'));
  files.set('/a', bytes.slice(0, 500));
  await assert.rejects(src.read(0, new Uint8Array(4)), (e) => e instanceof FormatError && e.code === 'file_changed');
});

test('files above the workspace.fs cap are refused before anything is fetched', async () => {
  const f = fakeFs(new Map());
  f.fs.stat = async () => ({ type: 1, ctime: 0, mtime: 0, size: WORKSPACE_FS_MAX_BYTES + 1 }) as vscode.FileStat;
  const src = await WorkspaceFileSource.open(f.fs, fakeUri('vfs', '/big'));
  await assert.rejects(src.read(0, new Uint8Array(8)), (e) => e instanceof FormatError && e.code === 'unsupported' && e.file === 'vfs://host/big');
  assert.equal(f.calls.readFile, 0);
});

test('missing files, texts and listings map to typed errors and plain values', async () => {
  const f = fakeFs(new Map([['/m/config.json', new TextEncoder().encode('{"x":1}')], ['/m/a.safetensors', bytes]]));
  const opener = new WorkspaceSourceOpener(f.fs, fakeUri('vfs', '/'));
  await assert.rejects(opener.open('/m/missing.safetensors'), (e) => e instanceof FormatError && e.code === 'not_found' && e.file === 'vfs://host/m/missing.safetensors');
  assert.equal(await opener.readText('/m/config.json'), '{"x":1}');
  assert.deepEqual((await opener.list('/m')).sort(), ['a.safetensors', 'config.json']);
  await assert.rejects(opener.readText('/m/nope.json'), (e) => e instanceof FormatError && e.code === 'not_found');
});

test('file: URIs stream from disk with positional reads; other schemes use workspace.fs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tw-ws-'));
  try {
    const path = join(dir, 'a.bin');
    writeFileSync(path, bytes);
    const f = fakeFs(new Map());
    const local = openerFor(fakeUri('file', path), f.fs);
    assert.equal(local.opener, nodeSourceOpener);
    const src = await local.opener.open(local.path);
    assert.ok(src instanceof NodeFileSource);
    const into = new Uint8Array(10);
    await src.read(500, into);
    assert.deepEqual(into, bytes.slice(500, 510));
    await src.close();
    assert.deepEqual(await nodeSourceOpener.list(dir), ['a.bin']);
    await assert.rejects(nodeSourceOpener.readText(join(dir, 'none')), (e) => e instanceof FormatError && e.code === 'not_found');
    const remote = openerFor(fakeUri('vscode-vfs', '/repo/a.bin'), f.fs);
    assert.ok(remote.opener instanceof WorkspaceSourceOpener);
    assert.equal(remote.path, '/repo/a.bin');
    assert.equal(f.calls.readFile, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
