/**
 * What a model's outputs say about a batch: Keras's categorical
 * cross-entropy, the rows it got right, and each row's predicted class with
 * its confidence (the validation images' outcomes).
 */
import * as tf from '@tensorflow/tfjs';

/** A classifier's output: probabilities (a softmax at the end) or logits. */
export type OutputKind = 'probabilities' | 'logits';

/** One validation row's outcome with the weights of an epoch. */
export interface RowPrediction {
  /** The image's index in the validation source (Batch.indices), else its row number. */
  index: number;
  label: number;
  predicted: number;
  /** The predicted class's output (a probability, or a softmax of logits). */
  confidence: number;
}


export function lossOf(out: tf.Tensor, ys: tf.Tensor2D, kind: OutputKind): tf.Scalar {
  if (kind === 'logits') return tf.losses.softmaxCrossEntropy(ys, out) as tf.Scalar;
  // Keras's categorical cross-entropy on probabilities, clipped away from log(0).
  const p = tf.clipByValue(out, 1e-7, 1 - 1e-7);
  return tf.mean(tf.neg(tf.sum(tf.mul(ys, tf.log(p)), -1)));
}

/**
 * Rows whose largest output is the label, counted in JS: a batch's outputs
 * are a few numbers, and five fewer tf ops per step matter when a cached head
 * trains in a millisecond or two.
 */
export function correctCount(out: tf.Tensor, ys: tf.Tensor2D): number {
  let right = 0;
  eachRow(out.dataSync(), ys.dataSync(), ys.shape[1], (_r, label, best) => {
    if (best === label) right++;
  });
  return right;
}

/** Calls `fn` with each row's label (the arg-max of its one-hot) and the arg-max of its outputs. */
function eachRow(o: ArrayLike<number>, y: ArrayLike<number>, k: number, fn: (row: number, label: number, best: number) => void): void {
  for (let r = 0; r * k < o.length; r++) {
    let best = 0;
    let label = 0;
    for (let c = 1; c < k; c++) {
      if (o[r * k + c] > o[r * k + best]) best = c;
      if (y[r * k + c] > y[r * k + label]) label = c;
    }
    fn(r, label, best);
  }
}

/** Each row's label, arg-max and the arg-max's output (probabilities, or softmax of logits). */
export function rowPredictions(out: tf.Tensor, ys: tf.Tensor2D, kind: OutputKind, indices: number[] | undefined, firstRow: number): RowPrediction[] {
  const k = ys.shape[1];
  const probs = kind === 'logits' ? tf.tidy(() => tf.softmax(out)) : out;
  const o = probs.dataSync();
  if (probs !== out) probs.dispose();
  const rows: RowPrediction[] = [];
  eachRow(o, ys.dataSync(), k, (r, label, best) => rows.push({ index: indices?.[r] ?? firstRow + r, label, predicted: best, confidence: o[r * k + best] }));
  return rows;
}

