/**
 * The on-disk embedding cache: one folder per (model file, dataset folder,
 * layer, preprocessing, image size, pooling) under
 * `<model folder>/.layerlens/embeddings/<key>/`, holding `manifest.json`
 * (the model's content hash, the layer, the preprocessing and every image's
 * path, size and mtime) and the vectors as little-endian float32 rows in the
 * manifest's order.
 *
 * Why next to the model and not in the dataset: embeddings belong to a model
 * (and change with it), while a dataset is shared by many models, may be
 * read-only or under version control, and is scanned by Layer Lens itself
 * (an extra folder inside a class folder would be read as images' sub-folder).
 * The model folder already holds Layer Lens's layerlens.json; the cache is a
 * hidden folder there, ignored by the model loader and the model's hash.
 *
 * The folder is made level by level and checked to be a real folder inside
 * the model's real folder (io/ownDir.ts: a `.layerlens` link is never
 * followed). When it cannot be used (a read-only model folder, a full disk, a
 * `.layerlens` that is a link), the cache lives in Layer Lens's fallback
 * folder instead (io/fallbackDir.ts: the extension's storage, or the user's
 * cache folder), keyed by the model file's real path, and the caller is
 * told why.
 *
 * Reuse: a row is reused when the image's path, size and mtime match and the
 * model hash, layer and preprocessing match; changed and new images are
 * computed; removed ones are dropped. Writes are atomic: the vectors go to a
 * new file first (`vectors-<random>.f32`), then the manifest that names it
 * replaces the old one, then older vector files are removed. A kill at any
 * moment leaves a manifest and the vectors it names.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { sweepStaleTemps, writeFileAtomic } from '../io/atomic';
import { fallbackRoot } from '../io/fallbackDir';
import { limits, rel, type ModelFiles } from '../io/files';
import { readRegularFile } from '../io/safeRead';
import { fsCauseOrMessage, isUnwritable } from '../io/fsErrors';
import { NotOurFolder, ownDir } from '../io/ownDir';
import type { EmbeddingKey } from '../../protocol/embed';

export const MANIFEST = 'manifest.json';
const VERSION = 1;

export interface ManifestFile {
  /** Relative to the dataset folder, "/"-separated. */
  path: string;
  size: number;
  mtimeMs: number;
  /** Class index, -1 for a flat folder. */
  label: number;
}

export interface EmbeddingManifest extends EmbeddingKey {
  version: number;
  createdBy: 'Layer Lens';
  /** sha256 of model.json and the weight data. */
  modelHash: string;
  /** model.json's file name (the folder may hold several models). */
  model: string;
  datasetDir: string;
  featureShape: number[];
  dim: number;
  dtype: 'float32';
  byteOrder: 'little';
  classes: string[] | null;
  vectorsFile: string;
  files: ManifestFile[];
  updated: string;
}

export interface StoredEmbeddings {
  manifest: EmbeddingManifest;
  vectors: Float32Array;
}

const hashMemo = new WeakMap<ModelFiles, string>();

/** sha256 (hex) of the model file's bytes and its weight data: what the embeddings depend on. */
export async function modelHash(files: ModelFiles): Promise<string> {
  const known = hashMemo.get(files);
  if (known) return known;
  const h = createHash('sha256');
  h.update(await readRegularFile(files.modelJsonPath, { shown: rel(files.modelJsonPath), maxBytes: 2 ** 31 - 1 }));
  const data = files.artifacts.weightData;
  const parts = data === undefined ? [] : Array.isArray(data) ? data : [data];
  for (const p of parts) h.update(new Uint8Array(p));
  const hex = h.digest('hex');
  hashMemo.set(files, hex);
  return hex;
}

/** Where one cache lives: `.layerlens/embeddings/<id>` in the model's real folder, else `<fallback>/embeddings/<model key>-<id>`. */
export interface CacheSlot {
  modelFolder: string;
  id: string;
  fallbackDir: string;
}

/** The cache slot for this model file, dataset and key. */
export function cacheSlot(files: ModelFiles, datasetDir: string, key: EmbeddingKey): CacheSlot {
  const abs = path.resolve(files.modelJsonPath);
  const id = createHash('sha256')
    .update(JSON.stringify({ model: path.basename(abs), dataset: path.resolve(datasetDir), layer: key.layer, normalization: key.normalization, imageSize: key.imageSize, pooling: key.pooling }))
    .digest('hex')
    .slice(0, 16);
  const modelKey = createHash('sha256').update(path.join(files.folder, path.basename(abs))).digest('hex').slice(0, 16);
  return { modelFolder: files.folder, id, fallbackDir: path.join(fallbackRoot(), 'embeddings', `${modelKey}-${id}`) };
}

const segments = (slot: CacheSlot) => ['.layerlens', 'embeddings', slot.id];

/** The stored embeddings of a slot (the model folder's, else the fallback's) and the folder they came from. */
export async function readCache(slot: CacheSlot, expect: { modelHash: string; key: EmbeddingKey }): Promise<{ stored?: StoredEmbeddings; dir: string }> {
  const own = await ownDir(slot.modelFolder, segments(slot), { create: false }).catch(() => undefined);
  const fromOwn = own ? await readStore(own, expect) : undefined;
  if (own && fromOwn) return { stored: fromOwn, dir: own };
  const fromFallback = fs.existsSync(slot.fallbackDir) ? await readStore(slot.fallbackDir, expect) : undefined;
  if (fromFallback) return { stored: fromFallback, dir: slot.fallbackDir };
  return { dir: own ?? path.join(slot.modelFolder, ...segments(slot)) };
}

/**
 * Writes the slot's cache in the model's folder, or, when that cannot be
 * written or is not ours, in the fallback folder; returns where, and why
 * when it was the fallback.
 */
export async function writeCache(slot: CacheSlot, manifest: Parameters<typeof writeStore>[1], vectors: Float32Array): Promise<{ dir: string; warning?: string }> {
  let why: string;
  try {
    const own = (await ownDir(slot.modelFolder, segments(slot), { create: true }))!;
    await writeStore(own, manifest, vectors);
    return { dir: own };
  } catch (e) {
    if (!(e instanceof NotOurFolder) && !isUnwritable(e)) throw e;
    why = e instanceof NotOurFolder ? e.message : `${rel(slot.modelFolder)} cannot be written (${fsCauseOrMessage(e)})`;
  }
  await fs.promises.mkdir(slot.fallbackDir, { recursive: true });
  await writeStore(slot.fallbackDir, manifest, vectors);
  return { dir: slot.fallbackDir, warning: `${why.replace(/\.$/, '')}; the embeddings are cached in ${slot.fallbackDir} instead.` };
}

function sameKey(m: EmbeddingManifest, key: EmbeddingKey): boolean {
  return m.layer === key.layer && m.normalization === key.normalization && m.pooling === key.pooling && m.imageSize[0] === key.imageSize[0] && m.imageSize[1] === key.imageSize[1];
}

/**
 * The stored embeddings in `dir` if they were made by the same model (hash)
 * with the same key; undefined when there are none, they belong to another
 * model version or key, or the files are damaged (then everything is
 * recomputed and the folder rewritten).
 */
export async function readStore(dir: string, expect: { modelHash: string; key: EmbeddingKey }): Promise<StoredEmbeddings | undefined> {
  // Ordinary files of ours only, read as io/safeRead.ts reads (a manifest.json linked to /proc/kmsg is no cache).
  const read = async (name: string, maxBytes: number) => {
    const p = path.join(dir, name);
    if (!(await fs.promises.lstat(p).catch(() => undefined))?.isFile()) return undefined;
    return readRegularFile(p, { shown: rel(p), maxBytes }).catch(() => undefined);
  };
  let manifest: EmbeddingManifest;
  try {
    const text = await read(MANIFEST, 512 * 1024 * 1024);
    if (!text) return undefined;
    manifest = JSON.parse(Buffer.from(text).toString('utf8')) as EmbeddingManifest;
  } catch {
    return undefined;
  }
  if (manifest?.version !== VERSION || manifest.modelHash !== expect.modelHash || !sameKey(manifest, expect.key)) return undefined;
  if (manifest.dtype !== 'float32' || manifest.byteOrder !== 'little' || !Array.isArray(manifest.files)) return undefined;
  if (typeof manifest.vectorsFile !== 'string' || path.basename(manifest.vectorsFile) !== manifest.vectorsFile) return undefined;
  const bytes = await read(manifest.vectorsFile, limits.maxWeightBytes);
  if (!bytes || bytes.length !== manifest.files.length * manifest.dim * 4) return undefined;
  const vectors = new Float32Array(manifest.files.length * manifest.dim);
  new Uint8Array(vectors.buffer).set(bytes);
  return { manifest, vectors };
}

/** Writes the manifest and its vectors (rows in `manifest.files` order), atomically, into a folder of ours (writeCache); returns the manifest as written. */
export async function writeStore(dir: string, manifest: Omit<EmbeddingManifest, 'vectorsFile' | 'version' | 'createdBy' | 'dtype' | 'byteOrder' | 'updated'>, vectors: Float32Array): Promise<EmbeddingManifest> {
  await sweepStaleTemps(dir);
  const vectorsFile = `vectors-${randomBytes(4).toString('hex')}.f32`;
  const full: EmbeddingManifest = { version: VERSION, createdBy: 'Layer Lens', ...manifest, dtype: 'float32', byteOrder: 'little', vectorsFile, updated: new Date().toISOString() };
  await writeFileAtomic(path.join(dir, vectorsFile), new Uint8Array(vectors.buffer, vectors.byteOffset, vectors.byteLength));
  await writeFileAtomic(path.join(dir, MANIFEST), JSON.stringify(full) + '\n');
  // Only ordinary files of ours (a link named like one is left alone).
  for (const name of await fs.promises.readdir(dir)) {
    if (!/^vectors-[0-9a-f]+\.f32$/.test(name) || name === vectorsFile) continue;
    const p = path.join(dir, name);
    if ((await fs.promises.lstat(p).catch(() => undefined))?.isFile()) await fs.promises.rm(p, { force: true });
  }
  return full;
}

/** Rows of a stored set by relative path, for reuse when size and mtime still match. */
export class StoredIndex {
  private readonly byPath = new Map<string, { file: ManifestFile; row: number }>();

  constructor(private readonly stored: StoredEmbeddings | undefined) {
    stored?.manifest.files.forEach((file, row) => this.byPath.set(file.path, { file, row }));
  }

  /** The stored row of `rel` if the file is unchanged, else undefined. */
  lookup(rel: string, size: number, mtimeMs: number): Float32Array | undefined {
    const hit = this.byPath.get(rel);
    if (!this.stored || !hit || hit.file.size !== size || hit.file.mtimeMs !== mtimeMs) return undefined;
    const d = this.stored.manifest.dim;
    return this.stored.vectors.subarray(hit.row * d, (hit.row + 1) * d);
  }

  get size(): number {
    return this.byPath.size;
  }

  paths(): IterableIterator<string> {
    return this.byPath.keys();
  }
}

/** Size and mtime of a file (undefined when it cannot be read). */
export async function fileStamp(file: string): Promise<{ size: number; mtimeMs: number } | undefined> {
  try {
    const st = await fs.promises.stat(file);
    return { size: st.size, mtimeMs: st.mtimeMs };
  } catch {
    return undefined;
  }
}
