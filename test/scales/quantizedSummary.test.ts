// The viewer's host side for quantized models: each quantized tensor's scheme, bits per weight
// (from the stored tensors' own byte sizes, read without recognition), group and parts; the
// header's declaration, ignore list and disagreements; memory from logical shapes; scaleStats
// through the service, cached, and refused for a plain tensor.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { disposeBackends } from '../../src/compute/backend';
import { declaredQuantization } from '../../src/format/quantized/configInfo';
import { openModel } from '../../src/format/openModel';
import { nodeOpener, openSafetensorsFile } from '../../src/format/safetensorsModel';
import { ModelService } from '../../src/pipelines/viewer/modelService';
import { quantHeaderOf } from '../../src/pipelines/viewer/quantizedSummary';
import { tensorEntries } from '../../src/shared/protocol';
import { quantEntries } from '../../src/shared/quantizedColumns';
import { expectedOf, quantFixtures, torchAvailable } from '../quantized/qstFixtures';

after(() => disposeBackends());
const skip = !torchAvailable() && 'python3 with torch is not installed';

// What each fixture's weights are, as make_quantized_fixtures.py writes them.
const GROUPS: Record<string, Record<string, string>> = {
  fp8_block: { 'model.layers.0.self_attn.q_proj.weight': '128×128 block', 'model.layers.0.mlp.down_proj.weight': '128×128 block' },
  fp8_block_disagree: { 'q_proj.weight': '128×128 block' },
  fp8_ct: { 'k_proj.weight': 'per channel', 'v_proj.weight': 'per tensor', 'o_proj.weight': 'per channel' },
  mxfp4: { 'model.layers.0.mlp.experts.down_proj': 'block 32', 'model.layers.0.mlp.router_proj': 'block 32' },
  nvfp4_ct: { 'mlp.up_proj.weight': 'group 16' },
  nvfp4_modelopt: { 'mlp.up_proj.weight': 'group 16' },
  ct_pack: { 'q_proj.weight': 'group 32', 'k_proj.weight': 'per channel', 'v_proj.weight': 'per channel' },
  gptq: { 'layers.0.q_proj.weight': 'group 16, act-order' },
  gptq_v2_8bit: { 'fc.weight': 'per channel' },
  awq: { 'layers.0.mlp.gate_proj.weight': 'group 32' },
};

test('summary: every quantized tensor with its scheme, bits per weight from the stored bytes, group and parts; memory from logical shapes', { skip }, async () => {
  for (const [c, groups] of Object.entries(GROUPS)) {
    const dir = join(quantFixtures().dir, c);
    const want = expectedOf(dir);
    const stored = await openSafetensorsFile(join(dir, 'model.safetensors'), nodeOpener);
    const m = await openModel(dir);
    try {
      const s = new ModelService(m).summary();
      const tensors = tensorEntries(s.tensors);
      const q = quantEntries(s.quantized!);
      assert.deepEqual(q.map((e) => tensors[e.tensor]!.name).sort(), Object.keys(want.logical).sort(), c);
      for (const e of q) {
        const name = tensors[e.tensor]!.name;
        const w = want.logical[name]!;
        assert.equal(e.scheme, w.scheme, name);
        assert.equal(e.group, groups[name], `${c} ${name}: group`);
        assert.deepEqual(e.parts.map((p) => p.role), w.parts, name);
        // The stored tensors that make this weight: everything of the file but the raw tensors and the other weights' parts.
        const stem = name.replace(/\.weight$/, '');
        const mine = stored.tensors.filter((t) => !want.raw.includes(t.name) && (t.name.startsWith(`${stem}.`) || t.name.startsWith(`${stem}_`)) && !t.name.endsWith('.weight_shape'));
        const numel = w.shape.reduce((a, b) => a * b, 1);
        const bytes = mine.reduce((a, t) => a + t.byteLength, 0);
        assert.ok(Math.abs(e.bitsPerWeight - (bytes * 8) / numel) < 1e-12, `${c} ${name}: ${e.bitsPerWeight} bpw vs ${(bytes * 8) / numel}`);
        for (const p of e.parts) assert.ok(mine.some((t) => t.byteOffset === p.byteOffset && t.byteLength === p.byteLength), `${name} ${p.role} is a stored tensor's range`);
      }
      // Memory at each precision counts logical values (a packed int32 word is 8 values, not one).
      const params = [...Object.values(want.logical).map((l) => l.shape), ...want.raw.map((r) => stored.tensor(r)!.shape)].reduce((a, sh) => a + sh.reduce((x, y) => x * y, 1), 0);
      assert.equal(s.totals.params, params, c);
      assert.equal(s.memory.find((r) => r.format === 'FP32')!.bytes, params * 4, c);
      assert.equal(s.memory.find((r) => r.format === 'BF16')!.bytes, params * 2, c);
      // The outline's table indexes its own tensor list.
      const o = new ModelService(m).outline();
      const ot = tensorEntries(o.tensors);
      for (const e of o.quantized ? quantEntries(o.quantized) : []) assert.ok(Object.keys(want.logical).includes(ot[e.tensor]!.name), `${c} outline ${ot[e.tensor]!.name}`);
    } finally {
      await m.close();
      await stored.close();
    }
  }
});

test('header: schemes, config.json’s declaration and ignore list, and each disagreement (tensors win)', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tw-quant-header-'));
  try {
    cpSync(join(quantFixtures().dir, 'fp8_ct', 'model.safetensors'), join(dir, 'model.safetensors'));
    const config = {
      quantization_config: {
        quant_method: 'fp8',
        config_groups: { g: { weights: { num_bits: 8, group_size: 128 } } },
        ignore: ['lm_head', 're:.*k_proj$', 'v_proj', 'k_pro'],
      },
    };
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    const m = await openModel(join(dir, 'model.safetensors'));
    try {
      const h = quantHeaderOf(m)!;
      assert.deepEqual(h.schemes.map((x) => `${x.scheme} ${x.tensors}`).sort(), ['fp8-channel 1', 'fp8-tensor 1', 'int8-scaled 1']);
      assert.equal(h.method, 'fp8');
      assert.equal(h.bits, 8);
      assert.equal(h.group, '128');
      assert.equal(h.ignoreKey, 'ignore');
      assert.deepEqual(h.ignore, ['lm_head', 're:.*k_proj$', 'v_proj', 'k_pro']);
      // `v_proj` names a module stored as FP8; the `re:` pattern is not run, and `k_pro` is not a whole name.
      assert.deepEqual(h.disagreements, [
        "v_proj.weight: config.json's ignore lists it as unquantized, but it is stored as fp8-tensor; shown as stored",
        'config.json says quant_method fp8, but tensors are stored as int8-scaled; shown as stored',
      ]);
    } finally {
      await m.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('declaredQuantization reads each library’s keys and ignores what is not a declaration', () => {
  assert.equal(declaredQuantization(undefined), undefined);
  assert.equal(declaredQuantization('{not json'), undefined);
  assert.equal(declaredQuantization('{"model_type": "llama"}'), undefined);
  assert.equal(declaredQuantization('{"quantization_config": [1]}'), undefined);
  assert.deepEqual(declaredQuantization(JSON.stringify({ quantization_config: { quant_method: 'mxfp4', modules_to_not_convert: ['model.layers.*.self_attn', 'lm_head', 7] } })), {
    method: 'mxfp4',
    format: undefined,
    bits: undefined,
    group: undefined,
    ignore: ['model.layers.*.self_attn', 'lm_head'],
    ignoreKey: 'modules_to_not_convert',
  });
  const mo = declaredQuantization(JSON.stringify({ quantization_config: { quant_method: 'modelopt', quant_algo: 'NVFP4', group_size: 16, exclude_modules: ['lm_head'] } }))!;
  assert.deepEqual([mo.format, mo.group, mo.ignoreKey, mo.ignore], ['NVFP4', '16', 'exclude_modules', ['lm_head']]);
  const gp = declaredQuantization(JSON.stringify({ quantization_config: { quant_method: 'gptq', bits: 4, group_size: -1 } }))!;
  assert.deepEqual([gp.bits, gp.group, gp.ignore, gp.ignoreKey], [4, 'per channel', [], undefined]);
  const fp = declaredQuantization(JSON.stringify({ quantization_config: { quant_method: 'fp8', weight_block_size: [128, 128], ignored_layers: [] } }))!;
  assert.deepEqual([fp.group, fp.ignore], ['128×128', []]);
});

test('the service counts scales once per file version and refuses a tensor without scales', { skip }, async () => {
  const m = await openModel(join(quantFixtures().dir, 'gptq'));
  try {
    const svc = new ModelService(m, { backend: () => 'cpu' });
    const a = await svc.scaleStats('layers.0.q_proj.weight');
    assert.deepEqual(a.report.series.map((s) => [s.name, s.kind, s.count]), [
      ['scales', 'scale', 4 * 48],
      ['qzeros', 'zero', 4 * 48],
    ]);
    assert.equal(await svc.scaleStats('layers.0.q_proj.weight'), a, 'cached');
    await assert.rejects(svc.scaleStats('layers.0.q_proj.bias'), (e: Error & { code?: string }) => e.code === 'unsupported');
  } finally {
    await m.close();
  }
});
