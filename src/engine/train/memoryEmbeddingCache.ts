/**
 * The in-memory embedding cache of one fine-tune run (its on-disk
 * counterpart, shared with Compute Embeddings, is embed/diskEmbeddingCache.ts).
 * Embeddings (a model's output at some layer) kept per image, so that a frozen
 * backbone runs once per image instead of once per image per epoch. Training a
 * head on a frozen backbone then costs the head's work alone after the first
 * epoch.
 *
 * Rows live in one growing Float32Array outside the tfjs backend (plain JS
 * memory: no wasm heap pressure, and easy to write to disk later), keyed by a
 * string the caller chooses (the image's path for datasets).
 */
import * as tf from '@tensorflow/tfjs';
import { EngineError } from '../errors';
import { chunks, oneHot, type ImageSource } from './dataset';
import type { Batch } from './loop';

export class MemoryEmbeddingCache {
  readonly featureSize: number;
  private rows = new Float32Array(0);
  private count = 0;
  private readonly index = new Map<string, number>();

  /** `featureShape` is one embedding's shape, without the batch dimension. */
  constructor(readonly featureShape: readonly number[]) {
    this.featureSize = featureShape.reduce((a, b) => a * b, 1);
  }

  get size(): number {
    return this.count;
  }

  get bytes(): number {
    return this.count * this.featureSize * 4;
  }

  has(key: string): boolean {
    return this.index.has(key);
  }

  /** Stores row i of `features` ([keys.length, ...featureShape]) under keys[i]. */
  put(keys: readonly string[], features: tf.Tensor): void {
    const expect = [keys.length, ...this.featureShape];
    if (features.shape.length !== expect.length || features.shape.some((d, i) => d !== expect[i])) {
      throw new EngineError('internal', `embedding cache: features of shape [${features.shape.join(', ')}] where [${expect.join(', ')}] was expected.`);
    }
    const values = features.dataSync();
    const n = this.featureSize;
    keys.forEach((key, i) => {
      let row = this.index.get(key);
      if (row === undefined) {
        row = this.count++;
        this.index.set(key, row);
        this.grow(this.count * n);
      }
      this.rows.set(values.subarray(i * n, (i + 1) * n), row * n);
    });
  }

  private grow(needed: number): void {
    if (needed <= this.rows.length) return;
    const next = new Float32Array(Math.max(needed, this.rows.length * 2, 1024));
    next.set(this.rows);
    this.rows = next;
  }

  /** The embeddings of `keys` as one tensor [keys.length, ...featureShape]; every key must be present. */
  gather(keys: readonly string[]): tf.Tensor {
    const n = this.featureSize;
    const out = new Float32Array(keys.length * n);
    keys.forEach((key, i) => {
      const row = this.index.get(key);
      if (row === undefined) throw new EngineError('internal', `embedding cache: no entry for ${key}.`);
      out.set(this.rows.subarray(row * n, (row + 1) * n), i * n);
    });
    return tf.tensor(out, [keys.length, ...this.featureShape]);
  }

  /** Every entry, in insertion order (for writing the cache somewhere). */
  *entries(): Generator<[string, Float32Array]> {
    const n = this.featureSize;
    for (const [key, row] of this.index) yield [key, this.rows.subarray(row * n, (row + 1) * n)];
  }

  clear(): void {
    this.rows = new Float32Array(0);
    this.count = 0;
    this.index.clear();
  }
}

/**
 * Runs `embed` once: a tfjs function inside tf.tidy, or an asynchronous one
 * (an ONNX backbone runs in ONNX Runtime, which answers with a promise).
 */
async function embedOnce(embed: (xs: tf.Tensor) => tf.Tensor | Promise<tf.Tensor>, xs: tf.Tensor): Promise<tf.Tensor> {
  let pending: Promise<tf.Tensor> | undefined;
  const now = tf.tidy(() => {
    const r = embed(xs);
    if (r instanceof Promise) {
      pending = r;
      return undefined;
    }
    return r;
  });
  return pending ? await pending : now!;
}

/**
 * Batches of embeddings for `order` (indices into `source`), in the same
 * batches the images would form: a batch whose embeddings are all cached is
 * read from the cache; otherwise its images are loaded and run through
 * `embed` (which must not train: it is the frozen part), and the result is
 * stored. Images that fail to decode are left out, as in the image batches.
 * `cachedBatchSize` lets a pass that does not train (validation) read the
 * cache in bigger batches once everything is in it.
 */
export async function* embeddingBatches(
  source: ImageSource,
  order: readonly number[],
  batchSize: number,
  cache: MemoryEmbeddingCache,
  embed: (xs: tf.Tensor) => tf.Tensor | Promise<tf.Tensor>,
  classCount: number,
  cachedBatchSize = batchSize,
): AsyncGenerator<Batch> {
  const allCached = order.every((i) => source.isBad(i) || cache.has(source.key(i)));
  for (const part of chunks(order, allCached ? Math.max(batchSize, cachedBatchSize) : batchSize)) {
    const usable = part.filter((i) => !source.isBad(i));
    if (usable.length === 0) continue;
    if (usable.every((i) => cache.has(source.key(i)))) {
      yield { xs: cache.gather(usable.map((i) => source.key(i))), ys: oneHot(usable.map((i) => source.label(i)), classCount), size: usable.length, indices: usable };
      continue;
    }
    const images = await source.load(usable);
    if (!images) continue;
    let features: tf.Tensor;
    try {
      features = await embedOnce(embed, images.xs);
    } catch (e) {
      images.ys.dispose();
      throw e;
    } finally {
      images.xs.dispose();
    }
    cache.put(images.indices.map((i) => source.key(i)), features);
    yield { xs: features, ys: images.ys, size: images.size, indices: images.indices };
  }
}
