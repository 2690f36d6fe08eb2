import type { TinySpec } from './toGgufFixture';

/**
 * A float64 forward pass of a Llama / Qwen2 / Qwen3 decoder over HF-layout weights
 * (transformers' modeling code: rotate-half RoPE, grouped-query causal attention,
 * SiLU-gated MLP, RMSNorm), the oracle for llama.cpp's logits on the converted file.
 */
type Weights = Map<string, { shape: number[]; data: Float32Array }>;

function w(m: Weights, name: string): Float32Array {
  const t = m.get(name);
  if (!t) throw new Error(`no ${name}`);
  return t.data;
}

/** y = W x (+ b) for W of shape [rows, cols]. */
function matvec(W: Float32Array, x: Float64Array, rows: number, b?: Float32Array): Float64Array {
  const cols = x.length;
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = b ? b[r] : 0;
    for (let c = 0; c < cols; c++) s += W[r * cols + c] * x[c];
    y[r] = s;
  }
  return y;
}

function rmsnorm(x: Float64Array, g: Float32Array, eps: number, off = 0, n = x.length): void {
  let ss = 0;
  for (let i = 0; i < n; i++) ss += x[off + i] * x[off + i];
  const inv = 1 / Math.sqrt(ss / n + eps);
  for (let i = 0; i < n; i++) x[off + i] = x[off + i] * inv * g[i];
}

function rope(v: Float64Array, heads: number, hd: number, pos: number, theta: number, factors?: Float32Array): void {
  const half = hd / 2;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      const freq = Math.pow(theta, (-2 * i) / hd) / (factors ? factors[i] : 1);
      const a = pos * freq;
      const c = Math.cos(a);
      const s = Math.sin(a);
      const x0 = v[h * hd + i];
      const x1 = v[h * hd + i + half];
      v[h * hd + i] = x0 * c - x1 * s;
      v[h * hd + i + half] = x1 * c + x0 * s;
    }
  }
}

/** Logits for every position of `tokens`. */
export function forward(s: TinySpec, m: Weights, tokens: number[], ropeFactors?: Float32Array): Float64Array[] {
  const { hidden, heads, kvHeads, headDim: hd, ff } = s;
  const ks: Float64Array[][] = Array.from({ length: s.layers }, () => []);
  const vs: Float64Array[][] = Array.from({ length: s.layers }, () => []);
  const out: Float64Array[] = [];
  const embed = w(m, 'model.embed_tokens.weight');
  const head = s.tied ? embed : w(m, 'lm_head.weight');
  tokens.forEach((tok, pos) => {
    const x = Float64Array.from(embed.subarray(tok * hidden, (tok + 1) * hidden));
    for (let l = 0; l < s.layers; l++) {
      const p = `model.layers.${l}`;
      const h = Float64Array.from(x);
      rmsnorm(h, w(m, `${p}.input_layernorm.weight`), s.rmsEps);
      const bias = (n: string) => m.get(`${p}.self_attn.${n}.bias`)?.data;
      const q = matvec(w(m, `${p}.self_attn.q_proj.weight`), h, heads * hd, bias('q_proj'));
      const k = matvec(w(m, `${p}.self_attn.k_proj.weight`), h, kvHeads * hd, bias('k_proj'));
      const v = matvec(w(m, `${p}.self_attn.v_proj.weight`), h, kvHeads * hd, bias('v_proj'));
      if (s.arch === 'qwen3') {
        for (let i = 0; i < heads; i++) rmsnorm(q, w(m, `${p}.self_attn.q_norm.weight`), s.rmsEps, i * hd, hd);
        for (let i = 0; i < kvHeads; i++) rmsnorm(k, w(m, `${p}.self_attn.k_norm.weight`), s.rmsEps, i * hd, hd);
      }
      rope(q, heads, hd, pos, s.ropeTheta, ropeFactors);
      rope(k, kvHeads, hd, pos, s.ropeTheta, ropeFactors);
      ks[l].push(k);
      vs[l].push(v);
      const att = new Float64Array(heads * hd);
      for (let i = 0; i < heads; i++) {
        const g = Math.floor(i / (heads / kvHeads));
        const scores = ks[l].map((kk) => {
          let d = 0;
          for (let j = 0; j < hd; j++) d += q[i * hd + j] * kk[g * hd + j];
          return d / Math.sqrt(hd);
        });
        const mx = scores.reduce((a, b) => Math.max(a, b), -Infinity);
        const e = scores.map((sc) => Math.exp(sc - mx));
        const z = e.reduce((a, b) => a + b, 0);
        vs[l].forEach((vv, t) => {
          for (let j = 0; j < hd; j++) att[i * hd + j] += (e[t] / z) * vv[g * hd + j];
        });
      }
      const o = matvec(w(m, `${p}.self_attn.o_proj.weight`), att, hidden);
      for (let i = 0; i < hidden; i++) x[i] += o[i];
      const h2 = Float64Array.from(x);
      rmsnorm(h2, w(m, `${p}.post_attention_layernorm.weight`), s.rmsEps);
      const gate = matvec(w(m, `${p}.mlp.gate_proj.weight`), h2, ff);
      const up = matvec(w(m, `${p}.mlp.up_proj.weight`), h2, ff);
      for (let i = 0; i < ff; i++) gate[i] = (gate[i] / (1 + Math.exp(-gate[i]))) * up[i];
      const d = matvec(w(m, `${p}.mlp.down_proj.weight`), gate, hidden);
      for (let i = 0; i < hidden; i++) x[i] += d[i];
    }
    rmsnorm(x, w(m, 'model.norm.weight'), s.rmsEps);
    out.push(matvec(head, x, s.vocab));
  });
  return out;
}

export function softmax(x: Float64Array): Float64Array {
  let mx = -Infinity;
  for (const v of x) mx = Math.max(mx, v);
  const e = x.map((v) => Math.exp(v - mx));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / z);
}
