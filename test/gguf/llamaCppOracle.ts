import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * llama.cpp itself, through node-llama-cpp's prebuilt CPU binaries: loads a GGUF and
 * tokenizes with it. node-llama-cpp is looked up in ./node_modules, then in
 * $TW_NODE_LLAMA_CPP_DIR (a node_modules folder). `loadLlamaCpp()` returns the reason
 * when it cannot load; callers fail under CI=true and skip otherwise.
 */
export interface LlamaCppModel {
  tokenize(text: string): number[];
  tokenText(id: number): string;
  /** llama.cpp's next-token distribution (softmax of its logits, temperature 1, no truncation) after each token. */
  probabilities(tokens: number[]): Promise<Map<number, number>[]>;
  dispose(): Promise<void>;
}

export interface LlamaCpp {
  load(path: string): Promise<LlamaCppModel>;
  dispose(): Promise<void>;
}

/** The part of node-llama-cpp's API used here (the package is ESM-only and optional). */
interface NodeLlamaCpp {
  LlamaLogLevel: { error: unknown };
  getLlama(o: Record<string, unknown>): Promise<{
    loadModel(o: { modelPath: string }): Promise<{
      tokenize(text: string, special: boolean): Iterable<number>;
      detokenize(tokens: number[], special: boolean): string;
      createContext(o: Record<string, unknown>): Promise<{
        getSequence(): { controlledEvaluate(input: unknown[]): Promise<Array<{ next?: { probabilities?: Map<number, number> } } | undefined>> };
        dispose(): Promise<void>;
      }>;
      dispose(): Promise<void>;
    }>;
    dispose(): Promise<void>;
  }>;
}

function entryOf(dir: string): string | undefined {
  const pkg = join(dir, 'node-llama-cpp', 'package.json');
  if (!existsSync(pkg)) return undefined;
  const main = (JSON.parse(readFileSync(pkg, 'utf8')) as { main?: string }).main ?? 'dist/index.js';
  return join(dir, 'node-llama-cpp', main);
}

export async function loadLlamaCpp(): Promise<LlamaCpp | string> {
  const dirs = [join(process.cwd(), 'node_modules'), process.env.TW_NODE_LLAMA_CPP_DIR].filter((d): d is string => !!d);
  const entry = dirs.map(entryOf).find(Boolean);
  if (!entry) return `node-llama-cpp is not installed (looked in ${dirs.join(', ')})`;
  try {
    // A computed specifier keeps the bundler away from this ESM-only package.
    const nlc = (await import(pathToFileURL(entry).href)) as NodeLlamaCpp;
    const llama = await nlc.getLlama({ gpu: false, build: 'never', logLevel: nlc.LlamaLogLevel.error, progressLogs: false });
    return {
      async load(path) {
        const model = await llama.loadModel({ modelPath: path });
        return {
          tokenize: (text) => [...model.tokenize(text, true)].map(Number),
          tokenText: (id) => model.detokenize([id], true),
          async probabilities(tokens) {
            // An F32 KV cache: the default F16 one would round K and V by ~1e-3 before the comparison starts.
            const ctx = await model.createContext({ contextSize: 256, batchSize: 256, threads: 1, flashAttention: false, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32' });
            try {
              const sampling = { probabilities: true, options: { temperature: 1, topK: 0, topP: 1, minP: 0 } };
              const res = await ctx.getSequence().controlledEvaluate(tokens.map((t) => [t, { generateNext: sampling }]));
              return tokens.map((_, i) => {
                const p = res[i]?.next?.probabilities;
                if (!p) throw new Error(`no probabilities after token ${i}`);
                return p;
              });
            } finally {
              await ctx.dispose();
            }
          },
          dispose: () => model.dispose(),
        };
      },
      dispose: () => llama.dispose(),
    };
  } catch (e) {
    return `node-llama-cpp does not load: ${(e as Error).message}`;
  }
}
