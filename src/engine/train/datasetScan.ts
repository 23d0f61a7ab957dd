/**
 * Scanning a dataset on disk, one sub-folder per class (the layout of Keras's
 * image_dataset_from_directory and Teachable Machine's export of samples),
 * with a report of every file left out.
 *
 * The folders are walked by io/walk.ts: each file is used once however many
 * links lead to it (so no image lands in both train and validation), link
 * loops are not followed, folders nested past 8 levels are named, and
 * devices, FIFOs and kernel files are never opened. Class folders whose
 * names differ only in their Unicode form (NFC "é" and NFD "e" + accent, as
 * a copy from macOS may leave) are one class.
 *
 * The scan reads each file once (io/safeRead.ts: ordinary files only, with
 * a time limit) to check its container (magic bytes, and the PNG chunk list
 * or JPEG markers to its end, without inflating pixels), so that truncated
 * and mislabelled files are named before training starts rather than
 * halfway through epoch 1.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CancelledError, EngineError, isEngineError } from '../errors';
import { imageLimits, probeImage, sniffImageFormat } from '../image';
import { rel } from '../io/files';
import { fsCauseOrMessage } from '../io/fsErrors';
import { readRegularFile, resolveStat, UnreadableFile } from '../io/safeRead';
import { entryKind, isHidden, isImageName, isKernelPath, TreeWalk, type WalkedFile } from '../io/walk';
import type { SkippedFile } from '../../protocol/train';

/** Class folders may hold sub-folders (as Keras allows); deeper than this is a mistake or a link loop. */
export const MAX_DEPTH = 8;
/** Files a dataset may hold (what any image dataset a fine-tune can use fits in). */
export const MAX_FILES = 1_000_000;

export interface DatasetImage {
  /** Absolute path. */
  file: string;
  /** Path relative to the dataset folder, "/"-separated: how messages name it. */
  rel: string;
  label: number;
  /** Reached through a link to outside the dataset folder: messages never quote its bytes. */
  outside?: boolean;
}

export interface DatasetScan {
  dir: string;
  /** Class names (folder names, NFC-normalised), sorted. Label i is classes[i]. */
  classes: string[];
  /** Usable images per class. */
  counts: number[];
  /** Every usable image, by class, then by path. */
  images: DatasetImage[];
  skipped: SkippedFile[];
  /** What the scan decided that the user should know (class folders merged). */
  warnings: string[];
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new CancelledError('Fine-tuning');
}

/** The cause in an image.ts or safeRead.ts message, without the file name it starts with. */
export function causeOf(message: string, name: string): string {
  const rest = message.startsWith(name) ? message.slice(name.length).replace(/^[:\s]+/, '') : message;
  return rest.split('; ')[0].replace(/\.$/, '');
}

/** Why a file cannot be used, as a skipped-file entry. */
export function skipFor(e: unknown, file: string): SkippedFile {
  if (e instanceof UnreadableFile) {
    if (e.kind === 'special') return { file, reason: 'not-an-image', detail: e.detail };
    if (e.kind === 'missing') return { file, reason: 'unreadable', detail: 'disappeared during the scan' };
    return { file, reason: 'unreadable', detail: e.detail };
  }
  if (isEngineError(e) && e.code === 'bad-image') return { file, reason: 'corrupt', detail: causeOf(e.message, file) };
  return { file, reason: 'unreadable', detail: `cannot be read (${fsCauseOrMessage(e)})` };
}

type Checked = { ok: true } | { ok: false; skip: SkippedFile };

/**
 * Reads a file once and checks that it is a whole PNG or JPEG. Pixels are not
 * decoded here: that waits for the batch that needs them. A file without an
 * image extension is judged by its first bytes alone.
 */
async function checkFile(f: WalkedFile): Promise<Checked> {
  const looksLikeImage = isImageName(f.rel);
  try {
    if (!looksLikeImage) {
      const head = await readRegularFile(f.abs, { shown: f.rel, maxBytes: imageLimits.maxFileBytes, head: 16 });
      if (!sniffImageFormat(head)) return { ok: false, skip: { file: f.rel, reason: 'not-an-image', detail: 'is not a PNG or JPEG image' } };
    }
    const bytes = await readRegularFile(f.abs, {
      shown: f.rel,
      maxBytes: imageLimits.maxFileBytes,
      tooLarge: (size) => new EngineError('bad-image', `${f.rel} is ${(size / 1048576).toFixed(0)} MB, over the ${imageLimits.maxFileBytes / 1048576} MB limit for an image`),
    });
    probeImage(bytes, f.rel, { quote: !f.outside });
    return { ok: true };
  } catch (e) {
    return { ok: false, skip: skipFor(e, f.rel) };
  }
}

/** Runs `fn` over `items` with at most `limit` at a time, results in input order. */
async function mapLimit<T, R>(items: T[], limit: number, signal: AbortSignal | undefined, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      throwIfAborted(signal);
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

function plural(n: number, one: string, many = one + 's'): string {
  return `${n} ${n === 1 ? one : many}`;
}

const byCodePoint = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

interface ClassFolder {
  name: string;
  stats: fs.Stats;
}

/**
 * Scans `dir` (one sub-folder per class). Throws EngineError for a missing
 * folder, fewer than 2 classes, or a class without usable images; everything
 * else that cannot be used (other files, unreadable files, corrupt images,
 * second links to a file, folders nested too deep) is listed in `skipped`
 * and training goes on without it.
 */
export async function scanDataset(dir: string, options: { signal?: AbortSignal } = {}): Promise<DatasetScan> {
  const root = path.resolve(dir);
  const shown = rel(root);
  let real: string;
  let st: fs.Stats;
  try {
    ({ real, stats: st } = await resolveStat(root));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new EngineError('not-found', `dataset folder ${shown} does not exist; choose a folder with one sub-folder of images per class.`);
    }
    throw new EngineError('bad-dataset', `dataset folder ${shown} cannot be read (${fsCauseOrMessage(e)}).`);
  }
  if (!st.isDirectory()) {
    throw new EngineError('bad-dataset', `${shown} is a file, not a folder; choose a folder with one sub-folder of images per class.`);
  }
  if (isKernelPath(real)) throw new EngineError('bad-dataset', `dataset folder ${shown} is a folder of the kernel (${real}), not a folder of images.`);
  let names: string[];
  try {
    names = (await fs.promises.readdir(real)).filter((n) => !isHidden(n)).sort(byCodePoint);
  } catch (e) {
    throw new EngineError('bad-dataset', `dataset folder ${shown} cannot be listed (${fsCauseOrMessage(e)}).`);
  }
  const walk = new TreeWalk(real, {
    maxDepth: MAX_DEPTH,
    maxFiles: MAX_FILES,
    tooMany: () => new EngineError('bad-dataset', `dataset folder ${shown} holds more than ${MAX_FILES.toLocaleString('en-US')} files; pick the folder that holds the class folders (a whole disk or home folder was picked?).`),
    signal: options.signal,
    doing: 'Fine-tuning',
  });
  walk.enterDir(st, '');
  const skipped: SkippedFile[] = [];
  // Class folders by their NFC name: two spellings of one name are one class.
  const groups = new Map<string, ClassFolder[]>();
  for (const name of names) {
    const k = await entryKind(path.join(root, name), name);
    if (k.kind === 'dir') {
      const key = name.normalize('NFC');
      groups.set(key, [...(groups.get(key) ?? []), { name, stats: k.stats }]);
    } else if (isImageName(name)) {
      // Images lying next to the class folders are probably meant for a class; say so.
      skipped.push(k.kind === 'file' ? { file: name, reason: 'outside-class', detail: 'is not inside a class folder' } : { file: name, reason: k.reason, detail: k.detail });
    }
  }
  // Code point order, as Python's sorted() gives Keras: the label order a Keras user expects.
  const classes = [...groups.keys()].sort(byCodePoint);
  if (classes.length < 2) {
    const found = classes.length === 0 ? 'found none' : `found 1: ${classes[0]}`;
    const loose = skipped.length > 0 ? ` (${plural(skipped.length, 'image')} lie directly in it)` : '';
    throw new EngineError(
      'bad-dataset',
      `dataset folder ${shown} needs at least 2 class folders; ${found}${loose}. Put each class's images in its own sub-folder, e.g. ${shown}/cats and ${shown}/dogs.`,
    );
  }
  const warnings: string[] = [];
  for (const c of classes) {
    const folders = groups.get(c)!;
    if (folders.length > 1) {
      warnings.push(`The class folders ${folders.map((f) => JSON.stringify(f.name)).join(' and ')} in ${shown} have the same name written in different Unicode forms (composed and decomposed accents); their images are one class, "${c}". Rename one to silence this.`);
    }
  }

  const images: DatasetImage[] = [];
  const counts: number[] = [];
  const empty: { name: string; why: string }[] = [];
  for (let label = 0; label < classes.length; label++) {
    throwIfAborted(options.signal);
    const listed: WalkedFile[] = [];
    const skipsBefore = walk.skipped.length;
    for (const folder of groups.get(classes[label])!) {
      if (walk.enterDir(folder.stats, folder.name)) await walk.list(path.join(root, folder.name), folder.name, 1, listed);
    }
    const checked = await mapLimit(listed, 8, options.signal, checkFile);
    const before = images.length;
    const classSkips: SkippedFile[] = walk.skipped.slice(skipsBefore);
    checked.forEach((c, i) => {
      const f = listed[i];
      if (c.ok) images.push({ file: f.abs, rel: f.rel, label, ...(f.outside ? { outside: true } : {}) });
      else classSkips.push(c.skip);
    });
    skipped.push(...classSkips);
    counts.push(images.length - before);
    if (images.length === before) {
      const why = classSkips.length === 0 ? 'it is empty' : `${plural(classSkips.length, 'file')} left out: ${classSkips.slice(0, 3).map((s) => `${s.file} ${s.detail}`).join('; ')}${classSkips.length > 3 ? '; …' : ''}`;
      empty.push({ name: classes[label], why });
    }
  }
  if (empty.length > 0) {
    const names = empty.map((e) => `"${e.name}"`).join(', ');
    const whys = empty.map((e) => `${e.name}: ${e.why}`).join('; ');
    throw new EngineError(
      'bad-dataset',
      `class folder${empty.length > 1 ? 's' : ''} ${names} in ${shown} ${empty.length > 1 ? 'have' : 'has'} no usable PNG or JPEG images (${whys}). Add images, or remove the folder${empty.length > 1 ? 's' : ''}.`,
    );
  }
  return { dir: root, classes, counts, images, skipped, warnings };
}
