/**
 * The advisor's measurements on cached embeddings at the last feature layer:
 * how well the frozen backbone already separates the new classes. The
 * decision itself is the pure rule adviseFreeze (advisorRule.ts).
 *
 * - Linear probe: multinomial logistic regression on standardised
 *   embeddings, trained full-batch (Adam, 300 steps, L2 1e-3, zero start: the
 *   problem is convex, so the result does not depend on a random start) on a
 *   seeded per-class 70/30 split; its held-out accuracy, corrected for chance,
 *   is the similarity.
 * - Silhouette (cosine distance) on a seeded sample of at most 1,000 points.
 * - Between-class over within-class variance (traces of the scatter matrices).
 */
import * as tf from '@tensorflow/tfjs';
import { EngineError } from '../errors';
import { Rng } from '../random';
import { deriveSeed } from '../train/dataset';
import { normalizeRows } from './linalg';

export interface ProbeResult {
  accuracy: number;
  chance: number;
  trainSize: number;
  testSize: number;
}

/** Seeded per-class split: about `testFraction` of each class held out (at least one when the class has 2+). */
export function probeSplit(labels: ArrayLike<number>, classCount: number, seed: number, testFraction = 0.3): { train: number[]; test: number[] } {
  const train: number[] = [];
  const test: number[] = [];
  for (let c = 0; c < classCount; c++) {
    const items: number[] = [];
    for (let i = 0; i < labels.length; i++) if (labels[i] === c) items.push(i);
    new Rng(deriveSeed(seed, 'probe', c)).shuffle(items);
    let nTest = Math.round(items.length * testFraction);
    if (items.length >= 2) nTest = Math.max(1, Math.min(nTest, items.length - 1));
    else nTest = 0;
    test.push(...items.slice(0, nTest));
    train.push(...items.slice(nTest));
  }
  return { train: train.sort((a, b) => a - b), test: test.sort((a, b) => a - b) };
}

function gatherRows(vectors: Float32Array, dim: number, rows: number[]): Float32Array {
  const out = new Float32Array(rows.length * dim);
  rows.forEach((r, i) => out.set(vectors.subarray(r * dim, (r + 1) * dim), i * dim));
  return out;
}

/** Held-out accuracy of a linear classifier on the embeddings. */
export function linearProbe(vectors: Float32Array, dim: number, labels: ArrayLike<number>, classCount: number, seed: number, steps = 300): ProbeResult {
  if (classCount < 2) throw new EngineError('bad-dataset', 'a linear probe needs at least 2 classes.');
  const { train, test } = probeSplit(labels, classCount, seed);
  const chance = 1 / classCount;
  if (test.length === 0 || train.length === 0) return { accuracy: chance, chance, trainSize: train.length, testSize: test.length };
  const xTrain = gatherRows(vectors, dim, train);
  const xTest = gatherRows(vectors, dim, test);
  const yTrain = Int32Array.from(train, (i) => labels[i]);
  const yTest = Int32Array.from(test, (i) => labels[i]);
  const w = tf.variable(tf.zeros([dim, classCount]));
  const b = tf.variable(tf.zeros([classCount]));
  const opt = tf.train.adam(0.05);
  try {
    const accuracy = tf.tidy(() => {
      const x = tf.tensor2d(xTrain, [train.length, dim]);
      const { mean, variance } = tf.moments(x, 0);
      const std = tf.add(tf.sqrt(variance), 1e-6);
      const xs = tf.div(tf.sub(x, mean), std);
      const ys = tf.oneHot(tf.tensor1d(yTrain, 'int32'), classCount);
      for (let s = 0; s < steps; s++) {
        opt.minimize(() => tf.add(tf.losses.softmaxCrossEntropy(ys, tf.add(tf.matMul(xs, w), b)), tf.mul(1e-3, tf.sum(tf.square(w)))) as tf.Scalar, false, [w, b]);
      }
      const xt = tf.div(tf.sub(tf.tensor2d(xTest, [test.length, dim]), mean), std);
      const pred = tf.argMax(tf.add(tf.matMul(xt, w), b), 1).dataSync();
      let right = 0;
      pred.forEach((p, i) => (right += p === yTest[i] ? 1 : 0));
      return right / test.length;
    });
    return { accuracy, chance, trainSize: train.length, testSize: test.length };
  } finally {
    opt.dispose();
    w.dispose();
    b.dispose();
  }
}

/** (acc - chance) / (1 - chance), clamped to [0, 1]. */
export function chanceCorrected(accuracy: number, chance: number): number {
  // Rounded to 3 decimals, so that the report's figure and its class agree (2/3 right of 3 classes is 0.5, not 0.4999…).
  return chance >= 1 ? 0 : Math.max(0, Math.min(1, Math.round(((accuracy - chance) / (1 - chance)) * 1000) / 1000));
}

/** Mean silhouette with cosine distance on a seeded sample of at most `sample` points. */
export function silhouette(vectors: Float32Array, dim: number, labels: ArrayLike<number>, classCount: number, seed: number, sample = 1000): number {
  const n = labels.length;
  let rows = Array.from({ length: n }, (_, i) => i);
  if (n > sample) rows = new Rng(deriveSeed(seed, 'silhouette')).shuffle(rows).slice(0, sample).sort((a, b) => a - b);
  const m = rows.length;
  const unit = normalizeRows(gatherRows(vectors, dim, rows), dim);
  const gram = tf.tidy(() => {
    const u = tf.tensor2d(unit, [m, dim]);
    return tf.matMul(u, tf.transpose(u)).dataSync();
  });
  const lab = rows.map((r) => labels[r]);
  const size = new Array<number>(classCount).fill(0);
  lab.forEach((l) => size[l]++);
  let total = 0;
  let counted = 0;
  const sums = new Float64Array(classCount);
  for (let i = 0; i < m; i++) {
    sums.fill(0);
    for (let j = 0; j < m; j++) if (j !== i) sums[lab[j]] += 1 - gram[i * m + j];
    const own = lab[i];
    if (size[own] < 2) continue;
    const a = sums[own] / (size[own] - 1);
    let b = Infinity;
    for (let c = 0; c < classCount; c++) if (c !== own && size[c] > 0) b = Math.min(b, sums[c] / size[c]);
    if (!Number.isFinite(b)) continue;
    const denom = Math.max(a, b);
    total += denom > 0 ? (b - a) / denom : 0;
    counted++;
  }
  return counted > 0 ? total / counted : 0;
}

/** trace(between-class scatter) / trace(within-class scatter). */
export function varianceRatio(vectors: Float32Array, dim: number, labels: ArrayLike<number>, classCount: number): number {
  const n = labels.length;
  const mean = new Float64Array(dim);
  const means = new Float64Array(classCount * dim);
  const counts = new Array<number>(classCount).fill(0);
  for (let i = 0; i < n; i++) {
    const c = labels[i];
    counts[c]++;
    for (let j = 0; j < dim; j++) {
      mean[j] += vectors[i * dim + j];
      means[c * dim + j] += vectors[i * dim + j];
    }
  }
  for (let j = 0; j < dim; j++) mean[j] /= Math.max(1, n);
  for (let c = 0; c < classCount; c++) for (let j = 0; j < dim; j++) means[c * dim + j] /= Math.max(1, counts[c]);
  let between = 0;
  for (let c = 0; c < classCount; c++) for (let j = 0; j < dim; j++) between += counts[c] * (means[c * dim + j] - mean[j]) ** 2;
  let within = 0;
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) within += (vectors[i * dim + j] - means[labels[i] * dim + j]) ** 2;
  return within > 0 ? between / within : between > 0 ? Infinity : 0;
}
