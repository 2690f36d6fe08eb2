/**
 * The viewer's host side for a GGUF: the summary's architecture table, tokenizer summary
 * (special tokens with their text), chat template, other keys, type mix and bits per weight,
 * and paging through a long array, checked against the values the test wrote.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gguf, writeGguf, GGML_TYPE, type GgufTensor } from '../../src/format/gguf/writer';
import { ggmlTypeByName } from '../../src/format/gguf/types';
import { openModel } from '../../src/format/openModel';
import { ModelService } from '../../src/pipelines/viewer/modelService';
import { tensorEntries, treeFromTable } from '../../src/shared/protocol';
import { summaryText } from '../../src/pipelines/viewer/summaryText';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'tw-viewer-gguf-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const TEMPLATE = "{# roles #}{% for m in messages %}<|{{ m['role'] }}|>{{ m.content | trim }}{% endfor %}";

function tokens(n: number): string[] {
  return Array.from({ length: n }, (_, i) => (i === 0 ? '<unk>' : i === 1 ? '<s>' : i === n - 1 ? '<|eot_id|>' : i % 7 === 0 ? `Ġtok${i}\n` : `tok${i}`));
}

function tensor(name: string, type: 'Q8_0' | 'Q4_0' | 'F32', ne: number[]): GgufTensor {
  const t = ggmlTypeByName(type);
  const bytes = ((ne.reduce((a, b) => a * b, 1) / t.blockSize) * t.typeSize);
  return { name, dims: ne, ggmlType: t.id, byteLength: bytes, data: new Uint8Array(bytes) };
}

async function write(path: string, vocab: number): Promise<{ tokens: string[]; tensors: GgufTensor[] }> {
  const tok = tokens(vocab);
  const tensors = [
    tensor('token_embd.weight', 'Q8_0', [64, 32]),
    tensor('blk.0.attn_q.weight', 'Q4_0', [64, 64]),
    tensor('blk.0.attn_norm.weight', 'F32', [64]),
    tensor('blk.1.attn_q.weight', 'Q4_0', [64, 64]),
    tensor('blk.1.attn_norm.weight', 'F32', [64]),
    tensor('output_norm.weight', 'F32', [64]),
  ];
  await writeGguf(
    path,
    [
      ['general.architecture', gguf.str('llama')],
      ['general.name', gguf.str('tiny <b>model</b>')],
      ['general.tags', gguf.arr('string', ['a', 'b', 'c'])],
      ['llama.context_length', gguf.u32(4096)],
      ['llama.attention.layer_norm_rms_epsilon', gguf.f32(1e-5)],
      ['llama.block_count', gguf.u32(2)],
      ['llama.embedding_length', gguf.u32(64)],
      ['tokenizer.ggml.model', gguf.str('gpt2')],
      ['tokenizer.ggml.pre', gguf.str('llama-bpe')],
      ['tokenizer.ggml.tokens', gguf.arr('string', tok)],
      ['tokenizer.ggml.merges', gguf.arr('string', tok.slice(0, vocab >> 1).map((t) => `${t} x`))],
      ['tokenizer.ggml.bos_token_id', gguf.u32(1)],
      ['tokenizer.ggml.eos_token_id', gguf.u32(vocab - 1)],
      ['tokenizer.ggml.padding_token_id', gguf.u32(vocab + 5)],
      ['tokenizer.chat_template', gguf.str(TEMPLATE)],
    ],
    tensors,
  );
  return { tokens: tok, tensors };
}

test('a GGUF summary: architecture rows, tokenizer with special texts, template, other keys, type mix and bpw', async () => {
  const path = join(dir, 'tiny.gguf');
  const { tensors } = await write(path, 1000);
  const m = await openModel(path);
  try {
    const svc = new ModelService(m);
    for (const s of [svc.outline(), svc.summary()]) {
      const g = s.gguf!;
      assert.equal(g.version, 3);
      assert.equal(g.architecture, 'llama');
      // Known keys first, in a reader's order; the rest in file order.
      assert.deepEqual(g.hparams.map((r) => [r.label, r.text, r.key]), [
        ['layers', '2', 'llama.block_count'],
        ['embedding', '64', 'llama.embedding_length'],
        ['context', '4096', 'llama.context_length'],
        ['RMS norm ε', '0.00001', 'llama.attention.layer_norm_rms_epsilon'],
      ]);
      const tok = g.tokenizer!;
      assert.equal(tok.model, 'gpt2');
      assert.equal(tok.pre, 'llama-bpe');
      assert.equal(tok.vocabSize, 1000);
      assert.equal(tok.merges, 500);
      assert.deepEqual(tok.special, [
        { label: 'BOS', key: 'tokenizer.ggml.bos_token_id', id: 1, text: '<s>' },
        { label: 'EOS', key: 'tokenizer.ggml.eos_token_id', id: 999, text: '<|eot_id|>' },
        // An id past the vocabulary has no text, and says so by its absence.
        { label: 'PAD', key: 'tokenizer.ggml.padding_token_id', id: 1005 },
      ]);
      assert.equal(tok.chatTemplate, TEMPLATE);
      const keys = Object.fromEntries(g.keys.map((r) => [r.key, r]));
      assert.equal(keys['tokenizer.chat_template'], undefined, 'the template is shown highlighted, not as a row');
      assert.deepEqual(keys['general.tags'], { key: 'general.tags', type: '[string]', text: '["a", "b", "c"]' });
      assert.deepEqual(keys['tokenizer.ggml.tokens'], { key: 'tokenizer.ggml.tokens', type: '[string]', text: '1,000 × string', length: 1000 });
      assert.equal(keys['general.name']!.text, 'tiny <b>model</b>');
      // Type mix and bits per weight from the tensors as written.
      const params = (t: GgufTensor) => t.dims.reduce((a, b) => a * b, 1);
      const all = tensors.reduce((a, t) => a + params(t), 0);
      const byType = new Map<number, number>();
      for (const t of tensors) byType.set(t.ggmlType, (byType.get(t.ggmlType) ?? 0) + params(t));
      assert.deepEqual(
        g.typeMix.map((x) => [x.type, x.params, x.share]),
        [
          ['Q4_0', byType.get(GGML_TYPE.Q4_0)!, byType.get(GGML_TYPE.Q4_0)! / all],
          ['Q8_0', byType.get(GGML_TYPE.Q8_0)!, byType.get(GGML_TYPE.Q8_0)! / all],
          ['F32', byType.get(GGML_TYPE.F32)!, byType.get(GGML_TYPE.F32)! / all],
        ],
      );
      assert.equal(g.bitsPerWeight, (tensors.reduce((a, t) => a + t.byteLength, 0) * 8) / all);
    }
    // The tensor table names ggml types, and the blk.N blocks fold like layers.
    const s = svc.summary();
    const types = Object.fromEntries(tensorEntries(s.tensors).map((t) => [t.name, t.dtype]));
    assert.equal(types['token_embd.weight'], 'Q8_0');
    assert.equal(types['blk.1.attn_q.weight'], 'Q4_0');
    assert.equal(types['output_norm.weight'], 'F32');
    const root = treeFromTable(s.tree, tensorEntries(s.tensors));
    assert.ok(root.children!.some((c) => c.kind === 'run' && c.label === 'blk ×2'), `children: ${root.children!.map((c) => c.label).join(', ')}`);
    // "Show as Text": the GGUF's lines, and offsets from its data section (the first tensor's is 0).
    const text = summaryText(s);
    assert.match(text, /^gguf v3 {2}bits\/weight \d+\.\d\d {2}Q4_0 \d+\.\d%, Q8_0 \d+\.\d%, F32 \d+\.\d%$/m);
    assert.match(text, /^ {2}EOS 999 "<\|eot_id\|>"$/m);
    assert.match(text, /^ {2}chat template \d+ chars$/m);
    assert.ok(text.includes(`token_embd.weight  Q8_0  [32, 64]  offsets [0, ${tensors[0]!.byteLength}]`), text);
  } finally {
    await m.close();
  }
});

test('a long array pages through the protocol: each page equals the items written, in any order asked', async () => {
  const path = join(dir, 'pages.gguf');
  const { tokens: tok } = await write(path, 1000);
  const m = await openModel(path);
  try {
    const svc = new ModelService(m);
    const want = (a: number, b: number) => tok.slice(a, b).map((t) => JSON.stringify(t));
    for (const [start, count] of [[0, 100], [100, 100], [50, 10], [990, 100], [400, 1000]] as const) {
      const r = await svc.ggufArray('tokenizer.ggml.tokens', start, count);
      assert.equal(r.total, 1000);
      assert.equal(r.start, start);
      // At most 500 a page, and never past the end.
      assert.deepEqual(r.items, want(start, Math.min(1000, start + Math.min(count, 500))), `page ${start}+${count}`);
    }
    const past = await svc.ggufArray('tokenizer.ggml.tokens', 5000, 10);
    assert.deepEqual(past.items, []);
    await assert.rejects(svc.ggufArray('general.name', 0, 10), /no array metadata key/);
  } finally {
    await m.close();
  }
});

test('a 150,000-token vocabulary stays a count: the GGUF part of the summary is a few KB', async () => {
  const path = join(dir, 'vocab.gguf');
  await write(path, 150_000);
  const m = await openModel(path);
  try {
    const g = new ModelService(m).outline().gguf!;
    assert.equal(g.tokenizer!.vocabSize, 150_000);
    assert.equal(g.tokenizer!.special.find((s) => s.label === 'EOS')!.text, '<|eot_id|>');
    const bytes = JSON.stringify(g).length;
    assert.ok(bytes < 8_000, `the GGUF summary is ${bytes} bytes`);
  } finally {
    await m.close();
  }
});
