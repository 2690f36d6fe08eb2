import { FormatError } from '../errors';
import { ProtoReader, WIRE } from './protobuf';

/**
 * SentencePiece `tokenizer.model` (a serialized `ModelProto`): the pieces with their
 * scores and types, the trainer's model type and the normalizer flags llama.cpp's
 * "llama" tokenizer depends on.
 */

/** `SentencePiece.Type`; the same numbers as GGUF's `tokenizer.ggml.token_type`. */
export const PIECE_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

/** `TrainerSpec.ModelType`. */
export const SP_MODEL_TYPE = { unigram: 1, bpe: 2, word: 3, char: 4 } as const;

export interface SentencePiece {
  readonly piece: string;
  readonly score: number;
  readonly type: number;
}

export interface SentencePieceModel {
  readonly pieces: readonly SentencePiece[];
  /** `trainer_spec.model_type` (UNIGRAM when absent, the proto default). */
  readonly modelType: number;
  /** `normalizer_spec.name`: "identity" leaves text as it is, as llama.cpp does. */
  readonly normalizer: string;
  readonly addDummyPrefix: boolean;
  readonly removeExtraWhitespaces: boolean;
}

// Real vocabularies stay under 300k pieces (Gemma: 256k); more is a corrupt or hostile file.
const MAX_PIECES = 1 << 20;
// A piece is a short string; SentencePiece itself caps them far lower (max_sentencepiece_length 16 chars).
const MAX_PIECE_BYTES = 1 << 16;

const strict = new TextDecoder('utf-8', { fatal: true });

function utf8Field(bytes: Uint8Array, what: string, file: string | undefined): string {
  try {
    return strict.decode(bytes);
  } catch {
    throw new FormatError('tokenizer_invalid', `${what} is not UTF-8`, file);
  }
}

function parsePiece(bytes: Uint8Array, file: string | undefined, index: number): SentencePiece {
  const r = new ProtoReader(bytes, file);
  let piece: string | undefined;
  let score = 0;
  let type: number = PIECE_TYPE.normal;
  for (let f = r.next(); f; f = r.next()) {
    if (f.field === 1 && f.wire === WIRE.bytes) {
      if (f.bytes.length > MAX_PIECE_BYTES) throw new FormatError('tokenizer_invalid', `piece ${index} is ${f.bytes.length} bytes long`, file);
      piece = utf8Field(f.bytes, `piece ${index}`, file);
    } else if (f.field === 2 && f.wire === WIRE.fixed32) score = f.f32;
    else if (f.field === 3 && f.wire === WIRE.varint) type = f.int;
  }
  if (piece === undefined) throw new FormatError('tokenizer_invalid', `piece ${index} has no text`, file);
  if (type < PIECE_TYPE.normal || type > PIECE_TYPE.byte) throw new FormatError('tokenizer_invalid', `piece ${index} has type ${type}, outside 1–6`, file);
  return { piece, score, type };
}

export function parseSentencePiece(bytes: Uint8Array, file?: string): SentencePieceModel {
  const r = new ProtoReader(bytes, file);
  const pieces: SentencePiece[] = [];
  let modelType: number = SP_MODEL_TYPE.unigram;
  let addDummyPrefix = true;
  let removeExtraWhitespaces = true;
  let normalizer = '';
  for (let f = r.next(); f; f = r.next()) {
    if (f.wire !== WIRE.bytes) continue;
    if (f.field === 1) {
      if (pieces.length >= MAX_PIECES) throw new FormatError('tokenizer_invalid', `more than ${MAX_PIECES} pieces`, file);
      pieces.push(parsePiece(f.bytes, file, pieces.length));
    } else if (f.field === 2) {
      const t = new ProtoReader(f.bytes, file);
      for (let g = t.next(); g; g = t.next()) if (g.field === 3 && g.wire === WIRE.varint) modelType = g.int;
    } else if (f.field === 3) {
      const n = new ProtoReader(f.bytes, file);
      for (let g = n.next(); g; g = n.next()) {
        if (g.field === 1 && g.wire === WIRE.bytes) normalizer = utf8Field(g.bytes, 'normalizer name', file);
        if (g.wire !== WIRE.varint) continue;
        if (g.field === 3) addDummyPrefix = g.int !== 0;
        else if (g.field === 4) removeExtraWhitespaces = g.int !== 0;
      }
    }
  }
  if (pieces.length === 0) throw new FormatError('tokenizer_invalid', 'no pieces (not a SentencePiece model?)', file);
  return { pieces, modelType, normalizer, addDummyPrefix, removeExtraWhitespaces };
}
