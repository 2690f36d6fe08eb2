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
          dispose: () => model.dispose(),
        };
      },
      dispose: () => llama.dispose(),
    };
  } catch (e) {
    return `node-llama-cpp does not load: ${(e as Error).message}`;
  }
}
