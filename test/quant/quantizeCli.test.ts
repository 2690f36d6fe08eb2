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
  await assert.rejects(run([input, input, '--scheme', 'q8_0', '--format', 'safetensors', '--backend', 'cpu']), /would replace the input/);
  assert.ok((await stat(input)).size > 0);
});

test('tensor selection: 2-D weights with whole blocks; norms, biases, odd rows kept with reasons; --keep/--only globs', async () => {
  const { planQuantization, globToRegExp } = await import('../../src/pipelines/quantize');
  const { SCHEMES } = await import('../../src/compute/quant/schemes');
  const t = (name: string, shape: number[], dtype = 'BF16') => ({ name, dtype, shape, numel: shape.reduce((a, b) => a * b, 1), file: 0, byteOffset: 0, byteLength: 0 }) as never;
  const tensors = [
    t('model.embed_tokens.weight', [256, 64]),
    t('model.layers.0.self_attn.q_proj.weight', [64, 64]),
    t('model.layers.0.self_attn.q_proj.bias', [64]),
    t('model.layers.0.mlp.down_proj.weight', [64, 172]),
    t('model.layers.0.input_layernorm.weight', [64]),
    t('model.layers.1.self_attn.q_proj.weight', [64, 64]),
    t('lm_head.weight', [256, 64]),
    t('conv.weight', [8, 4, 3, 3]),
    t('position_ids', [1, 64], 'I64'),
  ];
  const why = (plans: ReturnType<typeof planQuantization>) => Object.fromEntries(plans.map((p) => [p.name, p.action === 'quantize' ? 'Q' : p.reason!]));
  const q8 = why(planQuantization(tensors, SCHEMES.q8_0));
  assert.equal(q8['model.embed_tokens.weight'], 'Q');
  assert.equal(q8['lm_head.weight'], 'Q');
  assert.equal(q8['model.layers.0.self_attn.q_proj.weight'], 'Q');
  assert.match(q8['model.layers.0.self_attn.q_proj.bias'], /bias/);
  assert.match(q8['model.layers.0.input_layernorm.weight'], /norm/);
  assert.match(q8['model.layers.0.mlp.down_proj.weight'], /172 is not a multiple of 32/);
  assert.match(q8['conv.weight'], /4-D/);
  assert.match(q8['position_ids'], /not a float/);
  // Per-channel schemes take any row length.
  assert.equal(why(planQuantization(tensors, SCHEMES['int8-channel']))['model.layers.0.mlp.down_proj.weight'], 'Q');
  const sel = why(planQuantization(tensors, SCHEMES.q4_0, ['lm_head.*', '*.embed_tokens.*'], ['model.layers.0.*', 'lm_head.weight']));
  assert.match(sel['lm_head.weight'], /--keep lm_head\.\*/);
  assert.match(sel['model.embed_tokens.weight'], /--keep/);
  assert.equal(sel['model.layers.0.self_attn.q_proj.weight'], 'Q');
  assert.match(sel['model.layers.1.self_attn.q_proj.weight'], /--only/);
  assert.ok(globToRegExp('model.layers.?.mlp.*').test('model.layers.3.mlp.up_proj.weight'));
  assert.ok(!globToRegExp('model.layers.?.mlp.*').test('model.layers.12.mlp.up_proj.weight'));
});
