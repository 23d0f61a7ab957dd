/**
 * UMAP to 2-D with umap-js, seeded and cancellable. The embeddings are first
 * scaled to unit length (so that Euclidean distance ranks neighbours as
 * cosine similarity does) and reduced to at most 50 dimensions by PCA, as
 * umap-learn's documentation recommends for high-dimensional inputs: the
 * neighbour search then runs on 50 numbers per point instead of 1,024.
 * Epochs follow umap-learn: 500 below 10,000 points, 200 from there on.
 */
import { UMAP } from 'umap-js';
import { CancelledError } from '../errors';
import { Rng } from '../random';
import { normalizeRows } from './linalg';
import { pca } from './pca';

export interface UmapOptions {
  seed?: number;
  nNeighbors?: number;
  minDist?: number;
  nEpochs?: number;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

/** n x 2 positions, row-major. */
export async function umap2d(vectors: Float32Array, n: number, dim: number, o: UmapOptions = {}): Promise<Float32Array> {
  if (n < 4) return new Float32Array(n * 2);
  const seed = o.seed ?? 7;
  const unit = normalizeRows(vectors, dim);
  let reduced = unit;
  let d = dim;
  if (dim > 50) {
    // A few power rounds are plenty here (randomised-SVD style): the neighbour graph needs the main directions, not 7 digits.
    reduced = pca(unit, n, dim, 50, { seed, maxIterations: 6, tolerance: 1e-4 }).projection;
    d = 50;
  }
  const rows: number[][] = new Array(n);
  for (let i = 0; i < n; i++) rows[i] = Array.from(reduced.subarray(i * d, (i + 1) * d));
  const rng = new Rng(seed);
  const umap = new UMAP({
    nComponents: 2,
    nNeighbors: Math.max(2, Math.min(o.nNeighbors ?? 15, n - 1)),
    minDist: o.minDist ?? 0.1,
    nEpochs: o.nEpochs ?? (n >= 10000 ? 200 : 500),
    random: () => rng.next(),
  });
  const epochs = umap.initializeFit(rows);
  for (let e = 0; e < epochs; e++) {
    umap.step();
    if (e % 10 === 9 || e === epochs - 1) {
      o.onProgress?.(e + 1, epochs);
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (o.signal?.aborted) throw new CancelledError('The UMAP projection');
    }
  }
  const emb = umap.getEmbedding();
  const out = new Float32Array(n * 2);
  emb.forEach((p, i) => {
    out[i * 2] = p[0];
    out[i * 2 + 1] = p[1];
  });
  return out;
}
