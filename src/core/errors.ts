// Errors that stop a run. Each has a fixed name and a stable `code` that tests and callers match on;
// the message names the file, row and field where they are known. Per-sample failures are not errors:
// they are rejected samples with a reason code (see reasons.ts).

export const ERROR_CODES = {
  FILIP_ERR_INVALID_OPTION: 'an option has a wrong type or value',
  FILIP_ERR_MISSING_COLUMN: 'a manifest lacks a requested column',
  FILIP_ERR_MANIFEST: 'a manifest cannot be opened or its format cannot be read',
  FILIP_ERR_NO_INPUT: 'no manifest files were found',
  FILIP_ERR_INPUT_UNFINISHED: 'an input folder holds a run that has not finished (killed, or still running)',
  FILIP_ERR_RESUME_MISMATCH: 'the output folder holds a run with different inputs or options',
  FILIP_ERR_SHARD: 'a shard file cannot be written or read',
  FILIP_ERR_TRANSLATOR: 'a translation engine is missing, misconfigured or unreachable',
  FILIP_ERR_MODEL_FILES: 'a model folder lacks the files an engine or checkpoint needs',
  FILIP_ERR_TOKENIZER: 'a tokenizer file cannot be read, or the tokenizer cannot be trained',
  FILIP_ERR_CHECKPOINT: 'a checkpoint cannot be written, read, or does not fit the run',
  FILIP_ERR_BACKEND: 'the requested compute backend cannot be loaded',
  FILIP_ERR_QUEUE: 'the job queue (Redis) cannot be reached or holds inconsistent state',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface ErrorLocation {
  readonly file?: string;
  readonly row?: number;
  readonly field?: string;
}

export class FilipError extends Error {
  override name = 'FilipError';
  readonly code: ErrorCode;
  readonly file?: string;
  readonly row?: number;
  readonly field?: string;
  /** The message without its location prefix. */
  readonly detail: string;

  constructor(code: ErrorCode, message: string, where: ErrorLocation = {}, options?: { cause?: unknown }) {
    super(formatLocated(message, where), options);
    this.code = code;
    this.detail = message;
    this.file = where.file;
    this.row = where.row;
    this.field = where.field;
  }
}

function formatLocated(message: string, where: ErrorLocation): string {
  const parts: string[] = [];
  if (where.file !== undefined) parts.push(where.file);
  if (where.row !== undefined) parts.push(`row ${where.row}`);
  if (where.field !== undefined) parts.push(`field "${where.field}"`);
  return parts.length > 0 ? `${parts.join(', ')}: ${message}` : message;
}
