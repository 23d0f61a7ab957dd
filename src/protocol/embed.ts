/**
 * Embeddings, the latent-space map and the freeze-or-fine-tune advisor as
 * they travel between the engine (worker or CLI), the host and the webview.
 * Plain data and pure formatting; no tfjs, no Node, no vscode, no DOM.
 */
import type { Normalization } from './model';

export type ProjectionMethod = 'pca' | 'umap';

/** Progress of an embedding job: files scanned, then images embedded, then the projection. */
export type EmbedProgress =
  | { type: 'scan'; files: number }
  | { type: 'embed'; done: number; total: number; reused: number }
  | { type: 'project'; method: ProjectionMethod; done: number; total: number }
  | { type: 'probe'; message: string };

/** What an embedding request names: a model, a folder of images, and optionally the layer and preprocessing. */
export interface EmbedParams {
  modelPath: string;
  datasetDir: string;
  /** Layer path; default: the last feature layer. */
  layer?: string;
  /** Default: the model's metadata, else [0, 1]. */
  normalization?: Normalization;
}

/** What identifies one set of embeddings (the cache key and what the manifest records). */
export interface EmbeddingKey {
  /** Layer path as in the layer table. */
  layer: string;
  normalization: Normalization;
  /** [height, width] the images were resized to. */
  imageSize: [number, number];
  /** How a feature map was turned into a vector: kept whole, or averaged over space (large maps). */
  pooling: 'none' | 'mean';
}

/** Summary of a computed (or reused) set of embeddings. */
export interface EmbeddingSummary extends EmbeddingKey {
  /** Worker-side handle for follow-up requests (neighbours, thumbnails, export). */
  setId: string;
  modelPath: string;
  datasetDir: string;
  /** The on-disk cache folder. */
  cacheDir: string;
  /** Values per embedding. */
  dim: number;
  /** One embedding's shape as the layer outputs it (before pooling). */
  featureShape: number[];
  count: number;
  /** Class names for folder-per-class datasets; null for a flat folder. */
  classes: string[] | null;
  /** Images per class (same order as classes). */
  counts: number[];
  computed: number;
  reused: number;
  dropped: number;
  /** Images that could not be decoded, relative paths with the reason. */
  skipped: { file: string; detail: string }[];
  /** What the folder scan decided that the user should know (class folders merged). */
  warnings?: string[];
  seconds: number;
}

/** The 2-D map of a set: positions, labels and paths, index-aligned. */
export interface LatentMap {
  summary: EmbeddingSummary;
  method: ProjectionMethod;
  /** x0, y0, x1, y1, … (n * 2). */
  xy: Float32Array;
  /** Class index per point; -1 for a flat folder. */
  labels: Int32Array;
  /** Paths relative to the dataset folder, "/"-separated. */
  paths: string[];
  /** PCA: the fraction of variance each axis explains. */
  explained?: [number, number];
  projectionMs: number;
}

export interface Neighbor {
  index: number;
  path: string;
  label: number;
  /** Cosine similarity in the original embedding space. */
  similarity: number;
}

export interface Thumbnail {
  index: number;
  path: string;
  /** Absolute path (for openImage). */
  absPath: string;
  /** data:image/png;base64,… */
  dataUrl: string;
}

export interface TsvExport {
  vectors: string;
  metadata: string;
  rows: number;
}

/** Categorical colours readable on light and dark backgrounds (mid luminance, Tableau-like). */
export const latentPalette = ['#4e79a7', '#f28e2b', '#e15759', '#59a14f', '#b07aa1', '#9c755f', '#5fa8a3', '#c9a227', '#ff7fa0', '#8c8c8c'];

/** What the Latent tab finds when it opens: a map the host was asked to show (the Compute Embeddings command), if any. */
export interface LatentState {
  pending: { datasetDir: string; layerPath: string | null } | null;
}

/** One line for the log about a computed embedding set. */
export function embeddingSummaryLine(s: EmbeddingSummary, show: (p: string) => string): string {
  const classes = s.classes ? `${s.classes.length} classes (${s.classes.map((c, i) => `${c} ${s.counts[i]}`).slice(0, 12).join(', ')})` : 'no classes (a flat folder)';
  return `Embeddings of ${show(s.datasetDir)} at ${s.layer}: ${s.count} images, ${classes}, ${s.dim} values each${s.pooling === 'mean' ? ' (feature map averaged over space)' : ''}; ${s.computed} computed, ${s.reused} reused, ${s.dropped} dropped in ${s.seconds.toFixed(1)} s; cache ${show(s.cacheDir)}`;
}

/** An embedding job's progress as a notification's message. */
export function describeEmbedProgress(p: EmbedProgress): string {
  switch (p.type) {
    case 'scan':
      return `${p.files} images found`;
    case 'embed':
      return `${p.done}/${p.total} images${p.reused ? ` (${p.reused} from the cache)` : ''}`;
    case 'project':
      return `${p.method.toUpperCase()} ${Math.round((p.done / p.total) * 100)}%`;
    case 'probe':
      return p.message;
  }
}
