/** Reference matrices for the linear CKA tests: seeded low-rank features, random rotations, a plain matrix product. */
import { Rng } from '../../src/engine/random';

/** Seeded n × p values with a low-rank structure plus noise (like activations, not white noise). */
export function features(n: number, p: number, seed: number): Float64Array {
  const rng = new Rng(seed);
  const r = 3;
  const u = Array.from({ length: n * r }, () => rng.normal());
  const v = Array.from({ length: r * p }, () => rng.normal());
  const x = new Float64Array(n * p);
  for (let i = 0; i < n; i++) for (let k = 0; k < p; k++) {
    let s = 0.3 * rng.normal() + 2;
    for (let j = 0; j < r; j++) s += u[i * r + j] * v[j * p + k];
    x[i * p + k] = s;
  }
  return x;
}

/** A random p × p orthogonal matrix (Gram-Schmidt on a seeded Gaussian matrix), row-major. */
export function orthogonal(p: number, seed: number): Float64Array {
  const rng = new Rng(seed);
  const q = Array.from({ length: p }, () => Float64Array.from({ length: p }, () => rng.normal()));
  for (let i = 0; i < p; i++) {
    for (let j = 0; j < i; j++) {
      let d = 0;
      for (let k = 0; k < p; k++) d += q[i][k] * q[j][k];
      for (let k = 0; k < p; k++) q[i][k] -= d * q[j][k];
    }
    const norm = Math.sqrt(q[i].reduce((s, v) => s + v * v, 0));
    for (let k = 0; k < p; k++) q[i][k] /= norm;
  }
  const out = new Float64Array(p * p);
  q.forEach((row, i) => out.set(row, i * p));
  return out;
}

/** x (n × p) times m (p × q). */
export function matmul(x: Float64Array, m: Float64Array, n: number, p: number, q: number): Float64Array {
  const out = new Float64Array(n * q);
  for (let i = 0; i < n; i++) for (let k = 0; k < p; k++) {
    const v = x[i * p + k];
    for (let j = 0; j < q; j++) out[i * q + j] += v * m[k * q + j];
  }
  return out;
}
