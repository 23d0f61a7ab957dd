/**
 * Linear CKA (centred kernel alignment, Kornblith et al. 2019) between two
 * layers' activations over the same n images, in float64 JavaScript.
 *
 * With X (n × p) and Y (n × q) the per-image activations flattened, and each
 * feature centred over the images, K = X Xᵀ and L = Y Yᵀ are n × n and
 *
 *   CKA = <K, L> / (||K|| ||L||)       (Frobenius inner product and norms)
 *
 * which equals ||Yᵀ X||² / (||Xᵀ X|| ||Yᵀ Y||). It is 1 when Y is X up to an
 * orthogonal transform and an isotropic scaling of the features, and it is
 * not fooled by p ≠ q. Working with the n × n Gram matrices costs n² p per
 * layer and needs no p × q matrix, which for a conv layer would not fit.
 *
 * Big layers are subsampled before this (see sampleIndices): the same spatial
 * positions, all channels, for both models.
 */
import { Rng } from '../random';

/** Centred Gram matrix of the rows of x (n × p, row-major): K[i][j] = <x_i − m, x_j − m>, m the mean row. */
export function centeredGram(x: ArrayLike<number>, n: number, p: number): Float64Array {
  if (x.length !== n * p) throw new RangeError(`centeredGram: ${x.length} values for ${n} × ${p}`);
  const mean = new Float64Array(p);
  for (let i = 0; i < n; i++) for (let k = 0; k < p; k++) mean[k] += x[i * p + k];
  for (let k = 0; k < p; k++) mean[k] /= n;
  const c = new Float64Array(n * p);
  for (let i = 0; i < n; i++) for (let k = 0; k < p; k++) c[i * p + k] = x[i * p + k] - mean[k];
  const g = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const oi = i * p;
    for (let j = 0; j <= i; j++) {
      const oj = j * p;
      let s = 0;
      for (let k = 0; k < p; k++) s += c[oi + k] * c[oj + k];
      g[i * n + j] = s;
      g[j * n + i] = s;
    }
  }
  return g;
}

function frobeniusDot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** CKA of two centred Gram matrices of the same n; null when either is zero (constant activations). */
export function ckaFromGrams(k: Float64Array, l: Float64Array): number | null {
  const kl = frobeniusDot(k, l);
  const kk = frobeniusDot(k, k);
  const ll = frobeniusDot(l, l);
  if (!(kk > 0) || !(ll > 0)) return null;
  const v = kl / Math.sqrt(kk * ll);
  // Both Grams are positive semi-definite, so <K, L> >= 0; clamp rounding.
  return Math.min(1, Math.max(0, v));
}

/**
 * Linear CKA of x (n × p) and y (n × q), row i of each being image i.
 * Null for fewer than 2 images or when a side does not vary over the images.
 */
export function linearCka(x: ArrayLike<number>, y: ArrayLike<number>, n: number, p: number, q: number): number | null {
  if (n < 2) return null;
  return ckaFromGrams(centeredGram(x, n, p), centeredGram(y, n, q));
}

/**
 * Which of a layer's flattened output values (batch dimension dropped) to
 * keep, at most `maxFeatures`; undefined to keep all. Feature maps [h, w, c]
 * keep every channel at a seeded random set of spatial positions (a regular
 * stride could alias with a periodic pattern in the image), so that an
 * orthogonal mix of channels stays an orthogonal mix; when even one position
 * has too many channels, and for other shapes, the kept values are evenly
 * spaced. Deterministic: both models get the same positions.
 */
export function sampleIndices(shape: readonly number[], maxFeatures: number, seed = 1): Int32Array | undefined {
  const total = shape.reduce((a, d) => a * d, 1);
  if (total <= maxFeatures) return undefined;
  const max = Math.max(1, Math.floor(maxFeatures));
  if (shape.length === 3 && shape[2] <= max) {
    const [h, w, c] = shape;
    const k = Math.max(1, Math.floor(max / c));
    const positions = new Rng(seed).shuffle(Array.from({ length: h * w }, (_, i) => i)).slice(0, k).sort((a, b) => a - b);
    const out = new Int32Array(positions.length * c);
    positions.forEach((pos, i) => {
      for (let ch = 0; ch < c; ch++) out[i * c + ch] = pos * c + ch;
    });
    return out;
  }
  const out = new Int32Array(max);
  for (let i = 0; i < max; i++) out[i] = Math.floor(((i + 0.5) * total) / max);
  return out;
}
