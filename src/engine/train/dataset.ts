/**
 * Image datasets on disk, one sub-folder per class (the layout of Keras's
 * image_dataset_from_directory and Teachable Machine's export of samples):
 * the scan (datasetScan.ts) with a report of every file left out, a seeded
 * per-class train/validation split, and batches decoded lazily, so that a
 * dataset larger than memory still trains. A file that passed the scan but
 * still fails to decode is left out when it is met, with a warning, and
 * training goes on.
 */
import * as tf from '@tensorflow/tfjs';
import { CancelledError, isEngineError } from '../errors';
import { decodeImage, imageLimits, toInputTensor } from '../image';
import { readRegularFile } from '../io/safeRead';
import { Rng } from '../random';
import { causeOf, skipFor, type DatasetImage, type DatasetScan } from './datasetScan';
import type { Normalization } from '../../protocol/model';
import type { SkippedFile } from '../../protocol/train';

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

export { scanDataset, type DatasetImage, type DatasetScan } from './datasetScan';

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new CancelledError('Fine-tuning');
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
      bytes = await readRegularFile(im.file, { shown: im.rel, maxBytes: imageLimits.maxFileBytes });
    } catch (e) {
      this.markBad(i, skipFor(e, im.rel));
      return undefined;
    }
    let t: tf.Tensor3D | undefined;
    try {
      // Decoded once, reduced to about the input size as it is decoded (a large PNG never whole in memory).
      const img = decodeImage(bytes, im.rel, { quote: !im.outside, fit: () => ({ height: this.options.height, width: this.options.width }) });
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
