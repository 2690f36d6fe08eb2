import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { buildMergeYaml, looksLikeMergeConfig, methodNeeds, WIZARD_METHODS, type MergeSpec } from '../../src/pipelines/mergeModels/builder';
import { parseMergeConfig } from '../../src/pipelines/mergeModels/config';
import { planMergeModels } from '../../src/pipelines/mergeModels/plan';
import { writeFineTuned, writeLlama } from '../fixtures/llama';

/** A spec for `method` with the models and parameters it asks for, values distinct per model. */
function specFor(method: MergeSpec['method']): MergeSpec {
  const needs = methodNeeds(method);
  const count = Math.min(needs.maxModels, 3);
  const models = Array.from({ length: count }, (_, i) => ({
    path: `/models/ft ${i}: "odd" #name`,
    ...(needs.weight ? { weight: 0.25 * (i + 1) } : {}),
    ...(needs.density ? { density: 0.3 + 0.1 * i } : {}),
  }));
  return { method, models, ...(needs.base ? { base: '/models/base' } : {}), ...(needs.t ? { t: 0.35 } : {}), dtype: 'bfloat16' };
}

describe('merge config builder', () => {
  for (const method of WIZARD_METHODS) {
    it(`${method}: the YAML parses back to the spec's merge`, () => {
      const spec = specFor(method);
      const c = parseMergeConfig(buildMergeYaml(spec), 'built.yml');
      assert.equal(c.method, method);
      assert.equal(c.baseModel, spec.base);
      assert.equal(c.dtype, 'BF16');
      const operands = c.models.filter((m) => m.model !== c.baseModel);
      assert.deepEqual(
        operands.map((m) => ({ path: m.model, ...m.parameters })),
        spec.models.map((m) => ({ ...m })),
      );
      assert.deepEqual(c.parameters, spec.t !== undefined ? { t: 0.35 } : {});
      if (spec.base !== undefined) assert.ok(c.models.some((m) => m.model === spec.base));
    });
  }

  it('recognizes mergekit configs by their top-level merge_method', () => {
    assert.equal(looksLikeMergeConfig(buildMergeYaml(specFor('ties'))), true);
    assert.equal(looksLikeMergeConfig('slices:\n  - sources: []\nmerge_method: passthrough\n'), true);
    assert.equal(looksLikeMergeConfig('name: ci\non: push\njobs:\n  build:\n    merge_method: x\n'), false);
  });

  it('a built ties config plans every tensor with the weights and densities given', async () => {
    const root = mkdtempSync(join(tmpdir(), 'tw-merge-builder-'));
    after(() => rmSync(root, { recursive: true, force: true }));
    const base = join(root, 'base');
    await writeLlama(base, { dtype: 'BF16' });
    const ft = [join(root, 'a'), join(root, 'b')];
    for (const [i, d] of ft.entries()) await writeFineTuned(base, d, { layersChanged: [0, 1, 2, 3], seed: 7 + i, deltaStd: 0.004 });
    const yaml = buildMergeYaml({ method: 'ties', base, models: [{ path: ft[0], weight: 0.6, density: 0.4 }, { path: ft[1], weight: 0.9, density: 0.7 }] });
    const plan = await planMergeModels(parseMergeConfig(yaml, 'built.yml'), 0);
    try {
      assert.equal(plan.tensors.length, plan.reference.tensors.length);
      for (const pt of plan.tensors) {
        assert.deepEqual(pt.models.map((m) => m.path), [base, ...ft]);
        assert.deepEqual(pt.ctx.perModel.map((p) => [p.weight, p.density]), [[0.6, 0.4], [0.9, 0.7]]);
      }
    } finally {
      await plan.close();
    }
  });
});
