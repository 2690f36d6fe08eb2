import { spawnSync } from 'node:child_process';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { castBytes, writeSafetensors, type TensorSource } from '../../src/format';
import { tinyConfig, tinyTensors, type TinySpec } from './toGgufFixture';

/**
 * A Llama-family folder stored in BF16 (so that the BF16 GGUF llama-quantize starts from
 * holds exactly the values our converter quantizes), with a small SentencePiece tokenizer
 * trained for it. Weights get heavy tails and a few outlier columns, as real ones have.
 */

/** Trains a 400-piece BPE SentencePiece model in `dir`; returns its path, or the reason it could not. */
export function trainSentencePiece(dir: string): { path?: string; why?: string } {
  const corpus = join(dir, 'corpus.txt');
  // Pseudo-random words: enough distinct pairs for a 400-piece BPE vocabulary.
  let x = 7;
  const words: string[] = [];
  for (let i = 0; i < 20000; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    const len = 2 + (x % 6);
    let wd = '';
    for (let j = 0; j < len; j++) wd += 'etaoinshrdlucmfwypvbgkjqxz'[(x >> (j * 3 + 4)) % 26];
    words.push(wd);
  }
  writeFileSync(corpus, words.join(' ').replace(/(\S+ ){12}/g, '$&\n'));
  const prefix = join(dir, 'sp');
  const r = spawnSync('python3', [join(__dirname, '..', 'test', 'gguf', 'toGguf_tokenize.py'), 'train-sp', prefix, corpus], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) return { why: `sentencepiece training failed: ${(r.stderr ?? '').trim().split('\n').pop()}` };
  return { path: `${prefix}.model` };
}

/** Heavier tails than the uniform fixture: every 7th value cubed up, and column 3 of every row ×8. */
function roughen(data: Float32Array, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) {
    let v = data[i];
    if (i % 7 === 0) v = v * v * v * 4;
    if (i % cols === 3) v *= 8;
    out[i] = v;
  }
  return out;
}

export async function writeBf16Model(dir: string, s: TinySpec, spModel: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const counts = { overflow: 0, underflow: 0 };
  const sources: TensorSource[] = [...tinyTensors(s)].map(([name, t]) => {
    const data = t.shape.length === 2 ? roughen(t.data, t.shape[1]) : t.data;
    return { name, dtype: 'BF16', shape: t.shape, data: castBytes(new Uint8Array(data.buffer), 'F32', 'BF16', counts) };
  });
  await writeSafetensors(join(dir, 'model.safetensors'), sources, { metadata: { format: 'pt' } });
  await writeFile(join(dir, 'config.json'), JSON.stringify({ ...tinyConfig(s), torch_dtype: 'bfloat16' }, null, 2));
  await copyFile(spModel, join(dir, 'tokenizer.model'));
}
