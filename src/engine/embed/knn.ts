/**
 * Nearest neighbours by cosine similarity in the original embedding space
 * (not on the 2-D map, whose distances UMAP and PCA distort). Exact: one dot
 * product per row against unit rows computed once per set, then a partial
 * selection of the best k.
 */
import { normalizeRows } from './linalg';

export interface Scored {
  index: number;
  similarity: number;
}

/** Unit rows, kept with a set so that each query is one pass of dot products. */
export class CosineIndex {
  readonly unit: Float32Array;

  constructor(
    vectors: Float32Array,
    readonly dim: number,
  ) {
    this.unit = normalizeRows(vectors, dim);
  }

  get size(): number {
    return this.dim > 0 ? this.unit.length / this.dim : 0;
  }

  /** The k rows most similar to row `query` (itself excluded), best first; ties by index. */
  neighbors(query: number, k: number): Scored[] {
    const d = this.dim;
    const u = this.unit;
    const q = u.subarray(query * d, (query + 1) * d);
    const best: Scored[] = [];
    for (let r = 0; r < this.size; r++) {
      if (r === query) continue;
      let s = 0;
      const o = r * d;
      for (let j = 0; j < d; j++) s += q[j] * u[o + j];
      if (best.length < k || s > best[best.length - 1].similarity) {
        let i = best.length < k ? best.length : best.length - 1;
        if (best.length < k) best.push({ index: r, similarity: s });
        // Insertion into the sorted list (k is small).
        while (i > 0 && best[i - 1].similarity < s) {
          best[i] = best[i - 1];
          i--;
        }
        best[i] = { index: r, similarity: s };
      }
    }
    return best;
  }
}
