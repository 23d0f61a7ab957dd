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
import { writeFileAtomic } from '../io/atomic';
import type { ModelFiles } from '../io/files';
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
  h.update(await fs.promises.readFile(files.modelJsonPath));
  const data = files.artifacts.weightData;
  const parts = data === undefined ? [] : Array.isArray(data) ? data : [data];
  for (const p of parts) h.update(new Uint8Array(p));
  const hex = h.digest('hex');
  hashMemo.set(files, hex);
  return hex;
}

/** `<model folder>/.layerlens/embeddings/<16 hex>` for this model file, dataset and key. */
export function cacheDirFor(modelJsonPath: string, datasetDir: string, key: EmbeddingKey): string {
  const abs = path.resolve(modelJsonPath);
  const id = createHash('sha256')
    .update(JSON.stringify({ model: path.basename(abs), dataset: path.resolve(datasetDir), layer: key.layer, normalization: key.normalization, imageSize: key.imageSize, pooling: key.pooling }))
    .digest('hex')
    .slice(0, 16);
  return path.join(path.dirname(abs), '.layerlens', 'embeddings', id);
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
  let manifest: EmbeddingManifest;
  try {
    manifest = JSON.parse(await fs.promises.readFile(path.join(dir, MANIFEST), 'utf8')) as EmbeddingManifest;
  } catch {
    return undefined;
  }
  if (manifest?.version !== VERSION || manifest.modelHash !== expect.modelHash || !sameKey(manifest, expect.key)) return undefined;
  if (manifest.dtype !== 'float32' || manifest.byteOrder !== 'little' || !Array.isArray(manifest.files)) return undefined;
  if (typeof manifest.vectorsFile !== 'string' || path.basename(manifest.vectorsFile) !== manifest.vectorsFile) return undefined;
  let bytes: Buffer;
  try {
    bytes = await fs.promises.readFile(path.join(dir, manifest.vectorsFile));
  } catch {
    return undefined;
  }
  if (bytes.length !== manifest.files.length * manifest.dim * 4) return undefined;
  const vectors = new Float32Array(manifest.files.length * manifest.dim);
  new Uint8Array(vectors.buffer).set(bytes);
  return { manifest, vectors };
}

/** Writes the manifest and its vectors (rows in `manifest.files` order), atomically; returns the manifest as written. */
export async function writeStore(dir: string, manifest: Omit<EmbeddingManifest, 'vectorsFile' | 'version' | 'createdBy' | 'dtype' | 'byteOrder' | 'updated'>, vectors: Float32Array): Promise<EmbeddingManifest> {
  await fs.promises.mkdir(dir, { recursive: true });
  const vectorsFile = `vectors-${randomBytes(4).toString('hex')}.f32`;
  const full: EmbeddingManifest = { version: VERSION, createdBy: 'Layer Lens', ...manifest, dtype: 'float32', byteOrder: 'little', vectorsFile, updated: new Date().toISOString() };
  await writeFileAtomic(path.join(dir, vectorsFile), new Uint8Array(vectors.buffer, vectors.byteOffset, vectors.byteLength));
  await writeFileAtomic(path.join(dir, MANIFEST), JSON.stringify(full) + '\n');
  for (const name of await fs.promises.readdir(dir)) {
    if (/^vectors-[0-9a-f]+\.f32$/.test(name) && name !== vectorsFile) await fs.promises.rm(path.join(dir, name), { force: true });
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
