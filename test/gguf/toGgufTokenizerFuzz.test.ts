import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { FormatError } from '../../src/format/errors';
import { ProtoReader } from '../../src/format/tokenizer/protobuf';
import { parseSentencePiece, PIECE_TYPE } from '../../src/format/tokenizer/sentencepiece';
import { identifyPreTokenizer } from '../../src/format/tokenizer/preTokenizer';
import { bpeMerges, bpeVocab } from '../../src/format/tokenizer/vocab';

/**
 * The tokenizer readers on hostile input: a hand-encoded ModelProto round-trips, and
 * random or mutated bytes / JSON either parse or throw a FormatError, never anything else.
 */

function varint(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}
const field = (no: number, wire: number) => varint(no * 8 + wire);
const bytesField = (no: number, b: number[]) => [...field(no, 2), ...varint(b.length), ...b];
const utf8 = (s: string) => [...new TextEncoder().encode(s)];
function f32(x: number): number[] {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setFloat32(0, x, true);
  return [...b];
}

function model(pieces: Array<[string, number, number]>, modelType = 2): Uint8Array {
  const out: number[] = [];
  for (const [p, score, type] of pieces) out.push(...bytesField(1, [...bytesField(1, utf8(p)), ...field(2, 5), ...f32(score), ...field(3, 0), ...varint(type)]));
  out.push(...bytesField(2, [...field(3, 0), ...varint(modelType)]));
  out.push(...bytesField(3, [...bytesField(1, utf8('identity')), ...field(4, 0), 0]));
  return new Uint8Array(out);
}

test('a hand-encoded ModelProto reads back piece for piece', () => {
  const pieces: Array<[string, number, number]> = [['<unk>', 0, PIECE_TYPE.unknown], ['<s>', 0, PIECE_TYPE.control], ['▁the', -1.5, PIECE_TYPE.normal], ['<0x0A>', 0, PIECE_TYPE.byte], ['日本', -7.25, PIECE_TYPE.normal]];
  const m = parseSentencePiece(model(pieces));
  assert.deepEqual(m.pieces.map((p) => [p.piece, p.score, p.type]), pieces);
  assert.equal(m.modelType, 2);
  assert.equal(m.normalizer, 'identity');
  assert.equal(m.removeExtraWhitespaces, false);
  assert.equal(m.addDummyPrefix, true);
});

test('varints: 10 bytes at most, and lengths past the end are errors', () => {
  assert.throws(() => new ProtoReader(new Uint8Array(11).fill(0x80)).varint(), /longer than 10 bytes/);
  assert.throws(() => parseSentencePiece(new Uint8Array([0x0a, 0xff, 0xff, 0x03, 1])), (e) => e instanceof FormatError && /runs past the end/.test(e.message));
  assert.throws(() => parseSentencePiece(new Uint8Array([0x0b])), /wire type 3/);
});

function onlyFormatErrors(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof FormatError)) throw e;
  }
}

test('fuzz: random and mutated ModelProto bytes never crash the reader', () => {
  const valid = model([['<unk>', 0, 2], ['a', -1, 1], ['b', -2, 1]]);
  fc.assert(fc.property(fc.uint8Array({ maxLength: 256 }), (b) => onlyFormatErrors(() => parseSentencePiece(b))), { numRuns: 2000 });
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }), (edits) => {
      const b = valid.slice();
      for (const [i, v] of edits) b[i] = v;
      onlyFormatErrors(() => parseSentencePiece(b));
    }),
    { numRuns: 2000 },
  );
});

test('fuzz: arbitrary JSON as tokenizer.json gives a vocabulary or a FormatError', () => {
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 4 }), fc.jsonValue({ maxDepth: 3 }), (model, pre) => {
      const tok = { model, pre_tokenizer: pre, added_tokens: [] } as Record<string, unknown>;
      onlyFormatErrors(() => bpeVocab(tok, 8));
      onlyFormatErrors(() => bpeMerges(tok));
      onlyFormatErrors(() => identifyPreTokenizer(tok));
    }),
    { numRuns: 1000 },
  );
});
