/**
 * The CLI over HTTP as a user runs it (`node dist/cli.js …` in a child process): inspect,
 * stats and diff of a model served by a local Range server, as a URL and as hf://, print
 * exactly what they print for the same files on disk (paths and timings aside).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { openModel } from '../../src/format';
import { writeFineTuned, writeLlama } from '../fixtures/llama';
import { writeTorchZip } from '../fixtures/torchZip';
import { startRangeServer, type RangeServer } from './rangeServer';

const CLI = join(__dirname, 'cli.js');
let dir = '';
let server: RangeServer;

/** Async, not spawnSync: the server answering the CLI runs on this process's event loop. `interruptAfterMs` sends SIGINT (Ctrl-C). */
function cli(args: string[], env: Record<string, string> = {}, interruptAfterMs?: number): Promise<{ code: number; stdout: string; stderr: string }> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, TW_HF_ENDPOINT: server.base, ...env };
  delete childEnv.HF_TOKEN;
  delete childEnv.HF_ENDPOINT;
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [CLI, ...args], { env: childEnv, maxBuffer: 64 << 20, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
    if (interruptAfterMs !== undefined) setTimeout(() => child.kill('SIGINT'), interruptAfterMs);
  });
}

/** Serves every file of a local folder under `/files/NAME/…` and as Hub repo `acme/NAME`. */
function publish(name: string): void {
  const repo = new Map<string, string>();
  for (const f of readdirSync(join(dir, name))) {
    const urlPath = `/files/${name}/${f}`;
    server.replace(urlPath, readFileSync(join(dir, name, f)));
    repo.set(f, urlPath);
  }
  server.repos.set(`acme/${name}`, repo);
}

/** Paths as the user typed them, and timings, are the only things allowed to differ. */
function normalise(text: string, from: string[], to: string): string {
  let t = text;
  for (const f of from) t = t.split(f).join(to);
  return t
    .replace(/[\d.]+ GB\/s/g, 'X GB/s')
    .replace(/ in [\d.]+ s/g, ' in X s')
    .replace(/"seconds":\s*[\d.e+-]+/g, '"seconds":0');
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tw-http-cli-'));
  server = await startRangeServer();
  await writeLlama(join(dir, 'single'), { seed: 3 });
  await writeLlama(join(dir, 'sharded'), { seed: 4, shards: 3 });
  await writeFineTuned(join(dir, 'sharded'), join(dir, 'tuned'), { layersChanged: 'half' });
  mkdirSync(join(dir, 'torch'));
  const m = await openModel(join(dir, 'single', 'model.safetensors'));
  await writeTorchZip(join(dir, 'torch', 'pytorch_model.bin'), m).finally(() => m.close());
  for (const n of ['single', 'sharded', 'tuned', 'torch']) publish(n);
  // The Hub's large files come from its CDN: the hf:// runs go through a redirect to the other host.
  server.redirectResolve = true;
});

after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

test('inspect: a file by URL and by hf:// prints what the local file prints, from one request', async () => {
  const local = join(dir, 'single', 'model.safetensors');
  const url = `${server.base}/files/single/model.safetensors`;
  const hf = 'hf://acme/single/model.safetensors';
  for (const flags of [[], ['--json']]) {
    const want = await cli(['inspect', local, ...flags]);
    assert.equal(want.code, 0, want.stderr);
    for (const remote of [url, hf]) {
      const since = server.log.length;
      const got = await cli(['inspect', remote, ...flags]);
      assert.equal(got.code, 0, got.stderr);
      assert.equal(normalise(got.stdout, [remote], local), want.stdout);
      // One request for the header; hf:// adds the Hub's redirect to the CDN.
      const served = server.log.slice(since).filter((r) => r.status === 206);
      assert.equal(served.length, 1, JSON.stringify(server.log.slice(since)));
    }
  }
});

test('inspect: a sharded model by its index URL, its hf:// index and its hf:// repository', async () => {
  const localDir = join(dir, 'sharded');
  const localIndex = join(localDir, 'model.safetensors.index.json');
  const want = await cli(['inspect', localIndex, '--json']);
  assert.equal(want.code, 0, want.stderr);
  const viaUrl = await cli(['inspect', `${server.base}/files/sharded/model.safetensors.index.json`, '--json']);
  assert.equal(normalise(viaUrl.stdout, [`${server.base}/files/sharded`], localDir), want.stdout);
  const viaHf = await cli(['inspect', 'hf://acme/sharded/model.safetensors.index.json', '--json']);
  assert.equal(normalise(viaHf.stdout, ['hf://acme/sharded'], localDir), want.stdout);
  // The repository itself: listed through the Hub's tree API, opened like a local folder.
  const wantDir = await cli(['inspect', localDir]);
  const viaRepo = await cli(['inspect', 'hf://acme/sharded']);
  assert.equal(viaRepo.code, 0, viaRepo.stderr);
  assert.equal(normalise(viaRepo.stdout, ['hf://acme/sharded'], localDir), wantDir.stdout);
});

test('stats: the same numbers over HTTP as from disk', async () => {
  const localIndex = join(dir, 'sharded', 'model.safetensors.index.json');
  const hf = 'hf://acme/sharded/model.safetensors.index.json';
  const tensor = ['--tensor', 'model.layers.1.mlp.down_proj.weight', '--tensor', 'lm_head.weight'];
  for (const flags of [['--json'], []]) {
    const want = await cli(['stats', localIndex, ...tensor, '--backend', 'cpu', ...flags]);
    const got = await cli(['stats', hf, ...tensor, '--backend', 'cpu', ...flags]);
    assert.equal(got.code, 0, got.stderr);
    assert.equal(normalise(got.stdout, ['hf://acme/sharded'], join(dir, 'sharded')), normalise(want.stdout, [], ''));
  }
  const wantAll = await cli(['stats', join(dir, 'single', 'model.safetensors'), '--backend', 'cpu', '--json']);
  const url = `${server.base}/files/single/model.safetensors`;
  const gotAll = await cli(['stats', url, '--backend', 'cpu', '--json']);
  assert.equal(normalise(gotAll.stdout, [url], join(dir, 'single', 'model.safetensors')), normalise(wantAll.stdout, [], ''));
  assert.ok(JSON.parse(gotAll.stdout).tensors.length > 10);
});

test('diff: two hf:// models compare as their local copies do', async () => {
  const a = join(dir, 'sharded');
  const b = join(dir, 'tuned');
  for (const flags of [[], ['--json']]) {
    const want = await cli(['diff', a, b, '--backend', 'cpu', ...flags]);
    assert.equal(want.code, 0, want.stderr);
    const got = await cli(['diff', 'hf://acme/sharded', 'hf://acme/tuned', '--backend', 'cpu', ...flags]);
    assert.equal(got.code, 0, got.stderr);
    const norm = (t: string) => normalise(t, ['hf://acme/sharded', 'hf://acme/tuned'], 'X');
    assert.equal(norm(got.stdout), norm(normalise(want.stdout, [a, b], 'X')));
  }
  // The comparison found the fine-tune's changes, so the equality above compared real work.
  const json = JSON.parse((await cli(['diff', 'hf://acme/sharded', 'hf://acme/tuned', '--backend', 'cpu', '--json'])).stdout);
  assert.ok(json.summary.different > 0 && json.summary.identical > 0);
});

test('scan: a PyTorch checkpoint by hf:// gets the verdict of the local file', async () => {
  const local = join(dir, 'torch', 'pytorch_model.bin');
  const want = await cli(['scan', local, '--json']);
  assert.equal(want.code, 0, want.stderr);
  const got = await cli(['scan', 'hf://acme/torch/pytorch_model.bin', '--json']);
  assert.equal(got.code, 0, got.stderr);
  assert.equal(got.stdout.split('hf://acme/torch/pytorch_model.bin').join(local), want.stdout);
  assert.equal(JSON.parse(got.stdout).verdict.clean, true);
});

test('errors: one line naming the URL, exit 2; writing commands refuse URLs and write nothing', async () => {
  server.noRange.set('/files/plain/model.safetensors', 1 << 30);
  const url = `${server.base}/files/plain/model.safetensors`;
  const r = await cli(['inspect', url]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, new RegExp(`^error\\[http_no_range\\]: ${url.replace(/[.]/g, '\\.')}: .*ignores Range`));
  assert.equal(r.stderr.trim().split('\n').length, 1);

  const missing = await cli(['inspect', 'hf://acme/nope/model.safetensors']);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /^error\[not_found\]: hf:\/\/acme\/nope\/model\.safetensors: /);

  const out = join(dir, 'converted.safetensors');
  for (const args of [
    ['convert', 'hf://acme/single/model.safetensors', out, '--dtype', 'f32'],
    ['quantize', `${server.base}/files/single/model.safetensors`, out, '--scheme', 'q8_0', '--format', 'safetensors'],
    ['merge', 'hf://acme/sharded', join(dir, 'single'), join(dir, 'merged')],
  ]) {
    const w = await cli(args);
    assert.equal(w.code, 2, args.join(' '));
    assert.match(w.stderr, /^error\[unsupported\]: (hf|http):\/\/\S+: \w+ reads local files only/);
  }
  assert.equal(existsSync(out), false);
  assert.equal(existsSync(join(dir, 'merged')), false);
});

test('Ctrl-C during a request to a server that does not answer ends the command at once', async () => {
  server.replace('/files/silent/model.safetensors', readFileSync(join(dir, 'single', 'model.safetensors')));
  server.inject('/files/silent/model.safetensors', { kind: 'silent' });
  const started = Date.now();
  const r = await cli(['inspect', `${server.base}/files/silent/model.safetensors`], {}, 1500);
  assert.equal(r.code, 130, r.stderr);
  assert.match(r.stderr, /^cancelled$/m);
  // The idle timeout is 30 s: only the abort can end it this early.
  assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
});
