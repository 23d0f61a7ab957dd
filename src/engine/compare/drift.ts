/**
 * Weight drift of matched layers, ||W_B − W_A|| / ||W_A||, over all of a
 * layer's weights taken as one vector (a nested model's: all of its layers'),
 * BatchNormalization's moving statistics included. Sums of squares are
 * reduced in the backend and read back in one download. A weight that did not
 * change gives exactly 0 (x − x is 0 in floating point), so a frozen layer
 * shows exactly zero drift: this doubles as a check of the freezing code.
 */
import * as tf from '@tensorflow/tfjs';

export interface WeightDrift {
  /** null for 0/0 (no weights), a zero reference, or weights of different shapes. */
  drift: number | null;
  change: number;
  norm: number;
  note?: string;
}

function compatible(a: tf.LayerVariable[], b: tf.LayerVariable[]): boolean {
  return a.length === b.length && a.every((w, i) => w.shape.join(',') === b[i].shape.join(','));
}

/** Drift of each pair [layer of A, layer of B]. */
export function weightDrifts(pairs: readonly (readonly [tf.layers.Layer, tf.layers.Layer])[]): WeightDrift[] {
  const out: WeightDrift[] = pairs.map(() => ({ drift: null, change: 0, norm: 0 }));
  const todo: number[] = [];
  pairs.forEach(([a, b], i) => {
    if (a.weights.length === 0 && b.weights.length === 0) out[i].note = 'no weights';
    else if (!compatible(a.weights, b.weights)) out[i].note = `weights differ in shape ([${a.weights.map((w) => w.shape.join('x')).join(', ')}] in A, [${b.weights.map((w) => w.shape.join('x')).join(', ')}] in B)`;
    else todo.push(i);
  });
  if (todo.length === 0) return out;
  const sums = tf.tidy(() => {
    const parts: tf.Tensor[] = [];
    for (const i of todo) {
      const [a, b] = pairs[i];
      let change: tf.Tensor = tf.scalar(0);
      let norm: tf.Tensor = tf.scalar(0);
      a.weights.forEach((wa, k) => {
        const va = tf.cast(wa.read(), 'float32');
        const vb = tf.cast(b.weights[k].read(), 'float32');
        change = tf.add(change, tf.sum(tf.square(tf.sub(vb, va))));
        norm = tf.add(norm, tf.sum(tf.square(va)));
      });
      parts.push(change, norm);
    }
    return tf.stack(parts);
  });
  const v = sums.dataSync();
  sums.dispose();
  todo.forEach((i, k) => {
    const change = Math.sqrt(v[2 * k]);
    const norm = Math.sqrt(v[2 * k + 1]);
    out[i].change = change;
    out[i].norm = norm;
    if (norm > 0) out[i].drift = change / norm;
    else out[i].note = change > 0 ? "A's weights are all zero (the relative change is unbounded)" : 'all weights are zero on both sides';
  });
  return out;
}
