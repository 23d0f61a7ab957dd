/**
 * Runs a compiled training step (./plan.ts): the forward pass node by node,
 * keeping only what each backward needs and freeing every other tensor after
 * its last reader; the loss and its gradient; the backward pass in reverse,
 * freeing each node's saved tensors and output gradient as soon as it ran.
 * Weight gradients add into f64 totals on the wasm heap, converted to f32
 * once at the end.
 *
 * Micro-batches: a batch may be run in slices of rows (to fit a memory
 * budget, ./memory.ts). Each slice's loss is its rows' summed loss over the
 * whole batch's row count, and the weight-gradient kernels sum over blocks of
 * one image, so the gradients of the native layers are bitwise those of the
 * whole batch. BatchNormalization in training mode then normalises each
 * slice with the slice's statistics (as on several GPUs); its moving mean and
 * variance are updated once, from the statistics of the whole batch.
 */
import * as tf from '@tensorflow/tfjs';
import { EngineError } from '../../errors';
import { simdKernels, type SimdKernels } from '../../kernels/simd';
import { deriveSeed } from '../dataset';
import { correctCount, type PartGradients, type Trainable } from '../loop';
import { backward, forward, type Accumulators, type Saved, type StepContext } from './ops';
import type { BatchNormNode, PlanNode, StepPlan } from './plan';

export interface ProfileEntry {
  /** "forward conv", "backward bn+clamp", "loss", ... */
  op: string;
  ms: number;
  /** Bytes of tensors the op left allocated (its output, or its gradients), net of what it freed. */
  bytes: number;
}

export interface StepOptions {
  outputKind: Trainable['outputKind'];
  regularization?: Trainable['regularization'];
  seed: number;
  /** Rows per micro-batch; the whole batch when absent or larger. */
  microBatch?: number;
  /** Called after every node's forward and backward (benchmarks). */
  profile?: (e: ProfileEntry) => void;
}

interface BatchStats {
  rows: number;
  sum: Float64Array;
  sumSquares: Float64Array;
}

/** One compiled step per (model, trained variables); reusable across batches. */
export class CompiledStep {
  private accBase = 0;
  private accOffsets = new Map<tf.Variable, number>();
  private accTotal = 0;
  private owner: SimdKernels | undefined;

  constructor(readonly plan: StepPlan) {
    for (const v of plan.variables) {
      this.accOffsets.set(v, this.accTotal);
      this.accTotal += v.size;
    }
  }

  /** Frees the gradient totals (the plan holds no tensors). */
  dispose(): void {
    if (this.owner && this.accBase) this.owner.free(this.accBase);
    this.accBase = 0;
    this.owner = undefined;
  }

  /**
   * The gradients of the mean loss over the batch for `plan.variables` (same
   * order; undefined where the loss does not depend on one), as
   * `partGradients` in loop.ts returns them. Call inside tf.tidy.
   */
  gradients(xs: tf.Tensor, ys: tf.Tensor2D, o: StepOptions): PartGradients {
    const s = simdKernels();
    if (!s) throw new EngineError('internal', 'the compiled training step needs the wasm backend with Layer Lens kernels.');
    const acc = this.accumulators(s);
    const n = xs.shape[0];
    const micro = Math.max(1, Math.min(n, o.microBatch ?? n));
    const stats = new Map<BatchNormNode, BatchStats>();
    const ctx: StepContext = {
      s,
      acc,
      requiresGrad: this.plan.requiresGrad,
      onBatchStats: (node, rows, mean, variance) => {
        let st = stats.get(node);
        if (!st) stats.set(node, (st = { rows: 0, sum: new Float64Array(mean.length), sumSquares: new Float64Array(mean.length) }));
        st.rows += rows;
        for (let c = 0; c < mean.length; c++) {
          st.sum[c] += rows * mean[c];
          st.sumSquares[c] += rows * (variance[c] + mean[c] * mean[c]);
        }
      },
    };
    let loss = 0;
    let correct = 0;
    for (let start = 0; start < n; start += micro) {
      const rows = Math.min(micro, n - start);
      const part = rows === n ? xs : tf.slice(xs, start, rows);
      const labels = rows === n ? ys : (tf.slice(ys, start, rows) as tf.Tensor2D);
      try {
        const r = this.run(ctx, part, labels, n, deriveSeed(o.seed, 'micro', start), o);
        loss += r.loss;
        correct += r.correct;
      } finally {
        if (part !== xs) part.dispose();
        if (labels !== ys) labels.dispose();
      }
    }
    loss += this.regularize(acc, o.regularization);
    updateMovingStatistics(stats);
    const grads = this.plan.variables.map((v) => {
      const t = s.empty(v.shape);
      s.k.f64ToF32(this.accBase + this.accOffsets.get(v)! * 8, s.pointerOf(t), v.size);
      return t;
    });
    return { loss: tf.scalar(loss), correct, grads };
  }

  private accumulators(s: SimdKernels): Accumulators {
    if (this.owner !== s) {
      this.dispose();
      this.accBase = s.malloc(Math.max(8, this.accTotal * 8));
      this.owner = s;
    }
    s.k.zeroF64(this.accBase, this.accTotal);
    const index = this.plan.variableIndex;
    const ofVariable = (variable: tf.Variable): number | undefined => (index.has(variable) ? this.accBase + this.accOffsets.get(variable)! * 8 : undefined);
    const offsetOf = (v: tf.LayerVariable): number | undefined => ofVariable(v.read() as tf.Variable);
    return {
      of: offsetOf,
      ofVariable,
      addF32: (v, grad) => {
        const at = offsetOf(v);
        if (at !== undefined) s.k.addF32ToF64(s.pointerOf(grad), at, grad.size);
      },
    };
  }

  /** The regularization terms' value and gradients (once per step, not per micro-batch). */
  private regularize(acc: Accumulators, regularization: StepOptions['regularization']): number {
    const terms = regularization?.() ?? [];
    if (terms.length === 0) return 0;
    const variables = this.plan.variables;
    const { value, grads } = tf.variableGrads(() => tf.addN(regularization!()) as tf.Scalar, variables);
    tf.dispose(terms);
    const total = value.dataSync()[0];
    value.dispose();
    for (const v of variables) {
      const g = grads[v.name];
      if (!g) continue;
      const at = acc.ofVariable(v);
      if (at !== undefined) this.owner!.k.addF32ToF64(this.owner!.pointerOf(g), at, g.size);
      g.dispose();
    }
    return total;
  }

  /** One micro-batch: forward, loss, backward. Returns its share of the loss and its correct rows. */
  private run(ctx: StepContext, xs: tf.Tensor, ys: tf.Tensor2D, rowsTotal: number, seed: number, o: StepOptions): { loss: number; correct: number } {
    const { nodes, slotCount, inputSlot, outputSlot } = this.plan;
    const refs = new Map<tf.Tensor, number>();
    const hold = (t: tf.Tensor) => refs.set(t, (refs.get(t) ?? 0) + 1);
    const release = (t: tf.Tensor) => {
      const left = (refs.get(t) ?? 0) - 1;
      if (left > 0) {
        refs.set(t, left);
        return;
      }
      refs.delete(t);
      if (t !== xs) t.dispose();
    };
    const values: (tf.Tensor | undefined)[] = new Array(slotCount);
    const shapes: number[][] = new Array(slotCount);
    const uses = new Array<number>(slotCount).fill(0);
    for (const node of nodes) for (const sl of node.inputs) uses[sl]++;
    uses[outputSlot]++;
    const saved: (Saved | undefined)[] = new Array(nodes.length);
    const timed = <T>(op: string, fn: () => T): T => {
      if (!o.profile) return fn();
      const before = tf.memory().numBytes;
      const t0 = performance.now();
      const r = fn();
      o.profile({ op, ms: performance.now() - t0, bytes: tf.memory().numBytes - before });
      return r;
    };
    const label = (node: PlanNode) => (node.kind === 'bn' ? `bn${node.clamp ? '+clamp' : ''}${node.training ? '' : ' (frozen)'}` : node.kind === 'generic' ? `generic ${node.layer.getClassName()}` : node.kind);

    try {
      values[inputSlot] = xs;
      shapes[inputSlot] = xs.shape;
      for (let i = 0; i < uses[inputSlot]; i++) hold(xs);
      // Forward.
      nodes.forEach((node, i) => {
        const ins = node.inputs.map((sl) => values[sl]!);
        const { y, saved: sv } = timed(`forward ${label(node)}`, () => forward(ctx, node, ins, deriveSeed(seed, 'node', i)));
        saved[i] = sv;
        sv.tensors.forEach(hold);
        values[node.output] = y;
        shapes[node.output] = y.shape;
        for (let k = 0; k < uses[node.output]; k++) hold(y);
        if (uses[node.output] === 0 && !sv.tensors.includes(y)) y.dispose();
        for (const sl of node.inputs) release(values[sl]!);
      });

      // Loss and its gradient with respect to the model's output.
      const out = values[outputSlot]!;
      const correct = correctCount(out, ys);
      const { loss, dOut } = timed('loss', () => lossGradient(out, ys, o.outputKind, rowsTotal));
      release(out);

      // Backward.
      const grads = new Map<number, tf.Tensor>();
      grads.set(outputSlot, dOut);
      hold(dOut);
      for (let i = nodes.length - 1; i >= 0; i--) {
        const node = nodes[i];
        const sv = saved[i]!;
        saved[i] = undefined;
        const dy = grads.get(node.output);
        if (dy) {
          grads.delete(node.output);
          const dxs = timed(`backward ${label(node)}`, () => backward(ctx, node, dy, sv, node.inputs.map((sl) => shapes[sl])));
          dxs.forEach((dx) => dx && hold(dx));
          release(dy);
          node.inputs.forEach((sl, j) => {
            const dx = dxs[j];
            if (!dx) return;
            const before = grads.get(sl);
            if (!before) {
              grads.set(sl, dx);
              return;
            }
            const sum = tf.add(before, dx);
            hold(sum);
            release(before);
            release(dx);
            grads.set(sl, sum);
          });
        }
        sv.tensors.forEach(release);
      }
      for (const g of grads.values()) release(g);
      return { loss, correct };
    } finally {
      // On an error, free whatever is still held (a finished step holds nothing).
      for (const sv of saved) sv?.tensors.forEach(release);
      for (const [t] of refs) if (t !== xs && !t.isDisposed) t.dispose();
    }
  }
}

/**
 * The loss of these rows divided by the whole batch's row count (so the
 * micro-batches' losses add up to the batch mean), and its gradient with
 * respect to the output. The loss is Keras's categorical cross-entropy, as
 * lossOf in loop.ts: on probabilities clipped away from log(0), or on logits
 * through a log-softmax.
 */
function lossGradient(out: tf.Tensor, ys: tf.Tensor2D, kind: Trainable['outputKind'], rowsTotal: number): { loss: number; dOut: tf.Tensor } {
  const { value, grads } = tf.engine().gradients(() => {
    const logp = kind === 'logits' ? tf.logSoftmax(out) : tf.log(tf.clipByValue(out, 1e-7, 1 - 1e-7));
    return tf.div(tf.neg(tf.sum(tf.mul(ys, logp))), rowsTotal) as tf.Scalar;
  }, [out]);
  const loss = value.dataSync()[0];
  value.dispose();
  return { loss, dOut: grads[0] };
}

/**
 * Updates the moving mean and variance of every BatchNormalization that
 * trained, once, from the statistics of the whole batch (all its
 * micro-batches), with tfjs's rule: m ← m - (m - batch) · (1 - momentum).
 */
function updateMovingStatistics(stats: Map<BatchNormNode, BatchStats>): void {
  for (const [node, st] of stats) {
    const C = st.sum.length;
    const mean = new Float32Array(C);
    const variance = new Float32Array(C);
    for (let c = 0; c < C; c++) {
      const m = st.sum[c] / st.rows;
      mean[c] = m;
      variance[c] = Math.max(0, st.sumSquares[c] / st.rows - m * m);
    }
    tf.tidy(() => {
      const decay = 1 - node.momentum;
      for (const [variable, batch] of [[node.movingMean, mean], [node.movingVariance, variance]] as const) {
        const current = variable.read();
        variable.write(tf.sub(current, tf.mul(tf.sub(current, tf.tensor1d(batch)), decay)));
      }
    });
  }
}
