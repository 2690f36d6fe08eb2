import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { trainSentencePiece, writeBf16Model } from '../gguf/ftypeFixture';

/** The Q4_K_M file the extension-host case writes, next to the suite's result file. */
export const CONVERTED_NAME = 'vscode-convert-Q4_K_M.gguf';

/**
 * Hugging Face folders for the Convert to GGUF… tests: `hf-llama`, a 4-layer BF16 Llama with
 * grouped KV heads and a SentencePiece tokenizer trained in `work`, and `hf-unknown`, the same
 * weights under an architecture the converter refuses.
 */
export async function writeModelFolders(dir: string, work: string): Promise<void> {
  const sp = trainSentencePiece(work);
  if (!sp.path) throw new Error(sp.why);
  const spec = { arch: 'llama', vocab: 400, hidden: 256, heads: 4, kvHeads: 2, headDim: 64, ff: 288, layers: 4, tied: false, ropeTheta: 10000, rmsEps: 1e-5 } as const;
  await writeBf16Model(join(dir, 'hf-llama'), spec, sp.path);
  await writeBf16Model(join(dir, 'hf-unknown'), spec, sp.path);
  const config = JSON.parse(readFileSync(join(dir, 'hf-unknown', 'config.json'), 'utf8'));
  writeFileSync(join(dir, 'hf-unknown', 'config.json'), JSON.stringify({ ...config, architectures: ['FalconForCausalLM'], model_type: 'falcon' }));
}
