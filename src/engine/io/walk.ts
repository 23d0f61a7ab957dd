/**
 * The one walk over a folder of images (a dataset's class folders, a flat
 * folder for embeddings or the rotation pretext, the image set Compare
 * samples). A stranger's folder may hold links that point back up (`ln -s .
 * cats/again`: every image counted eight times, or a scan without end),
 * several links to one file (the same image in train and validation),
 * folders nested past any sense, FIFOs and devices, kernel files, and names
 * that are not valid UTF-8. So:
 *
 * - every entry is stat'ed through its links, and a folder or file is known
 *   by its device and inode: each folder is read once, each file listed
 *   once, whatever links lead to it; a link back to a folder above it is a
 *   loop and is not followed;
 * - folders deeper than the limit are not read, and said so;
 * - what is not an ordinary file, lies on a kernel file system, or has a name
 *   the file system cannot give back is left out with the reason;
 * - every file carries its real path and whether it lies outside the walked
 *   folder (reached through a link), so that messages never quote the bytes
 *   of, say, /etc/shadow.
 *
 * Names are sorted by code point (Python's sorted(), as Keras lists them).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CancelledError, EngineError } from '../errors';
import type { SkippedFile } from '../../protocol/train';
import { fsCauseOrMessage, errnoOf } from './fsErrors';
import { isInside, isKernelPath, kindOf, resolveStat, unresolvable } from './safeRead';

export { isKernelPath };

export const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.jpe', '.jfif']);
export const isImageName = (name: string) => IMAGE_EXTENSIONS.has(path.extname(name).toLowerCase());

export function isHidden(name: string): boolean {
  // Dot files (.DS_Store, .git, Layer Lens's own .layerlens) and the clutter that file managers leave.
  return name.startsWith('.') || name === 'Thumbs.db' || name === 'desktop.ini' || name === '__MACOSX';
}

export interface WalkedFile {
  /** The path as listed (under the walked folder, links not resolved). */
  abs: string;
  /** Relative to the walked folder, "/"-separated. */
  rel: string;
  /** Every link resolved. */
  real: string;
  size: number;
  mtimeMs: number;
  /** Reached through a link to outside the walked folder: its bytes are never quoted. */
  outside: boolean;
}

export interface WalkOptions {
  /** Folder levels below the walked folder that are read (the folder itself is level 0). */
  maxDepth: number;
  /** List only files with an image extension (others are ignored silently). */
  imagesOnly?: boolean;
  /** More files (or more than 10x as many entries of any kind) than this: `tooMany` is thrown, or, without it, the walk stops there. */
  maxFiles?: number;
  tooMany?: () => Error;
  signal?: AbortSignal;
  /** What CancelledError calls the work. */
  doing?: string;
}

/** What a directory entry is, through its links. */
export type EntryKind =
  | { kind: 'dir'; real: string; stats: fs.Stats }
  | { kind: 'file'; real: string; stats: fs.Stats }
  | { kind: 'skip'; reason: SkippedFile['reason']; detail: string };

/** Stats an entry through its links and says what it is (never opening it). */
export async function entryKind(abs: string, name: string): Promise<EntryKind> {
  let real: string;
  let stats: fs.Stats;
  try {
    ({ real, stats } = await resolveStat(abs));
  } catch (e) {
    if (errnoOf(e) === 'ENOENT' && name.includes('\uFFFD') && !(await fs.promises.lstat(abs).then(() => true, () => false))) {
      return { kind: 'skip', reason: 'unreadable', detail: 'has a name that is not valid UTF-8 (shown with �), which Layer Lens cannot open; rename it' };
    }
    const why = await unresolvable(e, abs);
    return { kind: 'skip', reason: 'unreadable', detail: why.detail === 'does not exist' ? 'disappeared while the folder was read' : why.detail };
  }
  if (isKernelPath(real)) return { kind: 'skip', reason: 'unreadable', detail: `is a file of the kernel (${real}), not an image on a disk` };
  if (stats.isDirectory()) return { kind: 'dir', real, stats };
  if (stats.isFile()) return { kind: 'file', real, stats };
  return { kind: 'skip', reason: 'not-an-image', detail: `is not a regular file (${kindOf(stats)})` };
}

const idOf = (st: fs.Stats) => `${st.dev}:${st.ino}`;

/**
 * One walk's memory: which folders and files it has met (by device and
 * inode), what it left out and why. One TreeWalk spans every class folder
 * of a dataset, so a file linked into two classes is used once.
 */
export class TreeWalk {
  private readonly dirs = new Map<string, string>();
  private readonly files = new Map<string, string>();
  readonly skipped: SkippedFile[] = [];
  private count = 0;
  private entries = 0;

  constructor(
    /** Real path of the walked folder. */
    readonly rootReal: string,
    private readonly o: WalkOptions,
  ) {}

  /** Records a folder as read (the root, or a class folder read by the caller). Returns false if it was read before. */
  enterDir(stats: fs.Stats, rel: string): boolean {
    const id = idOf(stats);
    const before = this.dirs.get(id);
    if (before !== undefined) {
      const ancestor = before === '' || rel.startsWith(before + '/');
      this.skipped.push({
        file: rel + '/',
        reason: 'duplicate',
        detail: ancestor ? `links back to ${before === '' ? 'the folder itself' : before + '/'} (a symbolic link loop); not followed` : `is the same folder as ${before}/ (a link); read once`,
      });
      return false;
    }
    this.dirs.set(id, rel);
    return true;
  }

  /** Records a file; false (and a note) when the same file was listed before. */
  private enterFile(stats: fs.Stats, rel: string): boolean {
    const id = idOf(stats);
    const before = this.files.get(id);
    if (before !== undefined) {
      this.skipped.push({ file: rel, reason: 'duplicate', detail: `is the same file as ${before} (a link); used once` });
      return false;
    }
    this.files.set(id, rel);
    return true;
  }

  private check(): void {
    if (this.o.signal?.aborted) throw new CancelledError(this.o.doing ?? 'Reading the folder');
  }

  /**
   * Files under `dir` (entered already by the caller or not), recursively,
   * sorted by path. `depth` is `dir`'s level below the walked folder.
   */
  async list(dir: string, relDir: string, depth: number, out: WalkedFile[] = []): Promise<WalkedFile[]> {
    this.check();
    let names: string[];
    try {
      names = await fs.promises.readdir(dir);
    } catch (e) {
      this.skipped.push({ file: (relDir || '.') + '/', reason: 'unreadable', detail: `cannot be listed (${fsCauseOrMessage(e)})` });
      return out;
    }
    names = names.filter((n) => !isHidden(n)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    // A whole disk picked by mistake: bounded by what is listed, not only by the files kept.
    this.entries += names.length;
    if (this.o.maxFiles !== undefined && this.entries > 10 * this.o.maxFiles) {
      if (this.o.tooMany) throw this.o.tooMany();
      return out;
    }
    const kinds = await mapChunks(names, 64, (n) => entryKind(path.join(dir, n), n));
    for (let i = 0; i < names.length; i++) {
      const name = names[i];
      const abs = path.join(dir, name);
      const rel = relDir ? `${relDir}/${name}` : name;
      const k = kinds[i];
      if (k.kind === 'skip') {
        if (!this.o.imagesOnly || isImageName(name)) this.skipped.push({ file: rel, reason: k.reason, detail: k.detail });
      } else if (k.kind === 'dir') {
        if (depth + 1 > this.o.maxDepth) {
          this.skipped.push({ file: rel + '/', reason: 'too-deep', detail: `is more than ${this.o.maxDepth} folder levels below ${path.basename(this.rootReal)}; its contents were not read` });
        } else if (this.enterDir(k.stats, rel)) {
          await this.list(abs, rel, depth + 1, out);
        }
      } else if (!this.o.imagesOnly || isImageName(name)) {
        if (!this.enterFile(k.stats, rel)) continue;
        if (this.o.maxFiles !== undefined && ++this.count > this.o.maxFiles) {
          if (this.o.tooMany) throw this.o.tooMany();
          return out;
        }
        out.push({ abs, rel, real: k.real, size: k.stats.size, mtimeMs: k.stats.mtimeMs, outside: !isInside(k.real, this.rootReal) });
      }
    }
    return out;
  }
}

/** `fn` over `items`, `size` at a time, results in order. */
async function mapChunks<T, R>(items: T[], size: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size) out.push(...(await Promise.all(items.slice(i, i + size).map(fn))));
  return out;
}

/** Resolves and checks the folder a walk starts from: its real path and stats, or a refusal naming it. */
export async function walkRoot(dir: string, shown: string, what: string): Promise<{ real: string; stats: fs.Stats }> {
  let real: string;
  let stats: fs.Stats;
  try {
    ({ real, stats } = await resolveStat(dir));
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') throw new EngineError('not-found', `${what} ${shown} does not exist.`);
    throw new EngineError('bad-dataset', `${what} ${shown} cannot be read (${fsCauseOrMessage(e)}).`);
  }
  if (!stats.isDirectory()) throw new EngineError('bad-dataset', `${shown} is ${stats.isFile() ? 'a file' : kindOf(stats)}, not a folder.`);
  if (isKernelPath(real)) throw new EngineError('bad-dataset', `${shown} is a folder of the kernel (${real}), not a folder of images.`);
  return { real, stats };
}
