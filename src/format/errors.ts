/**
 * Every failure the format core can report. One code per rule, so that tests,
 * the CLI (`error[CODE]: …`) and the viewer's error page can tell them apart.
 */
export const FORMAT_ERROR_CODES = [
  'file_too_small', 'header_too_large', 'header_length', 'header_utf8', 'header_start', 'header_json',
  'header_not_object', 'duplicate_key', 'metadata_invalid', 'tensor_invalid', 'dtype_unknown',
  'shape_invalid', 'offsets_invalid', 'overflow', 'size_mismatch', 'misaligned', 'offsets_hole',
  'offsets_overlap', 'truncated', 'trailing_bytes', 'index_invalid', 'shard_missing', 'tensor_missing',
  'tensor_duplicate', 'not_found', 'file_changed', 'io', 'http', 'http_no_range', 'http_auth', 'unsupported', 'undecodable', 'requantize', 'output_is_input', 'permission_denied',
  'read_only', 'disk_full', 'not_a_folder', 'is_a_folder', 'already_exists', 'not_a_file', 'config_invalid',
  'pickle_invalid', 'unsafe_globals', 'zip_invalid', 'gguf_magic', 'gguf_version', 'gguf_big_endian', 'gguf_count',
  'gguf_string', 'gguf_key', 'gguf_value_type', 'gguf_bool', 'gguf_alignment', 'gguf_name', 'gguf_dims', 'gguf_row',
  'gguf_offset', 'split_invalid', 'tokenizer_invalid',
] as const satisfies readonly FormatErrorCode[];

type Unlisted = Exclude<FormatErrorCode, (typeof FORMAT_ERROR_CODES)[number]>;
/** Fails to compile when a code of the union is missing from FORMAT_ERROR_CODES. */
export const FORMAT_ERROR_CODES_COMPLETE: [Unlisted] extends [never] ? true : never = true;

/** A code that crossed a boundary as text (a worker's reply) and is one of ours. */
export function isFormatErrorCode(s: string): s is FormatErrorCode {
  return (FORMAT_ERROR_CODES as readonly string[]).includes(s);
}

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
  | 'http' // an HTTP server answered with an error, or the connection failed after the retries
  | 'http_no_range' // an HTTP server ignores Range requests: reading a tensor would download the whole file
  | 'http_auth' // the server refused access (401/403): a gated or private repository, or a token without access
  | 'output_is_input' // an output file would replace or remove an input file (same path, link or inode)
  | 'permission_denied' // EACCES/EPERM on a path the user gave
  | 'read_only' // EROFS: the output is on a read-only file system
  | 'disk_full' // ENOSPC/EDQUOT: no room left for the output (nothing is left behind)
  | 'not_a_folder' // ENOTDIR: a path used as a folder is a file
  | 'is_a_folder' // EISDIR: a path used as a file is a folder
  | 'already_exists' // EEXIST: a name the job must create is taken
  | 'not_a_file' // an input is a folder, FIFO, device or socket where a regular file was expected
  | 'config_invalid' // adapter_config.json (or another JSON side file) has the wrong shape, or a pattern that cannot be matched safely
  | 'unsupported' // a valid file asks for something this operation cannot do
  | 'undecodable' // a tensor's values cannot be decoded (a quantized part left as stored, or a type without a decoder), so it cannot be quantized, merged or converted
  | 'requantize' // a tensor already in a quantized GGUF type would be quantized again without --allow-requantize
  | 'pickle_invalid' // a pickle is malformed, or exceeds a bound on stack, memo, length or time
  | 'unsafe_globals' // a pickle names functions beyond tensor rebuilds, and the operation was not allowed to go on
  | 'zip_invalid' // a ZIP container's records are inconsistent or lie outside the file
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
  | 'tokenizer_invalid'; // tokenizer.model, tokenizer.json or tokenizer_config.json is malformed

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

const OS_CODES: Readonly<Record<string, { code: FormatErrorCode; text: string }>> = {
  EACCES: { code: 'permission_denied', text: 'permission denied' },
  EPERM: { code: 'permission_denied', text: 'operation not permitted' },
  EROFS: { code: 'read_only', text: 'read-only file system' },
  ENOSPC: { code: 'disk_full', text: 'no space left on the device' },
  EDQUOT: { code: 'disk_full', text: 'disk quota exceeded' },
  ENOTDIR: { code: 'not_a_folder', text: 'a part of the path is not a folder' },
  EISDIR: { code: 'is_a_folder', text: 'the path is a folder' },
  EEXIST: { code: 'already_exists', text: 'the path already exists' },
  ENOENT: { code: 'not_found', text: 'no such file or folder' },
};

/**
 * An operating-system error (an errno code from node:fs) as a FormatError naming
 * the path, so that a full disk or a read-only folder is reported as bad input
 * (exit 2), not as a bug. Anything else is returned unchanged.
 */
export function fromOsError(e: unknown, path?: string): unknown {
  if (e instanceof FormatError || !(e instanceof Error)) return e;
  const err = e as NodeJS.ErrnoException & { dest?: string };
  if (typeof err.code !== 'string' || !/^E[A-Z]+$/.test(err.code)) return e;
  const known = OS_CODES[err.code];
  const where = path ?? err.path;
  const what = `${known?.text ?? 'the operating system refused'} (${err.code}${err.syscall ? `, ${err.syscall}` : ''})`;
  const dest = err.dest !== undefined && where !== err.dest ? ` → ${err.dest}` : '';
  const out = new FormatError(known?.code ?? 'io', what + dest, where);
  out.cause = e;
  return out;
}
