/**
 * Integration tests that run INSIDE a real extension host, with the real `vscode`
 * API. Loaded as `extensionTestsPath` (→ dist/vscode-suite.js) either by code-server's
 * smoke-test driver (test/e2e/e2e-hostsuite.test.ts) or by @vscode/test-electron
 * (`npm run test:electron`). `run()` writes every result to the JSON file named by
 * TW_VSCODE_SUITE_RESULT, for the node:test driver, and throws when one failed, for
 * test-electron.
 */
import * as vscode from 'vscode';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { FormatError } from '../../src/format/errors';
import { CancelledError } from '../../src/core/job';
import { HttpOpener } from '../../src/format/httpOpener';
import { openModel } from '../../src/format/openModel';
import { Disposable } from '../../src/vscode/dispose';
import { ReadonlyFs } from '../../src/vscode/readonlyFs';
import { signalFromToken } from '../../src/vscode/jobProgress';
import { runJob } from '../../src/vscode/progress';
import { WorkspaceSourceOpener, nodeSourceOpener, openerFor } from '../../src/vscode/workspaceSource';
import { diffVscodeCases } from '../diff/diffVscodeCases';
import { ggufVscodeCases } from '../gguf/ggufVscodeCases';
import { mergeVscodeCases } from '../merge/mergeVscodeCases';
import { serve, startRangeServer } from '../http/rangeServer';

export const EXTENSION_ID = 'tensor-workbench.tensor-workbench';
export const VIEW_TYPE = 'tensorWorkbench.viewer';

export interface SuiteResult {
  readonly name: string;
  readonly ok: boolean;
  readonly ms: number;
  readonly error?: string;
}

export interface SuiteReport {
  readonly vscode: string;
  readonly node: string;
  readonly results: SuiteResult[];
}

type Case = [name: string, fn: () => Promise<void>];

// 30 s: opening an editor on a cold, busy 2-core machine takes a few seconds.
const EDITOR_TIMEOUT_MS = 30_000;

async function until(what: string, ok: () => boolean, timeoutMs = EDITOR_TIMEOUT_MS): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function folder(): vscode.Uri {
  const f = vscode.workspace.workspaceFolders?.[0];
  assert.ok(f, 'the suite needs a workspace folder (the sample workspace)');
  return f.uri;
}

async function sampleModel(): Promise<vscode.Uri> {
  const files = (await vscode.workspace.findFiles('**/*.safetensors')).filter((u) => !u.path.includes('corrupt'));
  assert.ok(files.length > 0, 'no .safetensors file in the workspace');
  return files.sort((a, b) => a.path.localeCompare(b.path))[0];
}

/** A read-only in-memory file system, so that the workspace.fs path runs for a non-`file:` scheme. */
class MemoryFs extends ReadonlyFs {
  constructor(private readonly files: Map<string, Uint8Array>) {
    super();
  }
  private dirEntries(path: string): [string, vscode.FileType][] {
    const prefix = path.endsWith('/') ? path : `${path}/`;
    const names = new Map<string, vscode.FileType>();
    for (const p of this.files.keys()) {
      if (!p.startsWith(prefix)) continue;
      const [head, ...rest] = p.slice(prefix.length).split('/');
      names.set(head, rest.length ? vscode.FileType.Directory : vscode.FileType.File);
    }
    return [...names];
  }
  stat(uri: vscode.Uri): vscode.FileStat {
    const f = this.files.get(uri.path);
    if (f) return { type: vscode.FileType.File, ctime: 0, mtime: 1_700_000_000_000, size: f.length };
    if (this.dirEntries(uri.path).length) return { type: vscode.FileType.Directory, ctime: 0, mtime: 0, size: 0 };
    throw vscode.FileSystemError.FileNotFound(uri);
  }
  readFile(uri: vscode.Uri): Uint8Array {
    const f = this.files.get(uri.path);
    if (!f) throw vscode.FileSystemError.FileNotFound(uri);
    return f;
  }
  readDirectory(uri: vscode.Uri): [string, vscode.FileType][] {
    return this.dirEntries(uri.path);
  }
}

const cases: Case[] = [
  [
    'the extension activates and contributes the viewer',
    async () => {
      const ext = vscode.extensions.getExtension(EXTENSION_ID);
      assert.ok(ext, `${EXTENSION_ID} is not installed`);
      await ext.activate();
      assert.ok(ext.isActive);
      const editors = ext.packageJSON.contributes.customEditors as { viewType: string }[];
      assert.ok(editors.some((e) => e.viewType === VIEW_TYPE));
    },
  ],
  [
    'every command in the manifest is registered after activation',
    async () => {
      const ext = vscode.extensions.getExtension(EXTENSION_ID)!;
      await ext.activate();
      const registered = new Set(await vscode.commands.getCommands(true));
      const declared = (ext.packageJSON.contributes.commands as { command: string }[]).map((c) => c.command);
      // A declared but unregistered command shows in the palette and fails with "command not found".
      assert.deepEqual(declared.filter((c) => !registered.has(c)), []);
    },
  ],
  [
    'opening a .safetensors file uses the custom editor by default',
    async () => {
      const uri = await sampleModel();
      await vscode.commands.executeCommand('vscode.open', uri);
      const active = () => vscode.window.tabGroups.activeTabGroup.activeTab?.input;
      await until('the custom editor tab', () => {
        const input = active();
        return input instanceof vscode.TabInputCustom && input.viewType === VIEW_TYPE && input.uri.toString() === uri.toString();
      });
      await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    },
  ],
  [
    'a file: URI is streamed from disk, not read through workspace.fs',
    async () => {
      const uri = await sampleModel();
      const { opener, path } = openerFor(uri, vscode.workspace.fs);
      assert.equal(opener, nodeSourceOpener);
      assert.equal(path, uri.fsPath);
    },
  ],
  [
    'a virtual file reads through workspace.fs with the same bytes as on disk',
    async () => {
      const model = await sampleModel();
      const disk = readFileSync(model.fsPath);
      const fs = new MemoryFs(new Map([['/models/m.safetensors', new Uint8Array(disk)], ['/models/config.json', new TextEncoder().encode('{"a":1}')]]));
      const reg = vscode.workspace.registerFileSystemProvider('tw-suite-mem', fs, { isReadonly: true });
      try {
        const { opener, path } = openerFor(vscode.Uri.parse('tw-suite-mem:/models/m.safetensors'), vscode.workspace.fs);
        assert.ok(opener instanceof WorkspaceSourceOpener);
        assert.equal(path, '/models/m.safetensors');
        const src = await opener.open(path);
        assert.equal(src.size, disk.length);
        assert.equal(src.mtimeMs, 1_700_000_000_000);
        // Three windows: the length prefix, a span across the middle, and a short read at the end.
        for (const [offset, len] of [[0, 8], [Math.floor(disk.length / 3), 4096], [disk.length - 5, 16]]) {
          const buf = new Uint8Array(len);
          const n = await src.read(offset, buf);
          const want = disk.subarray(offset, offset + len);
          assert.equal(n, want.length);
          assert.deepEqual(Buffer.from(buf.subarray(0, n)), Buffer.from(want));
        }
        await src.close();
        assert.equal(await opener.readText('/models/config.json'), '{"a":1}');
        assert.deepEqual((await opener.list('/models')).sort(), ['config.json', 'm.safetensors']);
        await assert.rejects(opener.open('/models/missing.safetensors'), (e) => e instanceof FormatError && e.code === 'not_found' && e.message.includes('missing.safetensors'));
      } finally {
        reg.dispose();
      }
    },
  ],
  [
    'a model by URL opens in the viewer, read with Range requests, with the header the file on disk has',
    async () => {
      const model = await sampleModel();
      const server = await startRangeServer({ otherHost: false });
      try {
        const url = serve(server, '/suite/model.safetensors', new Uint8Array(readFileSync(model.fsPath)));
        await vscode.commands.executeCommand('tensorWorkbench.openModelFromUrl', url);
        let opened: vscode.Uri | undefined;
        await until('the viewer on the URL', () => {
          const input = vscode.window.tabGroups.activeTabGroup.activeTab?.input;
          opened = input instanceof vscode.TabInputCustom && input.viewType === VIEW_TYPE ? input.uri : undefined;
          return opened?.scheme === 'tensor-workbench-remote';
        });
        // The viewer's document asks for the header: at least one Range request reached the server.
        await until('a range request', () => server.log.some((r) => r.status === 206));
        const { opener, path } = openerFor(opened!, vscode.workspace.fs);
        assert.ok(opener instanceof HttpOpener);
        assert.equal(path, url);
        const [remote, local] = [await openModel(path, opener), await openModel(model.fsPath)];
        assert.deepEqual(
          remote.tensors.map((t) => [t.name, t.dtype, t.shape, t.byteOffset]),
          local.tensors.map((t) => [t.name, t.dtype, t.shape, t.byteOffset]),
        );
        await Promise.all([remote.close(), local.close()]);
        await vscode.commands.executeCommand('workbench.action.closeAllEditors');
      } finally {
        await server.close();
      }
    },
  ],
  [
    'a cancellation token aborts the job signal',
    async () => {
      const cts = new vscode.CancellationTokenSource();
      const s = signalFromToken(cts.token);
      assert.equal(s.signal.aborted, false);
      cts.cancel();
      assert.equal(s.signal.aborted, true);
      s.dispose();
      cts.dispose();
    },
  ],
  [
    'runJob returns the result, and a cancelled job yields undefined without an error',
    async () => {
      const seen: number[] = [];
      const value = await runJob('suite job', async (ctx) => {
        assert.ok(ctx.signal && !ctx.signal.aborted);
        ctx.progress?.({ done: 1, total: 2 });
        ctx.progress?.({ done: 2, total: 2 });
        seen.push(2);
        return 42;
      });
      assert.equal(value, 42);
      assert.deepEqual(seen, [2]);
      assert.equal(await runJob('suite cancelled job', async () => Promise.reject(new CancelledError())), undefined);
    },
  ],
  [
    'Disposable releases its children once, last registered first',
    async () => {
      const order: string[] = [];
      class Owner extends Disposable {
        add(name: string): void {
          this.register(new vscode.Disposable(() => order.push(name)));
        }
      }
      const o = new Owner();
      o.add('a');
      o.add('b');
      o.dispose();
      o.dispose();
      o.add('late');
      assert.deepEqual(order, ['b', 'a', 'late']);
    },
  ],
  ...diffVscodeCases,
  ...ggufVscodeCases,
  ...mergeVscodeCases,
];

export async function run(): Promise<void> {
  const results: SuiteResult[] = [];
  for (const [name, fn] of cases) {
    const t0 = Date.now();
    try {
      await fn();
      results.push({ name, ok: true, ms: Date.now() - t0 });
    } catch (e) {
      results.push({ name, ok: false, ms: Date.now() - t0, error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
    }
  }
  const report: SuiteReport = { vscode: vscode.version, node: process.versions.node, results };
  const out = process.env.TW_VSCODE_SUITE_RESULT ?? vscode.Uri.joinPath(folder(), '..', 'vscode-suite-result.json').fsPath;
  writeFileSync(out, JSON.stringify(report, null, 2));
  const failed = results.filter((r) => !r.ok);
  for (const r of results) console.log(`${r.ok ? 'ok' : 'not ok'} - ${r.name} (${r.ms} ms)${r.error ? `\n${r.error}` : ''}`);
  if (failed.length) throw new Error(`${failed.length} of ${results.length} extension-host tests failed: ${failed.map((r) => r.name).join('; ')}`);
}
