/**
 * A GGUF's summary as the protocol carries it, built here from the protocol's types: a
 * llama.cpp-named tree (`blk ×N`) of Q4_K, Q6_K and F32 tensors, the architecture keys, a
 * tokenizer with special tokens, a chat template with markup in it, and a long array.
 */
import { tensorTable, treeTable } from '../../src/shared/protocol';
import type { GgufSummary, SummaryReplyMessage, TensorEntry, TreeNodeData } from '../../src/shared/protocol';

// ggml's block sizes and bytes per block (ggml-common.h).
const BLOCK: Record<string, [number, number]> = { Q4_K: [256, 144], Q6_K: [256, 210], F32: [1, 4] };

export const TEMPLATE =
  "{# a <b>comment</b> #}{%- for message in messages -%}<|{{ message['role'] }}|>\n{{ message.content | trim }}<script>alert(1)</script><img src=x onerror=alert(2)>{% if loop.last and add_generation_prompt %}<|assistant|>{% endif %}{%- endfor %}";

/** The long array the page pages through: 150,000 tokens, `tok0`, `tok1`, … */
export const VOCAB = 150_000;

export function ggufSummary(blocks: number): SummaryReplyMessage {
  const tensors: TensorEntry[] = [];
  let offset = 4096;
  const add = (name: string, type: string, shape: number[]): number => {
    const numel = shape.reduce((a, b) => a * b, 1);
    const [be, bb] = BLOCK[type]!;
    const bytes = (numel / be) * bb;
    tensors.push({ name, dtype: type, shape, numel, file: 0, byteOffset: offset, byteLength: bytes, decodable: true });
    offset += bytes;
    return tensors.length - 1;
  };
  const leaf = (path: string, i: number): TreeNodeData => ({ label: 'weight', path, kind: 'tensor', tensor: i, tensors: 1, params: tensors[i]!.numel, bytes: tensors[i]!.byteLength });
  const mod = (label: string, path: string, children: TreeNodeData[], kind: 'module' | 'run' = 'module'): TreeNodeData => ({
    label,
    path,
    kind,
    tensors: children.reduce((a, c) => a + c.tensors, 0),
    params: children.reduce((a, c) => a + c.params, 0),
    bytes: children.reduce((a, c) => a + c.bytes, 0),
    children,
  });
  const embd = add('token_embd.weight', 'Q4_K', [512, 256]);
  const members: TreeNodeData[] = [];
  for (let b = 0; b < blocks; b++) {
    const kids = (
      [
        ['attn_q', 'Q4_K', [256, 256]],
        ['ffn_down', 'Q6_K', [256, 512]],
        ['attn_norm', 'F32', [256]],
      ] as const
    ).map(([n, type, shape]) => mod(n, `blk.${b}.${n}`, [leaf(`blk.${b}.${n}.weight`, add(`blk.${b}.${n}.weight`, type, [...shape]))]));
    members.push(mod(String(b), `blk.${b}`, kids));
  }
  const norm = add('output_norm.weight', 'F32', [256]);
  const root = mod('', '', [
    mod('token_embd', 'token_embd', [leaf('token_embd.weight', embd)]),
    mod(`blk ×${blocks}`, `blk.{0..${blocks - 1}}`, members, 'run'),
    mod('output_norm', 'output_norm', [leaf('output_norm.weight', norm)]),
  ]);
  const params = tensors.reduce((a, t) => a + t.numel, 0);
  const bytes = tensors.reduce((a, t) => a + t.byteLength, 0);
  const byType = new Map<string, { tensors: number; params: number; bytes: number }>();
  for (const t of tensors) {
    const e = byType.get(t.dtype) ?? { tensors: 0, params: 0, bytes: 0 };
    e.tensors++;
    e.params += t.numel;
    e.bytes += t.byteLength;
    byType.set(t.dtype, e);
  }
  const byDtype = [...byType].map(([dtype, e]) => ({ dtype, ...e })).sort((a, b) => b.bytes - a.bytes);
  const gguf: GgufSummary = {
    version: 3,
    architecture: 'llama',
    hparams: [
      { label: 'layers', key: 'llama.block_count', type: 'u32', text: String(blocks) },
      { label: 'embedding', key: 'llama.embedding_length', type: 'u32', text: '256' },
      { label: 'heads', key: 'llama.attention.head_count', type: 'u32', text: '8' },
      { label: 'context', key: 'llama.context_length', type: 'u32', text: '131072' },
      { label: 'rope base', key: 'llama.rope.freq_base', type: 'f32', text: '500000' },
      { label: 'RMS norm ε', key: 'llama.attention.layer_norm_rms_epsilon', type: 'f32', text: '0.00001' },
    ],
    tokenizer: {
      model: 'gpt2',
      pre: 'llama-bpe',
      vocabSize: VOCAB,
      merges: 280_147,
      special: [
        { label: 'BOS', key: 'tokenizer.ggml.bos_token_id', id: 128000, text: '<|begin_of_text|>' },
        { label: 'EOS', key: 'tokenizer.ggml.eos_token_id', id: 128009, text: '<|eot_id|>' },
        { label: 'PAD', key: 'tokenizer.ggml.padding_token_id', id: 200000 },
      ],
      chatTemplate: TEMPLATE,
    },
    keys: [
      { key: 'general.architecture', type: 'string', text: 'llama' },
      { key: 'general.name', type: 'string', text: 'Tiny <b>Llama</b>' },
      { key: 'general.tags', type: '[string]', text: '["text-generation", "gguf"]' },
      { key: 'tokenizer.ggml.tokens', type: '[string]', text: '150,000 × string', length: VOCAB },
      { key: 'general.file_type', type: 'u32', text: '15' },
    ],
    bitsPerWeight: (bytes * 8) / params,
    typeMix: [...byType]
      .map(([type, e]) => ({ type, tensors: e.tensors, params: e.params, share: e.params / params }))
      .sort((a, b) => b.params - a.params),
  };
  return {
    type: 'summary',
    path: '/models/tiny/tiny-Q4_K_M.gguf',
    files: [{ path: '/models/tiny/tiny-Q4_K_M.gguf', bytes: offset, headerBytes: 4096 }],
    tensors: tensorTable(tensors),
    totals: { tensors: tensors.length, params, bytes, byDtype },
    memory: [
      { format: 'FP32', bytes: params * 4 },
      { format: 'BF16', bytes: params * 2 },
      { format: 'FP8', bytes: params },
      { format: 'Q8_0', bytes: Math.ceil((params / 32) * 34) },
      { format: 'Q4_0', bytes: Math.ceil((params / 32) * 18) },
    ],
    metadata: [['general.architecture', 'llama']],
    notes: ['GGUF v3', 'architecture llama: 4 layers'],
    tree: treeTable(root),
    gguf,
  };
}

/** The page of `tokenizer.ggml.tokens` the page asks for: JSON-quoted `tokN`. */
export function tokenPage(start: number, count: number): { type: 'ggufArray'; key: string; start: number; total: number; items: string[] } {
  const n = Math.max(0, Math.min(count, VOCAB - start));
  return { type: 'ggufArray', key: 'tokenizer.ggml.tokens', start, total: VOCAB, items: Array.from({ length: n }, (_, i) => JSON.stringify(`tok${start + i}`)) };
}
