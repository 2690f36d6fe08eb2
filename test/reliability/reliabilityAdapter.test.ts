// Adapter configs and adapters written by someone else: patterns that would make a
// backtracking engine run for minutes, configs of the wrong shape, factors of the
// wrong rank, shard links that leave the model's folder, and a merge's stderr.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FormatError } from '../../src/format/errors';
import { openModel } from '../../src/format/openModel';
import { describeAdapter, parsePeftConfig, patternKeyFor } from '../../src/pipelines/lora';
import { MatchBudget, PatternKeys } from '../../src/pipelines/peftPatterns';
import { gen, writePeft, writeTensors, type T } from '../merge/mergeFixtures';

const CLI = join(__dirname, 'cli.js');
const EVIL = '(.*.*)*Z';
let root = '';

function cli(args: string[]): Promise<{ code: number | null; out: string; err: string; ms: number }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TW_CPU_WORKERS: '2' } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    // A hang is killed so the suite cannot stall; the time assertions below fail first.
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err, ms: Date.now() - t0 });
    });
  });
}

const PROJ = ['q_proj', 'k_proj', 'v_proj', 'o_proj'];
const modName = (l: number, p: string) => `model.layers.${l}.self_attn.${p}`;

/** A Llama-like base of `layers` × 4 projections [16, 16] and a rank-2 PEFT adapter on all of them. */
async function llamaLike(dir: string, layers: number, config: Record<string, unknown>): Promise<{ base: string; adapter: string }> {
  const base: T[] = [];
  const ad: T[] = [];
  let seed = 1;
  for (let l = 0; l < layers; l++) {
    for (const p of PROJ) {
      base.push(gen(`${modName(l, p)}.weight`, 'BF16', [16, 16], seed++));
      ad.push(gen(`base_model.model.${modName(l, p)}.lora_A.weight`, 'F32', [2, 16], seed++));
      ad.push(gen(`base_model.model.${modName(l, p)}.lora_B.weight`, 'F32', [16, 2], seed++));
    }
  }
  mkdirSync(dir, { recursive: true });
  await writeTensors(join(dir, 'base.safetensors'), base);
  await writePeft(join(dir, 'adapter'), { config, tensors: ad });
  return { base: join(dir, 'base.safetensors'), adapter: join(dir, 'adapter') };
}

before(() => {
  root = mkdtempSync(join(tmpdir(), 'tw-rel-adapter-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

describe('rank_pattern and alpha_pattern', () => {
  it('an exponential-backtracking pattern finishes in under a second, in the viewer and in merge --dry-run', async () => {
    const { base, adapter } = await llamaLike(join(root, 'evil'), 8, { r: 2, lora_alpha: 4, rank_pattern: { [EVIL]: 4 }, alpha_pattern: { [EVIL]: 1 } });
    const t0 = performance.now();
    assert.equal(patternKeyFor([EVIL], `${modName(31, 'q_proj')}.${'a'.repeat(200)}`), undefined);
    const d = await describeAdapter(join(adapter, 'adapter_model.safetensors'));
    const ms = performance.now() - t0;
    assert.ok(ms < 1000, `took ${ms} ms`);
    // The pattern matches nothing (no name has a Z), so the config's r and alpha apply.
    assert.deepEqual([d.modules.length, d.ranks, d.alphas], [32, [2], [4]]);
    const r = await cli(['merge', base, adapter, join(root, 'evil', 'out.safetensors'), '--dry-run']);
    assert.equal(r.code, 0, r.err);
    assert.ok(r.ms < 10_000, `merge --dry-run took ${r.ms} ms`);
  });

  it('matches like PEFT’s re.match(rf"(.*\\.)?({key})$") on ordinary patterns', () => {
    // The oracle is JavaScript's own engine on the same formula: safe here, since these patterns do not backtrack badly.
    const keys = [
      'q_proj', 'proj', 'self_attn.q_proj', 'layers.1.self_attn.q_proj', 'layers\\.1\\d\\..*q_proj', '^model.layers.0.self_attn.q_proj',
      '^self_attn.q_proj', '[qk]_proj', 'layers.(0|3).*v_proj', 'layers\\.0\\.self_attn\\.q_proj', 'self_attn\\.q.proj', 'layers\\.1xself_attn.k_proj', 'model.layers.2.self_attn.o_proj', 'layers.1.self_attn.q.proj', 'q-proj', '.*', 'o_pro',
    ];
    const names = [modName(0, 'q_proj'), modName(1, 'q_proj'), modName(12, 'q_proj'), modName(3, 'v_proj'), modName(2, 'o_proj'), 'lm_head', 'q_proj', 'xq_proj', 'model.layers.1xself_attn.k_proj'];
    let compared = 0;
    for (const key of keys) {
      const oracle = new RegExp(`^(?:.*\\.)?(?:${key})$`);
      for (const n of names) {
        assert.equal(patternKeyFor([key], n) !== undefined, oracle.test(n), `${key} on ${n}`);
        compared++;
      }
    }
    assert.equal(compared, keys.length * names.length);
    // The first key in the config's order wins.
    assert.equal(patternKeyFor(['v_proj', 'q_proj', 'self_attn.q_proj'], modName(0, 'q_proj')), 'q_proj');
  });

  it('refuses patterns RE2 cannot run (backreferences, lookaround) with an error naming the key, never a different match', () => {
    for (const key of ['(q)_\\1roj', '(?=q)q_proj', '(?<!k)_proj', '(?P<p>q)(?P=p)', 'a)|(b', '[[:alpha:]]_proj', 'q_proj\\Z']) {
      assert.throws(
        () => parsePeftConfig(JSON.stringify({ r: 2, rank_pattern: { [key]: 4 } }), '/x/adapter_config.json'),
        (e: unknown) => e instanceof FormatError && e.code === 'config_invalid' && e.message.includes(`rank_pattern key '${key}'`) && e.message.startsWith('/x/adapter_config.json'),
        key,
      );
    }
  });

  it('bounds the number and length of keys and names, and the time spent', () => {
    const many = Object.fromEntries(Array.from({ length: 10_001 }, (_, i) => [`k${i}`, 2]));
    assert.throws(() => parsePeftConfig(JSON.stringify({ rank_pattern: many }), 'c.json'), /10001 keys, above the limit/);
    assert.throws(() => parsePeftConfig(JSON.stringify({ alpha_pattern: { ['a'.repeat(1001)]: 2 } }), 'c.json'), /1001 characters, above the limit/);
    assert.throws(() => new PatternKeys(['q'], 'rank_pattern', 'c.json').keyFor('m.'.repeat(600)), /above the limit of 1000 for matching rank_pattern/);
    // An exhausted budget stops the matching with a clear error instead of running on.
    const spent = new MatchBudget('c.json', -1);
    assert.throws(() => new PatternKeys(['x(a|b)*y', 'z'], 'alpha_pattern', 'c.json').keyFor(modName(0, 'q_proj'), spent), (e: unknown) => e instanceof FormatError && e.code === 'config_invalid' && /alpha_pattern took over/.test(e.message));
  });
});

describe('adapter_config.json of the wrong shape', () => {
  const cases: [string, string, RegExp][] = [
    ['null', 'null', /must be a JSON object, not null/],
    ['an array', '[]', /must be a JSON object, not an array/],
    ['a number', '42', /must be a JSON object, not number/],
    ['r = 0', '{"r": 0}', /key 'r' must be a positive integer, not 0/],
    ['fractional r', '{"r": 2.5}', /key 'r' must be a positive integer, not 2.5/],
    ['a string alpha', '{"r": 2, "lora_alpha": "16"}', /key 'lora_alpha' must be a finite number, not "16"/],
    ['a list as rank_pattern', '{"r": 2, "rank_pattern": ["q_proj"]}', /key 'rank_pattern' must be an object/],
    ['a string rank', '{"r": 2, "rank_pattern": {"q_proj": "4"}}', /key 'rank_pattern\['q_proj'\]' must be a positive integer/],
    ['a number as target_modules', '{"r": 2, "target_modules": 5}', /key 'target_modules' must be a list of module names, not 5/],
    ['numbers in target_modules', '{"r": 2, "target_modules": ["q_proj", 1]}', /key 'target_modules' must be a list/],
    ['a string use_rslora', '{"r": 2, "use_rslora": "yes"}', /key 'use_rslora' must be true or false/],
    ['not JSON', '{r: 2}', /is not JSON/],
  ];

  it('each gives exit 2 with error[config_invalid] naming the file and the key', async () => {
    const dir = join(root, 'shape');
    const { base, adapter } = await llamaLike(dir, 1, { r: 2 });
    const cfg = join(adapter, 'adapter_config.json');
    for (const [what, text, message] of cases) {
      writeFileSync(cfg, text);
      const r = await cli(['merge', base, adapter, join(dir, 'out.safetensors'), '--dry-run']);
      assert.equal(r.code, 2, `${what}: ${r.err}`);
      assert.match(r.err, /^error\[config_invalid\]: /, what);
      assert.ok(r.err.includes(cfg), `${what}: ${r.err}`);
      assert.match(r.err, message, what);
    }
    // And a valid config, to show the fixture itself merges.
    writeFileSync(cfg, JSON.stringify({ r: 2, lora_alpha: 4, target_modules: PROJ }));
    const ok = await cli(['merge', base, adapter, join(dir, 'out.safetensors'), '--dry-run']);
    assert.equal(ok.code, 0, ok.err);
  });
});

describe('factor shapes', () => {
  it('refuses a 3-D lora_A on a 2-D base, naming the tensor, and a 3-D pair that would otherwise fit', async () => {
    const dir = join(root, 'shapes');
    mkdirSync(dir, { recursive: true });
    const base = join(dir, 'base.safetensors');
    await writeTensors(base, [gen('m.q.weight', 'F32', [8, 8], 1)]);
    await writePeft(join(dir, 'a3'), { config: { r: 2 }, tensors: [gen('base_model.model.m.q.lora_A.weight', 'F32', [2, 4, 2], 2), gen('base_model.model.m.q.lora_B.weight', 'F32', [8, 2], 3)] });
    const r = await cli(['merge', base, join(dir, 'a3'), join(dir, 'o.safetensors'), '--dry-run']);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /^error\[shape_invalid\]: .*tensor 'base_model\.model\.m\.q\.lora_A\.weight': LoRA factors of 'm\.q' do not chain/);
    await writePeft(join(dir, 'b3'), { config: { r: 2 }, tensors: [gen('base_model.model.m.q.lora_A.weight', 'F32', [2, 4, 2], 2), gen('base_model.model.m.q.lora_B.weight', 'F32', [8, 2, 1], 3)] });
    const r2 = await cli(['merge', base, join(dir, 'b3'), join(dir, 'o.safetensors'), '--backend', 'cpu']);
    assert.equal(r2.code, 2, r2.err);
    assert.match(r2.err, /^error\[merge\]: 2 adapter key\(s\) do not map.*base_model\.model\.m\.q\.lora_A\.weight \(shape mismatch with 'm\.q\.weight': .*does not fit \[8,8\]\)/);
    assert.equal(existsSync(join(dir, 'o.safetensors')), false);
  });

  it('keeps 4-D kohya conv factors on a 4-D conv weight working', async () => {
    const dir = join(root, 'conv');
    mkdirSync(dir, { recursive: true });
    const base = join(dir, 'base.safetensors');
    await writeTensors(base, [gen('unet.conv_in.weight', 'F32', [8, 4, 3, 3], 1)]);
    const ad = join(dir, 'lora.safetensors');
    await writeTensors(ad, [gen('lora_unet_conv_in.lora_down.weight', 'F32', [2, 4, 3, 3], 2), gen('lora_unet_conv_in.lora_up.weight', 'F32', [8, 2, 1, 1], 3)]);
    const r = await cli(['merge', base, ad, join(dir, 'o.safetensors'), '--backend', 'cpu']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /merged 1 tensor/);
  });
});

describe('merge output streams', () => {
  it('prints no MaxListenersExceededWarning (nor any warning) with many tensors in flight', async () => {
    const { base, adapter } = await llamaLike(join(root, 'listeners'), 12, { r: 2, lora_alpha: 4 });
    const r = await cli(['merge', base, adapter, join(root, 'listeners', 'out.safetensors'), '--backend', 'cpu']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /merged 48 tensor/);
    assert.doesNotMatch(r.err, /Warning|MaxListeners/);
  });
});

describe('shards an index names', () => {
  it('refuses a shard that links outside the model folder, and one named with .. or an absolute path', async () => {
    const dir = join(root, 'links');
    const outside = join(root, 'elsewhere');
    mkdirSync(join(dir, 'model'), { recursive: true });
    mkdirSync(outside, { recursive: true });
    await writeTensors(join(outside, 'secret.safetensors'), [gen('w', 'F32', [4], 1)]);
    symlinkSync(join(outside, 'secret.safetensors'), join(dir, 'model', 'model-00001-of-00001.safetensors'));
    const index = (shard: string) => JSON.stringify({ metadata: {}, weight_map: { w: shard } });
    writeFileSync(join(dir, 'model', 'model.safetensors.index.json'), index('model-00001-of-00001.safetensors'));
    const r = await cli(['inspect', join(dir, 'model')]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /^error\[index_invalid\]: .*model-00001-of-00001\.safetensors: the shard is a link to .*elsewhere.*outside the model's folder/);
    for (const shard of ['../elsewhere/secret.safetensors', join(outside, 'secret.safetensors')]) {
      writeFileSync(join(dir, 'model', 'model.safetensors.index.json'), index(shard));
      const r2 = await cli(['inspect', join(dir, 'model')]);
      assert.equal(r2.code, 2, r2.err);
      assert.match(r2.err, /^error\[index_invalid\]: .*is not a file name inside the index's folder/);
    }
  });

  it('still opens links inside the folder, and the Hugging Face cache layout (snapshots → blobs)', async () => {
    const repo = join(root, 'hub', 'models--x--y');
    const snap = join(repo, 'snapshots', 'abc123');
    mkdirSync(join(repo, 'blobs'), { recursive: true });
    mkdirSync(snap, { recursive: true });
    await writeTensors(join(repo, 'blobs', 'f00d'), [gen('w', 'F32', [4], 1)]);
    symlinkSync('../../blobs/f00d', join(snap, 'model-00001-of-00001.safetensors'));
    writeFileSync(join(snap, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { w: 'model-00001-of-00001.safetensors' } }));
    const m = await openModel(snap);
    assert.deepEqual(m.tensors.map((t) => t.name), ['w']);
    await m.close();
  });
});
