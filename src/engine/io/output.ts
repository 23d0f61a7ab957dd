/**
 * Every file Layer Lens writes for a user (inspect and compare results,
 * projector TSVs, 2-D maps, exported PNGs, new model folders) goes through
 * this module, and it keeps two rules:
 *
 * 1. An output never replaces a file that this run did not create, unless
 *    the user said so (`--force`, or a save dialog's "Replace"). The check
 *    comes before the work, and again at the moment of writing, without a
 *    race: the new file is written under a temporary name and hard-linked to
 *    its name, which fails if anything (a file, a link, even a dangling one)
 *    took the name meanwhile.
 * 2. A model's own files (model.json, weight shards, Keras and ONNX files,
 *    the recipe, metadata.json or labels.txt next to a model) are never
 *    replaced, `--force` or not: by name, and by device and inode for every
 *    file a model loaded in this process was read from (hard links and
 *    symlinks included).
 *
 * Every place is checked before the work starts (`prepare…`): it is not a
 * file where a folder is wanted, its folder exists or can be made, it can be
 * written (a real probe, so a read-only mount says so even for root), the
 * names fit the file system with the temporary suffix, and, when the size is
 * known, the disk has room.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EngineError } from '../errors';
import { releaseTmp, removeTmp, sweepStaleTemps, tmpSiblingName, tmpSuffixBytes, writeFolderAtomic, writeTmpFile } from './atomic';
import { rel } from './files';
import { errnoOf, fsCause, fsCauseOrMessage } from './fsErrors';
import { isKernelPath } from './safeRead';

/** Longest file name (bytes) on the file systems Layer Lens meets (ext4, APFS, NTFS: 255). */
export const NAME_MAX = 255;

// ---------------------------------------------------------------------------
// A model's own files.

const modelFilePattern = /^(model\.json|weights\.bin|layerlens\.json|.+\.layerlens\.json|group\d+-shard\d+of\d+(\.bin)?|.+\.(h5|hdf5|keras|onnx|tflite|pb))$/i;
const protectedIds = new Map<string, string>();

/** Records files a loaded model was read from: no output may ever replace them. */
export function protectModelFiles(files: string[]): void {
  for (const f of files) {
    try {
      const st = fs.statSync(f);
      protectedIds.set(`${st.dev}:${st.ino}`, f);
    } catch {
      // Gone: nothing to protect.
    }
  }
}

/** Why `target` is a model's own file, or undefined. */
async function modelOwn(target: string): Promise<string | undefined> {
  const name = path.basename(target);
  if (modelFilePattern.test(name)) return `${name} is a model's own file`;
  const st = await fs.promises.stat(target).catch(() => undefined);
  if (st && protectedIds.has(`${st.dev}:${st.ino}`)) return `it is ${path.basename(protectedIds.get(`${st.dev}:${st.ino}`)!)} of a model Layer Lens has open`;
  if ((name === 'metadata.json' || name === 'labels.txt') && fs.existsSync(path.join(path.dirname(target), 'model.json'))) return `${name} belongs to the model next to it`;
  return undefined;
}

// ---------------------------------------------------------------------------
// Checks before the work.

export interface OutputOptions {
  /** Replace files that exist (never a model's own). */
  force?: boolean;
  /** How messages name the place the user chose ("--out", "--tsv", "the export folder"). */
  flag?: string;
  /** Bytes the outputs will take, when known (checked against the free space). */
  bytes?: number;
}

const place = (o: OutputOptions, p: string) => (o.flag ? `${o.flag} ${rel(p)}` : rel(p));

function refuse(message: string): EngineError {
  return new EngineError('output-exists', message);
}

/** The nearest folder that exists at or above `dir` (what a new folder would be made in). */
async function existingAncestor(dir: string): Promise<{ dir: string; stats: fs.Stats }> {
  let d = dir;
  for (;;) {
    try {
      const st = await fs.promises.stat(d);
      if (!st.isDirectory()) throw new EngineError('bad-input', `${rel(d)} is a file, not a folder; an output cannot go inside it.`);
      return { dir: d, stats: st };
    } catch (e) {
      if (e instanceof EngineError) throw e;
      const code = errnoOf(e);
      if (code === 'ENOTDIR') throw new EngineError('bad-input', `a part of ${rel(d)} is a file, not a folder; an output cannot go inside it.`);
      if (code !== 'ENOENT') throw new EngineError('io', `${rel(d)} cannot be used for the output: ${fsCauseOrMessage(e)}.`);
      const up = path.dirname(d);
      if (up === d) throw new EngineError('io', `no folder of ${rel(dir)} exists.`);
      d = up;
    }
  }
}

/** Proves `dir` can be written by making and removing an entry as long as the longest name that will be written there. */
async function probeWritable(dir: string, longest: string, what: string): Promise<void> {
  const real = await fs.promises.realpath(dir).catch(() => dir);
  if (isKernelPath(real)) throw new EngineError('io', `${what} is a folder of the kernel (${real}), not a folder on a disk; choose another place.`);
  // The probe's name is as long as the temporary name a write uses, so that a name too long for the file system fails here.
  const probe = path.join(dir, tmpSiblingName(longest.length > 0 ? longest : 'probe').replace('.layerlens-tmp-', '.layerlens-prb-'));
  try {
    await fs.promises.mkdir(probe);
  } catch (e) {
    const code = errnoOf(e);
    const why = code === 'EACCES' || code === 'EPERM' ? 'permission denied' : (fsCause(e) ?? fsCauseOrMessage(e));
    throw new EngineError('io', `${what} cannot be written: ${why}. Choose another place.`);
  }
  await fs.promises.rmdir(probe).catch(() => undefined);
}

/** Refuses names that, with the temporary suffix, pass the file system's limit. */
function checkNames(names: string[], o: OutputOptions, where: string): void {
  where = where.length > 80 ? `${where.slice(0, 77)}…` : where;
  for (const n of names) {
    const bytes = Buffer.byteLength(n);
    if (bytes + tmpSuffixBytes > NAME_MAX) {
      throw new EngineError(
        'bad-input',
        `${where}: the name "${n.length > 60 ? n.slice(0, 57) + '…' : n}" is ${bytes} bytes; with the ${tmpSuffixBytes}-byte temporary suffix it is written under first, it passes the ${NAME_MAX}-byte limit of file names. Choose a shorter name${o.flag ? ` for ${o.flag}` : ''}.`,
      );
    }
  }
}

/** Free bytes for an unprivileged user on the disk holding `dir`, if the system says. */
export async function freeBytes(dir: string): Promise<number | undefined> {
  try {
    const s = await fs.promises.statfs(dir);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return undefined;
  }
}

export function mb(n: number): string {
  return n >= 10 * 1048576 ? `${Math.round(n / 1048576)} MB` : `${(n / 1048576).toFixed(1)} MB`;
}

/** Refuses when the disk holding `dir` has less room than `bytes` (plus a margin). */
export async function checkSpace(dir: string, bytes: number | undefined, what: string): Promise<void> {
  if (bytes === undefined) return;
  const free = await freeBytes(dir);
  const need = Math.ceil(bytes * 1.05) + 1048576;
  if (free !== undefined && free < need) {
    throw new EngineError('io', `${what} needs about ${mb(need)}, but the disk holding ${rel(dir)} has ${mb(free)} free; free some space or choose another place.`);
  }
}

/**
 * Checks, before the work, that `target` (a file) can be written: not a
 * model's own file, not an existing file unless `force`, in a folder that
 * exists or can be made and can be written.
 */
export async function prepareOutputFile(target: string, o: OutputOptions = {}): Promise<void> {
  const abs = path.resolve(target);
  const what = place(o, abs);
  const own = await modelOwn(abs);
  if (own) throw refuse(`${what}: ${own}, which Layer Lens never replaces; choose another name.`);
  const st = await fs.promises.lstat(abs).catch(() => undefined);
  if (st?.isDirectory()) throw new EngineError('bad-input', `${what} is a folder; name a file.`);
  if (st && !o.force) throw refuse(`${what} already exists${st.isSymbolicLink() ? ' (as a symbolic link)' : ''}; Layer Lens does not replace files it did not write in this run. Pass --force to replace it, or choose another name.`);
  checkNames([path.basename(abs)], o, what);
  const parent = await existingAncestor(path.dirname(abs));
  await probeWritable(parent.dir, path.basename(abs), `the folder ${rel(parent.dir)}`);
  await checkSpace(parent.dir, o.bytes, what);
}

/**
 * Writes `target` atomically (temporary sibling, flushed, then put in place).
 * Without `force` the file must not exist at that moment: it is hard-linked
 * into place, which fails if the name was taken meanwhile (then nothing is
 * replaced and the run says so). A model's own file is never replaced.
 */
export async function writeOutputFile(target: string, data: string | Uint8Array, o: OutputOptions = {}): Promise<void> {
  const abs = path.resolve(target);
  const own = await modelOwn(abs);
  if (own) throw refuse(`${place(o, abs)}: ${own}, which Layer Lens never replaces.`);
  await fs.promises.mkdir(path.dirname(abs), { recursive: true });
  await sweepStaleTemps(path.dirname(abs), path.basename(abs));
  const tmp = await writeTmpFile(abs, data);
  try {
    if (o.force) {
      await fs.promises.rename(tmp, abs);
      releaseTmp(tmp);
      return;
    }
    try {
      await fs.promises.link(tmp, abs);
    } catch (e) {
      const code = errnoOf(e);
      if (code === 'EEXIST') throw refuse(`${place(o, abs)} appeared while Layer Lens worked; it was not replaced. Pass --force to replace it, or choose another name.`);
      // A file system without hard links (FAT, some network shares): check, then rename.
      if (await fs.promises.lstat(abs).then(() => true, () => false)) throw refuse(`${place(o, abs)} appeared while Layer Lens worked; it was not replaced.`);
      await fs.promises.rename(tmp, abs);
      releaseTmp(tmp);
      return;
    }
    await removeTmp(tmp);
  } catch (e) {
    await removeTmp(tmp);
    throw e;
  }
}

// ---------------------------------------------------------------------------
// A folder of outputs (inspect's and compare's --out).

export interface FolderPlan extends OutputOptions {
  /** Files the run writes, relative to the folder ("summary.json"). */
  files: string[];
  /** Sub-folders the run fills ("maps"): refused when they exist and hold anything, unless `force`. */
  folders?: string[];
}

/**
 * An output folder, checked before the work. A folder that does not exist is
 * built under a temporary name and renamed into place (a kill leaves no half
 * folder); in one that exists, each file is written as writeOutputFile does.
 */
export class OutputFolder {
  private constructor(
    readonly dir: string,
    private readonly existed: boolean,
    private readonly o: FolderPlan,
  ) {}

  static async prepare(dir: string, o: FolderPlan): Promise<OutputFolder> {
    const abs = path.resolve(dir);
    const what = place(o, abs);
    const st = await fs.promises.lstat(abs).catch(() => undefined);
    let existed = false;
    if (st) {
      const target = await fs.promises.stat(abs).catch(() => undefined);
      if (!target) throw new EngineError('bad-input', `${what} is a symbolic link to ${fs.readlinkSync(abs)}, which does not exist; name a folder (it is created if absent).`);
      if (!target.isDirectory()) throw new EngineError('bad-input', `${what} exists and is not a folder; name a folder (it is created if absent).`);
      existed = true;
      const taken: string[] = [];
      for (const f of o.files) {
        const p = path.join(abs, f);
        const own = await modelOwn(p);
        if (own && fs.existsSync(p)) throw refuse(`${what}: ${own}, which Layer Lens never replaces; choose another folder.`);
        if (await fs.promises.lstat(p).then(() => true, () => false)) taken.push(f);
      }
      for (const d of o.folders ?? []) {
        const inside = await fs.promises.readdir(path.join(abs, d)).catch(() => [] as string[]);
        if (inside.length > 0) taken.push(`${d}/`);
      }
      if (taken.length > 0 && !o.force) {
        throw refuse(`${what} already holds ${taken.join(', ')} (from an earlier run?); Layer Lens does not replace files it did not write in this run. Pass --force to replace them, or choose another folder.`);
      }
      checkNames(o.files.map((f) => path.basename(f)), o, what);
      await probeWritable(abs, o.files.reduce((a, b) => (Buffer.byteLength(path.basename(b)) > Buffer.byteLength(a) ? path.basename(b) : a), ''), what);
      await checkSpace(abs, o.bytes, what);
    } else {
      checkNames([path.basename(abs)], o, what);
      const parent = await existingAncestor(path.dirname(abs));
      await probeWritable(parent.dir, path.basename(abs), `the folder ${rel(parent.dir)}`);
      await checkSpace(parent.dir, o.bytes, what);
    }
    return new OutputFolder(abs, existed, o);
  }

  /** Writes every entry (paths relative to the folder). */
  async write(entries: { file: string; data: string | Uint8Array }[]): Promise<void> {
    if (this.existed) {
      for (const e of entries) await writeOutputFile(path.join(this.dir, e.file), e.data, this.o);
      return;
    }
    await fs.promises.mkdir(path.dirname(this.dir), { recursive: true });
    await writeFolderAtomic(this.dir, async (tmp) => {
      for (const e of entries) {
        await fs.promises.mkdir(path.dirname(path.join(tmp, e.file)), { recursive: true });
        await fs.promises.writeFile(path.join(tmp, e.file), e.data, { flag: 'wx' });
      }
    });
  }
}

// ---------------------------------------------------------------------------
// A new model folder (a fine-tune's, a pretext's result).

/**
 * Checks, before any training, that a new folder `target` can be made: the
 * name is free (a dangling link is not free), its parent is an existing
 * folder that can be written (a real probe with a name as long as the
 * temporary one, so a read-only disk, a missing permission or a name too
 * long for the file system says so now, not after hours of training), and
 * the disk has room for `bytes`. Stale temporary folders of ours there are
 * swept. `made` says what would be saved ("the fine-tuned model").
 */
export async function prepareResultFolder(target: string, o: { made: string; bytes?: number }): Promise<void> {
  const abs = path.resolve(target);
  const st = await fs.promises.lstat(abs).catch(() => undefined);
  if (st?.isSymbolicLink() && !(await fs.promises.stat(abs).then(() => true, () => false))) {
    throw new EngineError('bad-input', `${rel(abs)} is a symbolic link to ${await fs.promises.readlink(abs).catch(() => '?')}, which does not exist; Layer Lens does not save through links. Choose a new folder name.`);
  }
  if (st) throw new EngineError('bad-input', `${rel(abs)} already exists; Layer Lens never writes over a folder. Choose another output folder.`);
  const parent = path.dirname(abs);
  const where = `the folder ${rel(parent)}, where ${o.made} would go,`;
  try {
    const pst = await fs.promises.stat(parent);
    if (!pst.isDirectory()) throw new EngineError('bad-input', `${rel(parent)}, where ${o.made} would go, is a file, not a folder; choose another output folder.`);
  } catch (e) {
    if (e instanceof EngineError) throw e;
    const code = errnoOf(e);
    if (code === 'ENOENT') throw new EngineError('bad-input', `${where} does not exist; create it or choose another output folder.`);
    if (code === 'ENOTDIR') throw new EngineError('bad-input', `${rel(parent)}, where ${o.made} would go, lies under a file, not a folder; choose another output folder.`);
    throw new EngineError('io', `${where} cannot be used: ${fsCauseOrMessage(e)}; choose another output folder.`);
  }
  checkNames([path.basename(abs)], { flag: '--out' }, rel(abs));
  await sweepStaleTemps(parent);
  await probeWritable(parent, path.basename(abs), `${rel(parent)}, where ${o.made} would go,`);
  await checkSpace(parent, o.bytes, `Saving ${o.made} in ${rel(parent)}`);
}
