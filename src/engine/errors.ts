/**
 * Errors a user can act on. Every message names the file, the cause and,
 * where there is one, the fix. `code` lets tests and the protocol tell them
 * apart without parsing text.
 */
export type EngineErrorCode =
  | 'not-found'
  | 'not-json'
  | 'not-a-model'
  | 'too-large'
  | 'too-deep'
  | 'unsafe-path'
  | 'missing-shard'
  | 'shard-size'
  | 'bad-weights'
  | 'unknown-layer'
  | 'unsupported-layer'
  | 'keras-file'
  | 'bad-image'
  | 'bad-input'
  | 'bad-dataset'
  | 'bad-recipe'
  | 'cancelled'
  | 'out-of-memory'
  /** A file-system failure, in words (io/fsErrors.ts). */
  | 'io'
  /** An output would replace a file this run did not create (io/output.ts). */
  | 'output-exists'
  /** A file that cannot be read as one: a device, a FIFO, a kernel file, a read that never returns (io/safeRead.ts). */
  | 'unreadable'
  | 'internal';

export class EngineError extends Error {
  constructor(
    readonly code: EngineErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'EngineError';
  }
}

export class CancelledError extends EngineError {
  constructor(what = 'The operation') {
    super('cancelled', `${what} was cancelled.`);
    this.name = 'CancelledError';
  }
}

export function isEngineError(e: unknown): e is EngineError {
  return e instanceof EngineError;
}

/** A one-line message for any thrown value (no stack). */
export function messageOf(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
