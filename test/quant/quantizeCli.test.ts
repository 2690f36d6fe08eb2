import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { writeLlama } from '../fixtures/llama';
import { quantizeCommand } from '../../src/cli/quantize';
import { disposeBackends } from '../../src/compute/backend';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tw-qcli-'));
  await writeLlama(join(dir, 'in'));
});
after(async () => {
  await disposeBackends();
  await rm(dir, { recursive: true, force: true });
});

async function run(argv: string[]): Promise<{ code: number; out: string }> {
  const stdout = new PassThrough();
  let out = '';
  stdout.on('data', (b) => (out += b));
  const code = await quantizeCommand.run(argv, { stdout, stderr: new PassThrough(), signal: new AbortController().signal });
  return { code, out };
}

test('quantize --json prints the report; --preview writes nothing', async () => {
  const input = join(dir, 'in');
  const out = join(dir, 'm.gguf');
  const r = await run([input, out, '--scheme', 'q8_0', '--backend', 'cpu', '--json']);
  assert.equal(r.code, 0);
  const rep = JSON.parse(r.out);
  assert.equal(rep.scheme, 'q8_0');
  assert.equal(rep.format, 'gguf');
  assert.equal((await stat(out)).size > 0, true);
  assert.ok(rep.tensors.some((t: { action: string; reason?: string }) => t.action === 'kept' && /not a multiple of 32/.test(t.reason ?? '')));
  const pv = await run([input, '--preview', '--backend', 'cpu', '--scheme', 'q4_0', '--scheme', 'int8-channel']);
  assert.equal(pv.code, 0);
  assert.match(pv.out, /q4_0/);
  assert.match(pv.out, /int8-channel/);
  assert.doesNotMatch(pv.out, /q8_0/);
  await assert.rejects(run([input, out, '--scheme', 'q3']), /--scheme must be one of/);
  await assert.rejects(run([input, join(dir, 'x.gguf'), '--scheme', 'int8-channel', '--format', 'gguf']), /no GGUF tensor type/);
});

test('the output may not replace an input file', async () => {
  const input = join(dir, 'in', 'model.safetensors');
  await assert.rejects(run([input, input, '--scheme', 'q8_0', '--format', 'safetensors', '--backend', 'cpu']), /would replace an input/);
  assert.ok((await stat(input)).size > 0);
});
