/**
 * What the viewer computes for a model opened from a URL (the host side of the panel:
 * the remote URI through openerFor, then ModelService) equals what it computes for the
 * same files on disk: summary, tensor statistics, heatmaps.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type * as vscode from 'vscode';
import { disposeBackends } from '../../src/compute/backend';
import { openModel } from '../../src/format';
import { REMOTE_SCHEME } from '../../src/vscode/remoteSource';
import { ModelService } from '../../src/pipelines/viewer/modelService';
import { openerFor } from '../../src/vscode/workspaceSource';
import { writeLlama } from '../fixtures/llama';
import { startRangeServer, type RangeServer } from './rangeServer';

let dir = '';
let server: RangeServer;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tw-http-viewer-'));
  server = await startRangeServer();
  await writeLlama(join(dir, 'm'), { seed: 8, shards: 2 });
  for (const f of readdirSync(join(dir, 'm'))) server.replace(`/m/${f}`, readFileSync(join(dir, 'm', f)));
});

after(async () => {
  await server.close();
  await disposeBackends();
  rmSync(dir, { recursive: true, force: true });
});

/** Paths differ between the two (a URL, a local path); everything else must not. */
function renamed(p: string, from: string, to: string): string {
  return p.split(from).join(to);
}

test('summary, statistics and heatmaps of a URL model equal those of the files on disk', async () => {
  const url = `${server.base}/m/model.safetensors.index.json`;
  const uri = { scheme: REMOTE_SCHEME, path: '/127.0.0.1/m/model.safetensors.index.json', query: encodeURIComponent(url) } as vscode.Uri;
  const { opener, path } = openerFor(uri, {} as never);
  const remote = new ModelService(await openModel(path, opener), { backend: () => 'cpu', local: false });
  const local = new ModelService(await openModel(join(dir, 'm', 'model.safetensors.index.json')), { backend: () => 'cpu', local: true });
  try {
    const localDir = join(dir, 'm');
    const base = `${server.base}/m`;
    const s = remote.summary();
    assert.deepEqual({ ...s, path: renamed(s.path, base, localDir), files: s.files.map((f) => ({ ...f, path: renamed(f.path, base, localDir) })) }, local.summary());
    const names = ['model.embed_tokens.weight', 'model.layers.1.mlp.down_proj.weight', 'model.norm.weight'];
    for (const name of names) {
      const [a, b] = [await remote.tensorStats(name, 64), await local.tensorStats(name, 64)];
      assert.deepEqual(a.stats, b.stats, name);
      assert.ok(b.stats.count > 0);
      assert.deepEqual(await remote.heatmap(name, 32), await local.heatmap(name, 32), name);
    }
    // Statistics that need tensor data really went over the network.
    assert.ok(server.log.filter((r) => r.status === 206).length > names.length);
  } finally {
    await Promise.all([remote.model.close(), local.model.close()]);
  }
});
