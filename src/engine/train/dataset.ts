/**
 * Image datasets on disk, one sub-folder per class (the layout of Keras's
 * image_dataset_from_directory and Teachable Machine's export of samples):
 * scanning with a report of every file left out, a seeded per-class
 * train/validation split, and batches decoded lazily, so that a dataset larger
 * than memory still trains.
 *
 * The scan reads each file once to check its container (magic bytes, and the
 * PNG chunk list or JPEG markers to its end, without inflating pixels), so
 * that truncated and mislabelled files are named before training starts rather
 * than halfway through epoch 1. A file that passes the check but still fails to
 * decode is left out when it is met, with a warning, and training goes on.
 */
import * as tf from '@tensorflow/tfjs';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CancelledError, EngineError, isEngineError, messageOf } from '../errors';
import { decodeImage, imageLimits, probeImage, sniffImageFormat, toInputTensor } from '../image';
import { rel } from '../io/files';
import { Rng } from '../random';
import type { Normalization } from '../../protocol/model';
import type { SkippedFile } from '../../protocol/train';

/** Extensions that say "I am an image" even when the bytes disagree (then the file is reported as corrupt). */
const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.jpe', '.jfif']);

/** Class folders may hold sub-folders (as Keras allows); deeper than this is a mistake or a link loop. */
const MAX_DEPTH = 8;

export interface DatasetImage {
  /** Absolute path. */
  file: string;
  /** Path relative to the dataset folder, "/"-separated: how messages name it. */
  rel: string;
  label: number;
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
}

/**
 * A 32-bit seed for one purpose, derived from the user's seed: the split of
 * class "cats" does not change when another class gains an image, and the
 * shuffle of epoch 3 does not depend on how many numbers epoch 2 drew.
 */
export function deriveSeed(seed: number, ...parts: (string | number)[]): number {
  // FNV-1a over the text; plenty for decorrelating PRNG streams.
  let h = 0x811c9dc5;
  const text = [seed, ...parts].join('\u0000');
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

const shownDir = (dir: string) => rel(dir);

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new CancelledError('Fine-tuning');
}

function isHidden(name: string): boolean {
  // Dot files (.DS_Store, .git) and the AppleDouble/Thumbs clutter that file managers leave.
  return name.startsWith('.') || name === 'Thumbs.db' || name === 'desktop.ini' || name === '__MACOSX';
}

function errnoText(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'ENOENT') return 'it disappeared during the scan';
  if (code === 'ELOOP') return 'a symbolic link loop';
  return messageOf(e).split('\n')[0];
}

/** The cause in an image.ts message, without the file name it starts with. */
function causeOf(message: string, name: string): string {
  const rest = message.startsWith(name) ? message.slice(name.length).replace(/^[:\s]+/, '') : message;
  return rest.split('; ')[0].replace(/\.$/, '');
}

interface Listed {
  abs: string;
  rel: string;
}

/** Files under a class folder, recursively, hidden ones left out, sorted by path. */
async function listFiles(dir: string, relDir: string, depth: number, out: Listed[], unreadable: SkippedFile[]): Promise<void> {
  let entries: fs.Dirent[];
  try {
    entries = await fs.promises.readdir(dir, { withFileTypes: true });
  } catch (e) {
    unreadable.push({ file: relDir + '/', reason: 'unreadable', detail: `cannot be listed (${errnoText(e)})` });
    return;
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    if (isHidden(entry.name)) continue;
    const abs = path.join(dir, entry.name);
    const r = `${relDir}/${entry.name}`;
    let isDir = entry.isDirectory();
    let isFile = entry.isFile();
    if (entry.isSymbolicLink()) {
      try {
        const st = await fs.promises.stat(abs);
        isDir = st.isDirectory();
        isFile = st.isFile();
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        unreadable.push({ file: r, reason: 'unreadable', detail: code === 'ENOENT' ? 'is a broken symbolic link' : `cannot be read (${errnoText(e)})` });
        continue;
      }
    }
    if (isDir) {
      if (depth < MAX_DEPTH) await listFiles(abs, r, depth + 1, out, unreadable);
    } else if (isFile) {
      out.push({ abs, rel: r });
    } else {
      // A FIFO would block the read forever; devices and sockets are no images either.
      unreadable.push({ file: r, reason: 'not-an-image', detail: 'is not a regular file' });
    }
  }
}

type Checked = { ok: true } | { ok: false; skip: SkippedFile };

/**
 * Reads a file once and checks that it is a whole PNG or JPEG. Pixels are not
 * decoded here: that waits for the batch that needs them.
 */
async function checkFile(f: Listed): Promise<Checked> {
  const looksLikeImage = IMAGE_EXTENSIONS.has(path.extname(f.rel).toLowerCase());
  let handle: fs.promises.FileHandle;
  try {
    handle = await fs.promises.open(f.abs, 'r');
  } catch (e) {
    return { ok: false, skip: { file: f.rel, reason: 'unreadable', detail: `cannot be read (${errnoText(e)})` } };
  }
  try {
    const head = new Uint8Array(16);
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    if (!sniffImageFormat(head.subarray(0, bytesRead))) {
      if (!looksLikeImage) return { ok: false, skip: { file: f.rel, reason: 'not-an-image', detail: 'is not a PNG or JPEG image' } };
      // Named .png or .jpg but something else inside: let probeImage say what it starts with.
    }
    const size = (await handle.stat()).size;
    if (size > imageLimits.maxFileBytes) {
      return { ok: false, skip: { file: f.rel, reason: 'corrupt', detail: `is ${(size / 1048576).toFixed(0)} MB, over the ${imageLimits.maxFileBytes / 1048576} MB limit for an image` } };
    }
    const bytes = await handle.readFile();
    probeImage(bytes, f.rel);
    return { ok: true };
  } catch (e) {
    if (isEngineError(e) && e.code === 'bad-image') return { ok: false, skip: { file: f.rel, reason: 'corrupt', detail: causeOf(e.message, f.rel) } };
    return { ok: false, skip: { file: f.rel, reason: 'unreadable', detail: `cannot be read (${errnoText(e)})` } };
  } finally {
    await handle.close();
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

/**
 * Scans `dir` (one sub-folder per class). Throws EngineError for a missing
 * folder, fewer than 2 classes, or a class without usable images; everything
 * else that cannot be used (other files, unreadable files, corrupt images) is
 * listed in `skipped` and training goes on without it.
 */
export async function scanDataset(dir: string, options: { signal?: AbortSignal } = {}): Promise<DatasetScan> {
  const root = path.resolve(dir);
  const shown = shownDir(root);
  let st: fs.Stats;
  try {
    st = await fs.promises.stat(root);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new EngineError('not-found', `dataset folder ${shown} does not exist; choose a folder with one sub-folder of images per class.`);
    }
    throw new EngineError('bad-dataset', `dataset folder ${shown} cannot be read (${errnoText(e)}).`);
  }
  if (!st.isDirectory()) {
    throw new EngineError('bad-dataset', `${shown} is a file, not a folder; choose a folder with one sub-folder of images per class.`);
  }
  let entries: fs.Dirent[];
  try {
    entries = await fs.promises.readdir(root, { withFileTypes: true });
  } catch (e) {
    throw new EngineError('bad-dataset', `dataset folder ${shown} cannot be listed (${errnoText(e)}).`);
  }
  const classDirs: string[] = [];
  const skipped: SkippedFile[] = [];
  for (const e of entries) {
    if (isHidden(e.name)) continue;
    let isDir = e.isDirectory();
    if (e.isSymbolicLink()) isDir = await fs.promises.stat(path.join(root, e.name)).then((s) => s.isDirectory(), () => false);
    if (isDir) classDirs.push(e.name);
    // Images lying next to the class folders are probably meant for a class; say so.
    else if (IMAGE_EXTENSIONS.has(path.extname(e.name).toLowerCase())) skipped.push({ file: e.name, reason: 'outside-class', detail: 'is not inside a class folder' });
  }
  // Code point order, as Python's sorted() gives Keras: the label order a Keras user expects.
  classDirs.sort((a, b) => (a.normalize('NFC') < b.normalize('NFC') ? -1 : a.normalize('NFC') > b.normalize('NFC') ? 1 : 0));
  const classes = classDirs.map((d) => d.normalize('NFC'));
  if (classes.length < 2) {
    const found = classes.length === 0 ? 'found none' : `found 1: ${classes[0]}`;
    const loose = skipped.length > 0 ? ` (${plural(skipped.length, 'image')} lie directly in it)` : '';
    throw new EngineError(
      'bad-dataset',
      `dataset folder ${shown} needs at least 2 class folders; ${found}${loose}. Put each class's images in its own sub-folder, e.g. ${shown}/cats and ${shown}/dogs.`,
    );
  }

  const images: DatasetImage[] = [];
  const counts: number[] = [];
  const empty: { name: string; why: string }[] = [];
  for (let label = 0; label < classDirs.length; label++) {
    throwIfAborted(options.signal);
    const listed: Listed[] = [];
    const unreadable: SkippedFile[] = [];
    await listFiles(path.join(root, classDirs[label]), classDirs[label], 1, listed, unreadable);
    const checked = await mapLimit(listed, 8, options.signal, checkFile);
    const before = images.length;
    const classSkips: SkippedFile[] = [...unreadable];
    checked.forEach((c, i) => {
      if (c.ok) images.push({ file: listed[i].abs, rel: listed[i].rel, label });
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
  return { dir: root, classes, counts, images, skipped };
}

export interface DatasetSplit {
  train: DatasetImage[];
  val: DatasetImage[];
  /** Per class, in label order. */
  perClass: { train: number; val: number }[];
}

/**
 * Seeded per-class split (tfjs's validationSplit takes the last rows
 * unshuffled, i.e. whole classes when files are sorted). Each class is
 * shuffled with its own stream and round(fraction * n) of it, at least one
 * when fraction > 0 and the class has 2 or more images, goes to validation;
 * every class keeps at least one training image.
 */
export function splitDataset(scan: Pick<DatasetScan, 'classes' | 'images'>, fraction: number, seed: number): DatasetSplit {
  const train: DatasetImage[] = [];
  const val: DatasetImage[] = [];
  const perClass: { train: number; val: number }[] = [];
  for (let label = 0; label < scan.classes.length; label++) {
    const items = scan.images.filter((im) => im.label === label);
    const rng = new Rng(deriveSeed(seed, 'split', scan.classes[label]));
    const shuffled = rng.shuffle([...items]);
    let nVal = Math.round(fraction * items.length);
    if (fraction > 0 && items.length >= 2) nVal = Math.max(1, nVal);
    nVal = Math.min(nVal, Math.max(0, items.length - 1));
    const v = shuffled.slice(0, nVal).sort((a, b) => (a.rel < b.rel ? -1 : 1));
    const t = shuffled.slice(nVal).sort((a, b) => (a.rel < b.rel ? -1 : 1));
    val.push(...v);
    train.push(...t);
    perClass.push({ train: t.length, val: v.length });
  }
  return { train, val, perClass };
}

/** The visiting order of epoch `epoch` (0-based): a seeded permutation of 0..n-1. */
export function epochOrder(n: number, seed: number, epoch: number): number[] {
  return new Rng(deriveSeed(seed, 'shuffle', epoch)).shuffle(Array.from({ length: n }, (_, i) => i));
}

/** Consecutive slices of `order` of at most `size` items. */
export function chunks<T>(order: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < order.length; i += size) out.push(order.slice(i, i + size));
  return out;
}

export function oneHot(labels: readonly number[], classCount: number): tf.Tensor2D {
  const data = new Float32Array(labels.length * classCount);
  labels.forEach((l, i) => (data[i * classCount + l] = 1));
  return tf.tensor2d(data, [labels.length, classCount]);
}

/**
 * Decoded, resized and normalised inputs kept in memory up to a byte budget,
 * so that small datasets are decoded once rather than every epoch; past the
 * budget, images are decoded again each time (the dataset may not fit).
 */
export class InputCache {
  private readonly items = new Map<string, Float32Array>();
  private used = 0;

  constructor(readonly budgetBytes: number) {}

  get(key: string): Float32Array | undefined {
    return this.items.get(key);
  }

  put(key: string, data: Float32Array): void {
    if (this.items.has(key) || this.used + data.byteLength > this.budgetBytes) return;
    this.items.set(key, data);
    this.used += data.byteLength;
  }

  get bytes(): number {
    return this.used;
  }

  clear(): void {
    this.items.clear();
    this.used = 0;
  }
}

export interface ImageBatch {
  /** [n, height, width, channels], normalised. */
  xs: tf.Tensor; // [n, h, w, c], or [n, h, w] for a model without a channel axis
  /** [n, classes], one-hot. */
  ys: tf.Tensor2D;
  /** Indices into the source's images. */
  indices: number[];
  size: number;
}

export interface ImageSourceOptions {
  height: number;
  width: number;
  channels: number; rank?: 3 | 4; // rank 3: the model's input has no channel axis ([batch, h, w], greyscale)
  normalization: Normalization;
  classCount: number;
  /** Shared between the training and validation sources. */
  cache?: InputCache;
  /** Called once for each image that fails to decode (it is left out from then on). */
  onBadImage?: (skip: SkippedFile) => void;
}

/** A list of dataset images served as batches of model inputs, decoded on demand. */
export class ImageSource {
  private readonly bad = new Set<number>();
  private readonly badList: SkippedFile[] = [];
  readonly pixelsPerImage: number;

  constructor(
    readonly images: readonly DatasetImage[],
    private readonly options: ImageSourceOptions,
  ) {
    this.pixelsPerImage = options.height * options.width * options.channels;
  }

  get length(): number {
    return this.images.length;
  }

  /** Stable identity of image i (the embedding cache's key). */
  key(i: number): string {
    return this.images[i].file;
  }

  label(i: number): number {
    return this.images[i].label;
  }

  /** Images met so far that failed to decode. */
  get badImages(): readonly SkippedFile[] {
    return this.badList;
  }

  isBad(i: number): boolean {
    return this.bad.has(i);
  }

  /** One image's input values, from the cache or decoded now; undefined if it cannot be decoded. */
  private async input(i: number): Promise<Float32Array | undefined> {
    const im = this.images[i];
    const cached = this.options.cache?.get(im.file);
    if (cached) return cached;
    let bytes: Uint8Array;
    try {
      bytes = await fs.promises.readFile(im.file);
    } catch (e) {
      this.markBad(i, { file: im.rel, reason: 'unreadable', detail: `cannot be read (${errnoText(e)})` });
      return undefined;
    }
    let t: tf.Tensor3D | undefined;
    try {
      const img = decodeImage(bytes, im.rel);
      t = toInputTensor(img, this.options.height, this.options.width, this.options.normalization, this.options.channels);
      const data = t.dataSync() as Float32Array;
      this.options.cache?.put(im.file, data);
      return data;
    } catch (e) {
      if (isEngineError(e) && e.code === 'bad-image') {
        this.markBad(i, { file: im.rel, reason: 'corrupt', detail: causeOf(e.message, im.rel) });
        return undefined;
      }
      throw e;
    } finally {
      t?.dispose();
    }
  }

  private markBad(i: number, skip: SkippedFile): void {
    if (this.bad.has(i)) return;
    this.bad.add(i);
    this.badList.push(skip);
    this.options.onBadImage?.(skip);
  }

  /** The batch of `indices` (images that fail to decode are left out); undefined if none decodes. */
  async load(indices: readonly number[]): Promise<ImageBatch | undefined> {
    const inputs = await Promise.all(indices.map((i) => (this.bad.has(i) ? Promise.resolve(undefined) : this.input(i))));
    const kept: number[] = [];
    const rows: Float32Array[] = [];
    inputs.forEach((d, k) => {
      if (d) {
        kept.push(indices[k]);
        rows.push(d);
      }
    });
    if (kept.length === 0) return undefined;
    const n = this.pixelsPerImage;
    const data = new Float32Array(kept.length * n);
    rows.forEach((r, k) => data.set(r, k * n));
    const { height, width, channels, classCount, rank } = this.options;
    return {
      xs: tf.tensor(data, rank === 3 ? [kept.length, height, width] : [kept.length, height, width, channels]),
      ys: oneHot(kept.map((i) => this.images[i].label), classCount),
      indices: kept,
      size: kept.length,
    };
  }

  /**
   * Batches over `order`, the next one read while the current one trains (the
   * file reads overlap; decoding is synchronous). The caller disposes each
   * batch's tensors.
   */
  async *batches(order: readonly number[], batchSize: number, signal?: AbortSignal): AsyncGenerator<ImageBatch> {
    const parts = chunks(order, batchSize);
    // Settled results: a prefetch that fails while the consumer is busy must
    // not become an unhandled rejection; it is rethrown when its turn comes.
    type Settled = { batch?: ImageBatch; error?: unknown };
    const start = (k: number): Promise<Settled> | undefined =>
      k < parts.length ? this.load(parts[k]).then((batch) => ({ batch }), (error: unknown) => ({ error })) : undefined;
    let pending = start(0);
    try {
      for (let k = 0; k < parts.length; k++) {
        throwIfAborted(signal);
        const settled = (await pending) as Settled;
        pending = start(k + 1);
        if (settled.error !== undefined) throw settled.error;
        if (settled.batch) yield settled.batch;
      }
    } finally {
      // The consumer stopped early (cancel, error): the prefetched batch must not leak.
      void pending?.then((s) => {
        s.batch?.xs.dispose();
        s.batch?.ys.dispose();
      });
    }
  }
}
