/**
 * The file system's failures in words. Every errno a user can meet while
 * Layer Lens reads or writes becomes a cause they can act on ("the disk is
 * full", "read-only file system"), never `unexpected error: EIO: i/o error,
 * read`. One table for the engine, the CLI and the worker.
 */
import { EngineError } from '../errors';

/** The errno code of a Node error, if it has one. */
export function errnoOf(e: unknown): string | undefined {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

const causes: Record<string, string> = {
  ENOENT: 'it does not exist (or a folder above it was removed)',
  EACCES: 'permission denied',
  EPERM: 'the operation is not permitted',
  EROFS: 'it is on a read-only file system',
  ENOSPC: 'no space is left on the disk',
  EDQUOT: 'the disk quota is used up',
  EIO: 'the disk reported an input/output error (a failing disk, or a network or USB drive that went away)',
  ENOTDIR: 'a part of the path is a file, not a folder',
  EISDIR: 'it is a folder, not a file',
  ENAMETOOLONG: 'the name is longer than the file system allows',
  ELOOP: 'it is a symbolic link loop',
  EMFILE: 'too many files are open',
  ENFILE: 'too many files are open on this machine',
  EBUSY: 'it is in use',
  ETXTBSY: 'it is in use',
  EXDEV: 'it is on another disk',
  EFBIG: 'it is larger than the file system allows',
  ESTALE: 'the network file handle went stale (the share was remounted)',
  ETIMEDOUT: 'the network file system did not answer',
  ENXIO: 'no device answers for it',
  ENODEV: 'no device answers for it',
  EAGAIN: 'it would block (a device or pipe, not a file)',
  ERR_FS_FILE_TOO_LARGE: 'it is larger than 2 GiB, more than one read can hold',
};

/** The cause in words for a file-system error, or undefined when it is not one. */
export function fsCause(e: unknown): string | undefined {
  const code = errnoOf(e);
  return code !== undefined ? causes[code] : undefined;
}

/** `fsCause`, else the error's first line: for messages that must say something either way. */
export function fsCauseOrMessage(e: unknown): string {
  return fsCause(e) ?? (e instanceof Error ? e.message : String(e)).split('\n')[0];
}

/**
 * True for errors that mean "this place cannot be written" (read-only, no
 * permission, full, failing, or gone: a folder removed meanwhile), so that a
 * fallback place may do.
 */
export function isUnwritable(e: unknown): boolean {
  const code = errnoOf(e);
  return ['EROFS', 'EACCES', 'EPERM', 'ENOSPC', 'EDQUOT', 'EIO', 'ENOENT', 'ENOTDIR', 'ESTALE'].includes(code ?? '');
}

/**
 * An EngineError for a file-system failure: "`doing` failed: `cause`" plus
 * `fix` when given. Errors that already are EngineErrors pass unchanged.
 */
export function fsError(e: unknown, doing: string, fix?: string): Error {
  if (e instanceof EngineError) return e;
  const cause = fsCause(e);
  if (cause === undefined) return e instanceof Error ? e : new Error(String(e));
  return new EngineError('io', `${doing} failed: ${cause}.${fix ? ` ${fix}` : ''}`);
}

/** A file-system error no engine code worded, as one line: "<path>: <cause>." (undefined when it is no such error). */
export function fsErrorLine(e: unknown): string | undefined {
  const cause = fsCause(e);
  if (cause === undefined) return undefined;
  const p = (e as { path?: unknown }).path;
  return `${typeof p === 'string' ? `${p}: ` : ''}${cause}.`;
}
