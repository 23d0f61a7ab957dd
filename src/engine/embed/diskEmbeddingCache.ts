/**
 * The on-disk embedding cache as a fine-tune uses it (the run's rows live in
 * train/memoryEmbeddingCache.ts): with a frozen backbone,
 * the outputs at the cut layer are exactly the embeddings that `Compute
 * Embeddings` stores for that layer (same model hash, layer, preprocessing,
 * image size, no pooling). Before training, the rows of unchanged images are
 * loaded from disk into the run's in-memory MemoryEmbeddingCache, so the backbone
 * runs only for images it has never seen; after a successful run, rows it
 * computed are written back.
 */
import * as tf from '@tensorflow/tfjs';
import * as path from 'node:path';
import type { EmbeddingKey } from '../../protocol/embed';
import type { Normalization } from '../../protocol/model';
import type { ModelFiles } from '../io/files';
import { messageOf } from '../errors';
import type { MemoryEmbeddingCache } from '../train/memoryEmbeddingCache';
import { poolingFor } from './compute';
import { cacheSlot, fileStamp, modelHash, readCache, StoredIndex, writeCache, type ManifestFile } from './store';

export interface DiskEmbeddings {
  /** Rows read from disk into the cache. */
  loaded: number;
  /** Writes rows the run computed (in the fallback folder when the model's cannot be written); returns a warning instead of throwing (a finished run must not fail on its cache). */
  save(): Promise<string | undefined>;
}

export interface DiskEmbeddingsOptions {
  files: ModelFiles;
  datasetDir: string;
  classes: string[];
  images: readonly { file: string; rel: string; label: number }[];
  layer: string;
  normalization: Normalization;
  imageSize: [number, number];
  featureShape: number[];
  cache: MemoryEmbeddingCache;
}

/** Loads what the disk cache has for this run into `cache`; undefined when the layer's outputs are too large to store whole. */
export async function openDiskEmbeddings(o: DiskEmbeddingsOptions): Promise<DiskEmbeddings | undefined> {
  if (poolingFor(o.featureShape) !== 'none') return undefined;
  const key: EmbeddingKey = { layer: o.layer, normalization: o.normalization, imageSize: o.imageSize, pooling: 'none' };
  const dim = o.featureShape.reduce((a, b) => a * b, 1);
  const hash = await modelHash(o.files);
  const slot = cacheSlot(o.files, o.datasetDir, key);
  const { stored } = await readCache(slot, { modelHash: hash, key });
  const index = new StoredIndex(stored && stored.manifest.dim === dim ? stored : undefined);
  const stamps = await Promise.all(o.images.map((im) => fileStamp(im.file)));
  const fromDisk = new Set<string>();
  const found: { file: string; row: Float32Array }[] = [];
  o.images.forEach((im, i) => {
    const st = stamps[i];
    const row = st ? index.lookup(im.rel, st.size, st.mtimeMs) : undefined;
    if (row) found.push({ file: im.file, row });
  });
  if (found.length > 0) {
    const data = new Float32Array(found.length * dim);
    found.forEach((f, r) => data.set(f.row, r * dim));
    const t = tf.tensor(data, [found.length, ...o.featureShape]);
    o.cache.put(found.map((f) => f.file), t);
    t.dispose();
    for (const f of found) fromDisk.add(f.file);
  }
  return {
    loaded: fromDisk.size,
    save: async () => {
      const rows = new Map<string, Float32Array>(o.cache.entries());
      const kept = o.images.map((im, i) => ({ im, st: stamps[i], row: rows.get(im.file) })).filter((x) => x.st && x.row);
      const computedNew = kept.some((x) => !fromDisk.has(x.im.file));
      if (!computedNew && stored && kept.length === index.size) return undefined;
      if (kept.length === 0) return undefined;
      const vectors = new Float32Array(kept.length * dim);
      kept.forEach((x, r) => vectors.set(x.row!, r * dim));
      const files: ManifestFile[] = kept.map((x) => ({ path: x.im.rel, size: x.st!.size, mtimeMs: x.st!.mtimeMs, label: x.im.label }));
      try {
        const written = await writeCache(slot, { ...key, modelHash: hash, model: path.basename(o.files.modelJsonPath), datasetDir: path.resolve(o.datasetDir), featureShape: o.featureShape, dim, classes: o.classes, files }, vectors);
        return written.warning;
      } catch (e) {
        return `The backbone's outputs could not be saved to the embedding cache (${messageOf(e)}); the next run computes them again.`;
      }
    },
  };
}
