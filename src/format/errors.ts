/**
 * Every failure the format core can report. One code per rule, so that tests,
 * the CLI (`error[CODE]: …`) and the viewer's error page can tell them apart.
 */
export type FormatErrorCode =
  | 'file_too_small' // fewer than 8 bytes: no room for the header length
  | 'header_too_large' // header length above the 100,000,000-byte cap
  | 'header_length' // header length points past the end of the file
  | 'header_utf8' // header bytes are not strict UTF-8
  | 'header_start' // header does not begin with `{`
  | 'header_json' // header is not valid JSON, or has bytes other than spaces after the object
  | 'header_not_object' // top-level JSON value is not an object
  | 'duplicate_key' // a key appears twice in one JSON object
  | 'metadata_invalid' // `__metadata__` is not a map of strings to strings
  | 'tensor_invalid' // a tensor entry is not an object with dtype, shape and data_offsets
  | 'dtype_unknown' // dtype is not one of the spec's dtypes
  | 'shape_invalid' // shape is not a list of non-negative integers
  | 'offsets_invalid' // data_offsets is not [begin, end] with 0 <= begin <= end
  | 'overflow' // an element count or byte size does not fit in a safe integer
  | 'size_mismatch' // element count × dtype bits does not equal the byte length
  | 'misaligned' // a sub-byte dtype does not end on a byte boundary
  | 'offsets_hole' // sorted by offset, tensors leave a gap
  | 'offsets_overlap' // sorted by offset, tensors overlap, or do not start at 0
  | 'truncated' // the last tensor ends past the end of the file
  | 'trailing_bytes' // bytes follow the last tensor
  | 'index_invalid' // model.safetensors.index.json is malformed
  | 'shard_missing' // a shard named by the index does not exist
  | 'tensor_missing' // a tensor named by the index is absent from its shard
  | 'tensor_duplicate' // a tensor appears in two shards
  | 'not_found' // a path or tensor that was asked for does not exist
  | 'file_changed' // the file changed on disk since its header was read
  | 'io' // the operating system refused a read or a write
  | 'gguf_magic' // the file does not start with the bytes "GGUF"
  | 'gguf_version' // GGUF version other than 2 or 3 (v1 used 32-bit counts and is obsolete)
  | 'gguf_big_endian' // a big-endian GGUF (its version reads byte-swapped); not supported
  | 'gguf_count' // a tensor, key/value or array count that the rest of the file cannot hold
  | 'gguf_string' // a string that runs past the end of the file or is not strict UTF-8
  | 'gguf_key' // a metadata key that is empty or longer than 65,535 bytes
  | 'gguf_value_type' // a metadata value type outside the spec's 0–12, or arrays nested too deep
  | 'gguf_bool' // a bool byte other than 0 or 1
  | 'gguf_alignment' // general.alignment is not a u32 power of two
  | 'gguf_name' // a tensor name that is empty or longer than the spec's 64 bytes
  | 'gguf_dims' // a tensor with more than 4 dimensions (ggml's limit)
  | 'gguf_row' // a tensor whose row (ne[0]) is not a whole number of its type's blocks
  | 'gguf_offset' // a tensor data offset that is not a multiple of the alignment
  | 'split_invalid' // the parts of a split GGUF disagree (split.count, split.no, split.tensors.count)
  | 'tokenizer_invalid' // tokenizer.model, tokenizer.json or tokenizer_config.json is malformed
  | 'unsupported'; // a valid file asks for something this operation cannot do

export class FormatError extends Error {
  override readonly name = 'FormatError';
  constructor(
    readonly code: FormatErrorCode,
    message: string,
    /** The file the error is about. */
    readonly file?: string,
    /** The tensor the error is about, when there is one. */
    readonly tensor?: string,
  ) {
    super(FormatError.compose(message, file, tensor));
  }

  private static compose(message: string, file?: string, tensor?: string): string {
    const where = [file, tensor !== undefined ? `tensor '${tensor}'` : undefined].filter(Boolean).join(': ');
    return where ? `${where}: ${message}` : message;
  }
}

export function isFormatError(e: unknown): e is FormatError {
  return e instanceof FormatError;
}
