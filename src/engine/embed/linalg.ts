/**
 * Small dense linear algebra in plain JS for the embedding tools: the
 * eigen-decomposition of a small symmetric matrix (cyclic Jacobi), modified
 * Gram-Schmidt, and row normalisation. Big products go through tfjs.
 */

/**
 * Eigenvalues (descending) and eigenvectors (columns of `vectors`, m x m,
 * row-major) of the symmetric m x m matrix `a` (row-major; not modified).
 * Cyclic Jacobi rotations to a relative off-diagonal norm below 1e-14:
 * exact enough and simple for the m <= 64 matrices used here.
 */
export function symmetricEigen(a: ArrayLike<number>, m: number): { values: Float64Array; vectors: Float64Array } {
  const A = Float64Array.from(a);
  const V = new Float64Array(m * m);
  for (let i = 0; i < m; i++) V[i * m + i] = 1;
  let norm = 0;
  for (let i = 0; i < m * m; i++) norm += A[i] * A[i];
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < m; p++) for (let q = p + 1; q < m; q++) off += A[p * m + q] * A[p * m + q];
    if (off <= 1e-28 * norm || off === 0) break;
    for (let p = 0; p < m; p++) {
      for (let q = p + 1; q < m; q++) {
        const apq = A[p * m + q];
        if (apq === 0) continue;
        const app = A[p * m + p];
        const aqq = A[q * m + q];
        const theta = (aqq - app) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < m; k++) {
          const akp = A[k * m + p];
          const akq = A[k * m + q];
          A[k * m + p] = c * akp - s * akq;
          A[k * m + q] = s * akp + c * akq;
        }
        for (let k = 0; k < m; k++) {
          const apk = A[p * m + k];
          const aqk = A[q * m + k];
          A[p * m + k] = c * apk - s * aqk;
          A[q * m + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < m; k++) {
          const vkp = V[k * m + p];
          const vkq = V[k * m + q];
          V[k * m + p] = c * vkp - s * vkq;
          V[k * m + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: m }, (_, i) => i).sort((i, j) => A[j * m + j] - A[i * m + i] || i - j);
  const values = Float64Array.from(order, (i) => A[i * m + i]);
  const vectors = new Float64Array(m * m);
  order.forEach((src, dst) => {
    for (let k = 0; k < m; k++) vectors[k * m + dst] = V[k * m + src];
  });
  return { values, vectors };
}

/**
 * Orthonormalises the p columns (p <= d) of the d x p matrix `w` (row-major)
 * in place by modified Gram-Schmidt, twice for stability. A column that
 * vanishes (nothing left of it after the earlier columns are taken out: the
 * data has fewer directions than p, as 8-dimensional embeddings of a few
 * images do) is replaced by the first unit axis that, made orthogonal to the
 * earlier columns, keeps at least half its length (else the one that keeps
 * most). (It used to be replaced by a
 * unit axis as is, which is not orthogonal to the others: the Ritz values
 * then counted one direction twice, and PCA reported an axis explaining
 * 199.6% of the variance.)
 */
export function orthonormalizeColumns(w: Float64Array, d: number, p: number): void {
  const project = (j: number) => {
    for (let i = 0; i < j; i++) {
      let dot = 0;
      for (let k = 0; k < d; k++) dot += w[k * p + i] * w[k * p + j];
      for (let k = 0; k < d; k++) w[k * p + j] -= dot * w[k * p + i];
    }
  };
  const norm = (j: number) => {
    let n = 0;
    for (let k = 0; k < d; k++) n += w[k * p + j] * w[k * p + j];
    return Math.sqrt(n);
  };
  for (let pass = 0; pass < 2; pass++) {
    for (let j = 0; j < p; j++) {
      const before = norm(j);
      project(j);
      let n = norm(j);
      if (!(n > 1e-10 * before) || n < 1e-300) {
        // Vanished: the first axis with at least half its length outside the earlier columns, else the one with most (one has some while j < d).
        let best = 0;
        let bestNorm = -1;
        for (let axis = 0; axis < d && bestNorm <= 0.5; axis++) {
          for (let k = 0; k < d; k++) w[k * p + j] = k === axis ? 1 : 0;
          project(j);
          project(j);
          n = norm(j);
          if (n > bestNorm) [best, bestNorm] = [axis, n];
        }
        for (let k = 0; k < d; k++) w[k * p + j] = k === best ? 1 : 0;
        project(j);
        project(j);
        n = norm(j);
      }
      for (let k = 0; k < d; k++) w[k * p + j] /= n;
    }
  }
}

/** Rows scaled to unit length (zero rows stay zero), as a new array. */
export function normalizeRows(vectors: Float32Array, dim: number): Float32Array {
  const out = new Float32Array(vectors.length);
  for (let r = 0; r * dim < vectors.length; r++) {
    let s = 0;
    for (let k = 0; k < dim; k++) s += vectors[r * dim + k] * vectors[r * dim + k];
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let k = 0; k < dim; k++) out[r * dim + k] = vectors[r * dim + k] * inv;
  }
  return out;
}
