import { existsSync } from 'node:fs';
import { join } from 'node:path';

/**
 * libllama's `llama_model_quantize` (node-llama-cpp's CPU build, `@node-llama-cpp/linux-x64`)
 * through koffi: what llama-quantize writes for a file type. The parameter struct follows
 * llama.h of that build (include/llama.h in node-llama-cpp's llama.cpp bundle):
 *   int32 nthread, int32 ftype, int32 output_tensor_type, int32 token_embedding_type,
 *   6 bools (allow_requantize, quantize_output_tensor, only_copy, pure, keep_split, dry_run),
 *   pointers imatrix, kv_overrides, tt_overrides, prune_layers, size_t max_buf_size.
 * `loadLlamaQuantize()` returns the reason when it cannot load.
 */
export interface LlamaQuantizeOptions {
  readonly ftype: number;
  readonly nthread?: number;
  /** ggml type ids; undefined leaves llama.cpp's choice. */
  readonly outputType?: number;
  readonly tokenEmbeddingType?: number;
  readonly pure?: boolean;
  /** `--tensor-type` pairs: an ECMAScript-compatible pattern (std::regex) and a ggml type id. */
  readonly tensorTypes?: ReadonlyArray<{ readonly pattern: string; readonly type: number }>;
  /** Importance weights per tensor name, already normalized as llama-quantize's loader leaves them. */
  readonly imatrix?: ReadonlyMap<string, Float32Array>;
  /** llama-quantize --allow-requantize: tensors in a quantized type may be quantized again. */
  readonly allowRequantize?: boolean;
}

export interface LlamaQuantize {
  /** Quantizes IN to OUT; returns the log lines llama.cpp printed meanwhile. */
  quantize(input: string, output: string, o: LlamaQuantizeOptions): string[];
}

const DIR = join('node_modules', '@node-llama-cpp', 'linux-x64', 'bins', 'linux-x64');
// GGML_TYPE_COUNT in this build: "no override" for the output and embedding types.
const GGML_TYPE_COUNT = 43;

export function loadLlamaQuantize(): LlamaQuantize | string {
  const lib = existsSync(DIR) ? require('node:fs').readdirSync(DIR).find((f: string) => /^libllama\..*so$/.test(f) && !f.includes('common')) : undefined;
  if (!lib) return `${DIR}/libllama*.so is missing (npm install)`;
  let koffi: typeof import('koffi');
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    koffi = require('koffi');
  } catch (e) {
    return `koffi does not load: ${(e as Error).message}`;
  }
  let l: ReturnType<typeof koffi.load>;
  try {
    l = koffi.load(join(process.cwd(), DIR, lib));
  } catch (e) {
    return `${lib} does not load: ${(e as Error).message}`;
  }
  const TtOverride = koffi.struct('llama_model_tensor_override_tw', { pattern: 'const char *', type: 'int32' });
  const ImData = koffi.struct('llama_model_imatrix_data_tw', { name: 'const char *', data: 'const float *', size: 'size_t' });
  const Params = koffi.struct('llama_model_quantize_params_tw', {
    nthread: 'int32', ftype: 'int32', output_tensor_type: 'int32', token_embedding_type: 'int32',
    allow_requantize: 'bool', quantize_output_tensor: 'bool', only_copy: 'bool', pure: 'bool', keep_split: 'bool', dry_run: 'bool',
    imatrix: koffi.pointer(ImData), kv_overrides: 'void *', tt_overrides: koffi.pointer(TtOverride), prune_layers: 'void *', max_buf_size: 'size_t',
  });
  if (koffi.sizeof(Params) !== 64) return `llama_model_quantize_params is ${koffi.sizeof(Params)} bytes here, 64 in llama.h`;
  const defaults = l.func('llama_model_quantize_params_tw llama_model_quantize_default_params()');
  const run = l.func('uint32_t llama_model_quantize(const char *, const char *, const llama_model_quantize_params_tw *)');
  const LogCb = koffi.proto('void tw_log_cb(int level, const char *text, void *ud)');
  const logSet = l.func('void llama_log_set(tw_log_cb *cb, void *ud)');
  let lines: string[] = [];
  const cb = koffi.register((_level: number, text: string) => void lines.push(text), koffi.pointer(LogCb));
  logSet(cb, null);
  return {
    quantize(input, output, o) {
      lines = [];
      const p = defaults() as Record<string, unknown>;
      p.ftype = o.ftype;
      p.nthread = o.nthread ?? 2;
      p.output_tensor_type = o.outputType ?? GGML_TYPE_COUNT;
      p.token_embedding_type = o.tokenEmbeddingType ?? GGML_TYPE_COUNT;
      p.pure = o.pure ?? false;
      p.allow_requantize = o.allowRequantize ?? false;
      if (o.tensorTypes?.length) {
        // The list ends with a null pattern, as llama-quantize's does.
        const items = [...o.tensorTypes, { pattern: null, type: 0 }];
        p.tt_overrides = items;
      }
      if (o.imatrix?.size) {
        p.imatrix = [...[...o.imatrix].map(([name, data]) => ({ name, data, size: data.length })), { name: null, data: null, size: 0 }];
      }
      const rc = Number(run(input, output, p));
      if (rc !== 0) throw new Error(`llama_model_quantize returned ${rc}: ${lines.join('').slice(-2000)}`);
      return lines.join('').split('\n');
    },
  };
}
