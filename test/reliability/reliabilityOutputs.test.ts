// Outputs never replace inputs, whatever path leads there (folders, relative or absolute,
// symlinked files and folders, hard links), for every command that writes; refused before
// anything is written, exit 2, error[output_is_input]. The CLI runs as a child process and
// the whole fixture tree is compared byte for byte (and inode for inode) before and after.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli, llama, peftAdapter, snapshot } from './harness';

let root = '';

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'tw-rel-out-'));
  await llama(join(root, 'in'));
  await llama(join(root, 'sh'), { shards: 2 });
  await peftAdapter(join(root, 'ad'));
  symlinkSync('in', join(root, 'inlink'));
  symlinkSync('sh', join(root, 'shlink'));
  symlinkSync('ad', join(root, 'adlink'));
  symlinkSync('in/model.safetensors', join(root, 'filelink.safetensors'));
  symlinkSync('in/model.safetensors', join(root, 'filelink.gguf'));
  linkSync(join(root, 'in', 'model.safetensors'), join(root, 'hard.safetensors'));
  linkSync(join(root, 'in', 'model.safetensors'), join(root, 'hard.gguf'));
  linkSync(join(root, 'ad', 'adapter_model.safetensors'), join(root, 'hardad.safetensors'));
  // A folder whose config.json (copied by merge, written by quantize) is a symlink to the base's.
  mkdirSync(join(root, 'cfglink'));
  symlinkSync('../in/config.json', join(root, 'cfglink', 'config.json'));
});

after(() => rmSync(root, { recursive: true, force: true }));

const Q8 = ['--scheme', 'q8_0', '--backend', 'cpu'];

/** [what, argv]: each must be refused with output_is_input and leave the tree as it was. */
const ALIASES: [string, () => string[]][] = [
  ['convert: folder output is the input folder (relative)', () => ['convert', 'in/model.safetensors', 'in']],
  ['convert: folder output is the input folder (absolute, trailing slash)', () => ['convert', 'in/model.safetensors', `${root}/in/`]],
  ['convert: file output through a symlinked folder', () => ['convert', 'in/model.safetensors', 'inlink/model.safetensors']],
  ['convert: folder output is a symlink to the input folder', () => ['convert', 'in', 'inlink']],
  ['convert: file output is a symlink to the input', () => ['convert', 'in/model.safetensors', 'filelink.safetensors']],
  ['convert: file output is a hard link to the input', () => ['convert', 'in', 'hard.safetensors']],
  ['convert: sharded input, sharded output into its own folder', () => ['convert', 'sh', 'sh', '--max-shard-size', '200KB']],
  ['convert: sharded input, single output over its folder by symlink', () => ['convert', 'sh/model.safetensors.index.json', 'shlink']],
  ['quantize safetensors: folder output is the input folder', () => ['quantize', 'in', 'in', ...Q8, '--format', 'safetensors']],
  ['quantize safetensors: absolute folder output with trailing slash', () => ['quantize', 'in/model.safetensors', `${root}/in/`, '--scheme', 'int8-channel', '--backend', 'cpu']],
  ['quantize safetensors: file output through a symlinked folder', () => ['quantize', 'in/model.safetensors', 'inlink/model.safetensors', ...Q8]],
  ['quantize safetensors: sharded input into its own folder', () => ['quantize', 'sh', 'sh', ...Q8, '--format', 'safetensors']],
  ['quantize safetensors: sharded input into its folder by symlink', () => ['quantize', 'sh/model.safetensors.index.json', 'shlink', '--scheme', 'int8-channel', '--backend', 'cpu']],
  ['quantize safetensors: folder whose config.json is the input\'s (symlink)', () => ['quantize', 'in', 'cfglink', ...Q8, '--format', 'safetensors']],
  ['quantize gguf: output is a symlink to the input', () => ['quantize', 'in', 'filelink.gguf', ...Q8]],
  ['quantize gguf: output is a hard link to the input', () => ['quantize', 'in', 'hard.gguf', ...Q8]],
  ['quantize gguf: sharded input, output is its index through a symlinked folder', () => ['quantize', 'sh', 'shlink/model.safetensors.index.json', ...Q8, '--format', 'gguf']],
  ['quantize gguf: sharded input, output is a shard', () => ['quantize', 'sh', 'sh/model-00002-of-00002.safetensors', ...Q8, '--format', 'gguf']],
  ['merge: folder output is the base folder (relative)', () => ['merge', 'in', 'ad', 'in', '--backend', 'cpu']],
  ['merge: folder output is the base folder (absolute)', () => ['merge', 'in', 'ad', `${root}/in/`, '--backend', 'cpu']],
  ['merge: folder output is a symlink to the base folder', () => ['merge', 'in', 'ad', 'inlink', '--backend', 'cpu']],
  ['merge: file output is the base through a symlinked folder', () => ['merge', 'in/model.safetensors', 'ad', 'inlink/model.safetensors', '--backend', 'cpu']],
  ['merge: file output is a hard link to the base', () => ['merge', 'in', 'ad', 'hard.safetensors', '--backend', 'cpu']],
  ['merge: sharded base into its folder by symlink', () => ['merge', 'sh', 'ad', 'shlink', '--backend', 'cpu']],
  ['merge: output is the adapter file', () => ['merge', 'in', 'ad', 'ad/adapter_model.safetensors', '--backend', 'cpu']],
  ['merge: output is the adapter file through a symlinked folder', () => ['merge', 'in', 'ad', 'adlink/adapter_model.safetensors', '--backend', 'cpu']],
  ['merge: output is a hard link to the adapter file', () => ['merge', 'in', 'ad', 'hardad.safetensors', '--backend', 'cpu']],
  ['merge: the copied config.json would land on the base\'s (symlink)', () => ['merge', 'in', 'ad', 'cfglink', '--backend', 'cpu']],
];

describe('an output that is an input is refused before anything is written', () => {
  for (const [what, argv] of ALIASES) {
    test(what, () => {
      const before = snapshot(root);
      const r = cli(root, ...argv());
      assert.equal(r.code, 2, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stderr, /^error\[output_is_input\]: .*would replace the input /m);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.deepEqual(snapshot(root), before);
    });
  }
});

test('outputs beside the inputs that are not inputs are still allowed', () => {
  // The GGUF in the input folder has a name no input has; merge into the adapter's folder writes model.safetensors there.
  const r = cli(root, 'quantize', 'in', 'in', ...Q8, '--format', 'gguf');
  assert.equal(r.code, 0, r.stderr);
  assert.ok(existsSync(join(root, 'in', 'model-q8_0.gguf')));
  rmSync(join(root, 'in', 'model-q8_0.gguf'));
  const m = cli(root, 'merge', 'in', 'ad', 'ad', '--backend', 'cpu');
  assert.equal(m.code, 0, m.stderr);
  assert.ok(existsSync(join(root, 'ad', 'model.safetensors')));
  assert.ok(existsSync(join(root, 'ad', 'adapter_model.safetensors')));
  for (const n of readdirSync(join(root, 'ad'))) if (n !== 'adapter_model.safetensors' && n !== 'adapter_config.json') rmSync(join(root, 'ad', n));
});

describe('one rule for output folders: missing ones are created, with their parents', () => {
  const cases: [string, string[], string][] = [
    ['convert to a file', ['convert', 'in', 'new/c/a/b/out.safetensors'], 'new/c/a/b/out.safetensors'],
    ['convert to a folder', ['convert', 'in', 'new/c2/a/b', '--max-shard-size', '200KB'], 'new/c2/a/b/model.safetensors.index.json'],
    ['quantize to a gguf file', ['quantize', 'in', 'new/q/a/out.gguf', ...Q8], 'new/q/a/out.gguf'],
    ['quantize to a safetensors file', ['quantize', 'in', 'new/q2/a/out.safetensors', ...Q8], 'new/q2/a/out.safetensors'],
    ['quantize to a folder', ['quantize', 'in', 'new/q3/a/b', ...Q8, '--format', 'safetensors'], 'new/q3/a/b/config.json'],
    ['merge to a file', ['merge', 'in', 'ad', 'new/m/a/out.safetensors', '--backend', 'cpu'], 'new/m/a/out.safetensors'],
    ['merge to a folder', ['merge', 'in', 'ad', 'new/m2/a/b', '--backend', 'cpu'], 'new/m2/a/b/config.json'],
  ];
  for (const [what, argv, expect] of cases) {
    test(what, () => {
      const r = cli(root, ...argv);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(existsSync(join(root, expect)), `${expect} missing`);
    });
  }
  test('a job that fails after creating its folders removes them again', async () => {
    // B·A of values near 1e20 overflows F32: the merge fails mid-write with a non-finite value.
    await peftAdapter(join(root, 'adinf'), 1e20);
    for (const out of ['new/nan/a/b', 'new/nan2/a/out.safetensors']) {
      const r = cli(root, 'merge', 'in', 'adinf', out, '--backend', 'cpu');
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /not finite/);
      assert.equal(existsSync(join(root, out.split('/').slice(0, 2).join('/'))), false, `${out}: a created folder was left`);
    }
    rmSync(join(root, 'adinf'), { recursive: true });
  });
});
