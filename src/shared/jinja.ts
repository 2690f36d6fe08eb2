/**
 * Splits a Jinja template (a GGUF's chat template) into tokens for highlighting: literal text,
 * `{% tags %}`, `{{ expressions }}` and `{# comments #}`, and inside tags and expressions the
 * keywords, strings, numbers, names and operators. One linear pass, no regular expression
 * that can backtrack, so a crafted template costs its length. The page turns each token into
 * a text node in a span: nothing in the template is ever parsed as markup.
 *
 * This module must stay free of Node, DOM and `vscode` imports: it is compiled for both.
 */

export type JinjaTokenKind = 'text' | 'tag' | 'expr' | 'comment' | 'keyword' | 'string' | 'number' | 'name' | 'op' | 'space';

export interface JinjaToken {
  readonly kind: JinjaTokenKind;
  readonly text: string;
}

// Jinja's statements, tests and operators spelled as words, and its constants.
const KEYWORDS = new Set([
  'if', 'elif', 'else', 'endif', 'for', 'endfor', 'in', 'not', 'and', 'or', 'is', 'set', 'endset', 'macro', 'endmacro',
  'call', 'endcall', 'filter', 'endfilter', 'block', 'endblock', 'extends', 'include', 'import', 'from', 'as', 'with',
  'endwith', 'raw', 'endraw', 'break', 'continue', 'recursive', 'true', 'false', 'none', 'True', 'False', 'None',
  'defined', 'generation', 'endgeneration',
]);

const isDigit = (c: string) => c >= '0' && c <= '9';
const isNameStart = (c: string) => (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c === '_';
const isName = (c: string) => isNameStart(c) || isDigit(c);
const isSpace = (c: string) => c === ' ' || c === '\t' || c === '\n' || c === '\r';

/** Where the construct opened at `from` (`{%`, `{{`, `{#`) ends: just past its closing delimiter, or (unclosed) the end of the text. */
function closeOf(src: string, from: number, close: string, quotes: boolean): { end: number; closed: boolean } {
  let i = from + 2;
  while (i < src.length) {
    const c = src[i]!;
    if (quotes && (c === '"' || c === "'")) {
      const end = src.indexOf(c, i + 1);
      // An unterminated string runs to the end, as Jinja reads it.
      if (end < 0) break;
      i = end + 1;
      continue;
    }
    if (c === close[0] && src[i + 1] === close[1]) return { end: i + 2, closed: true };
    i++;
  }
  return { end: src.length, closed: false };
}

/** The inside of a tag or expression, without its delimiters, as keyword/string/number/name/op/space tokens. */
function inner(body: string, out: JinjaToken[]): void {
  let i = 0;
  while (i < body.length) {
    const c = body[i]!;
    let j = i + 1;
    let kind: JinjaTokenKind;
    if (isSpace(c)) {
      while (j < body.length && isSpace(body[j]!)) j++;
      kind = 'space';
    } else if (c === '"' || c === "'") {
      while (j < body.length && body[j] !== c) j += body[j] === '\\' ? 2 : 1;
      j = Math.min(body.length, j + 1);
      kind = 'string';
    } else if (isDigit(c)) {
      while (j < body.length && (isDigit(body[j]!) || body[j] === '.' || body[j] === '_')) j++;
      kind = 'number';
    } else if (isNameStart(c)) {
      while (j < body.length && isName(body[j]!)) j++;
      kind = KEYWORDS.has(body.slice(i, j)) ? 'keyword' : 'name';
    } else {
      kind = 'op';
    }
    const text = body.slice(i, j);
    const last = out[out.length - 1];
    // Runs of operator characters ("}}-", "==", "|") join one token: fewer spans.
    if (kind === 'op' && last?.kind === 'op') out[out.length - 1] = { kind, text: last.text + text };
    else out.push({ kind, text });
    i = j;
  }
}

/** Delimiter length with Jinja's whitespace control (`{%-`, `-%}`, `{%+`). */
function openLength(src: string, at: number): number {
  const c = src[at + 2];
  return c === '-' || c === '+' ? 3 : 2;
}

/** The closing delimiter's length, `-%}` included, never reaching back into the opening one (which ends at `bodyStart`). */
function closeLength(src: string, end: number, bodyStart: number): number {
  const c = src[end - 3];
  return (c === '-' || c === '+') && end - 3 >= bodyStart ? 3 : 2;
}

/** Appends literal text, joined to the text before it (a lone brace does not split a run of text). */
function pushText(out: JinjaToken[], text: string): void {
  if (!text) return;
  const last = out[out.length - 1];
  if (last?.kind === 'text') out[out.length - 1] = { kind: 'text', text: last.text + text };
  else out.push({ kind: 'text', text });
}

export function jinjaTokens(src: string): JinjaToken[] {
  const out: JinjaToken[] = [];
  let i = 0;
  while (i < src.length) {
    const open = src.indexOf('{', i);
    if (open < 0) {
      pushText(out, src.slice(i));
      break;
    }
    const next = src[open + 1];
    if (next !== '%' && next !== '{' && next !== '#') {
      pushText(out, src.slice(i, open + 1));
      i = open + 1;
      continue;
    }
    pushText(out, src.slice(i, open));
    if (next === '#') {
      const { end } = closeOf(src, open, '#}', false);
      out.push({ kind: 'comment', text: src.slice(open, end) });
      i = end;
      continue;
    }
    const kind: JinjaTokenKind = next === '%' ? 'tag' : 'expr';
    const close = next === '%' ? '%}' : '}}';
    const { end, closed } = closeOf(src, open, close, true);
    const ol = openLength(src, open);
    const cl = closed ? closeLength(src, end, open + ol) : 0;
    out.push({ kind, text: src.slice(open, open + ol) });
    inner(src.slice(open + ol, end - cl), out);
    if (cl) out.push({ kind, text: src.slice(end - cl, end) });
    i = end;
  }
  return out;
}
