/**
 * The training loop, shaped like tfjs's fit (a callbacks object with
 * onEpochBegin, onBatchEnd(batch, logs), onEpochEnd(epoch, logs)) but driven
 * one batch at a time with our own optimizer step, so that it can stream
 * batches from disk, stop between batches when cancelled, and do the things
 * tfjs's fit lacks: restoring the best epoch's weights at the end of early
 * stopping, and a learning-rate schedule (step or cosine).
 *
 * Reproducibility: batches arrive in a seeded order, and the only other
 * randomness in a step is tfjs's own (Dropout, GaussianNoise...), whose ops
 * seed themselves from Math.random when the layer has no seed. The step runs
 * with Math.random swapped for a seeded stream for its (synchronous)
 * duration, so two runs with the same seed give identical metrics.
 *
 * With a `runner` the step is computed on several threads instead, each on
 * its share of the batch (src/engine/train/parallel.ts), with the same
 * guarantee for the same seed and thread count.
 */
import * as tf from '@tensorflow/tfjs';
import { CancelledError, EngineError } from '../errors';
import { Rng } from '../random';
import type { MonitorName } from '../../protocol/train';
import type { FinetuneSettings } from '../../protocol/recipe';
import { deriveSeed } from './dataset';
import { correctCount, lossOf, rowPredictions, type OutputKind, type RowPrediction } from './outputs';
import { Pace, type LoopCallbacks, type EpochLogs } from './progress';

export { correctCount, lossOf, rowPredictions, type OutputKind, type RowPrediction } from './outputs';
export { Pace, progressCallbacks, type BatchLogs, type EpochLogs, type LoopCallbacks } from './progress';

/**
 * Computes a training step across several threads (src/engine/train/parallel.ts):
 * the loop hands it each batch instead of stepping the optimizer itself.
 */
export interface StepRunner {
  /** Trains on one batch; returns the batch's mean loss and its correct rows. */
  step(net: Trainable, b: Batch, optimizer: tf.Optimizer, rng: Rng, seed: number): Promise<[number, number]>;
}

export interface Batch {
  /** Model inputs, or backbone features when the backbone is cached. */
  xs: tf.Tensor;
  /** One-hot labels. */
  ys: tf.Tensor2D;
  size: number;
  /** Which images of the source the rows are (validation rows: for the per-image results). */
  indices?: number[];
}

/** Where batches come from; the loop disposes every batch it is given. */
export interface TrainData {
  trainSize: number;
  batchesPerEpoch: number;
  /** Training batches of epoch `epoch` (0-based), shuffled and augmented as the source sees fit. */
  train(epoch: number): AsyncIterable<Batch>;
  /** Validation batches (never augmented); absent without a validation set. */
  validation?(epoch: number): AsyncIterable<Batch>;
}

/**
 * A training step that computes the gradients itself instead of tfjs's tape
 * (src/engine/train/step: the compiled step for a whole model on wasm).
 */
export interface StepGradients {
  gradients(xs: tf.Tensor, ys: tf.Tensor2D, o: {
    outputKind: Trainable['outputKind'];
    regularization?: Trainable['regularization'];
    seed: number;
    microBatch?: number;
  }): PartGradients;
}

/** What the loop trains: a function of the batch, and the variables it may change. */
export interface Trainable {
  /** Runs outside the gradient tape (a frozen backbone in inference mode); optional. */
  frozen?: (xs: tf.Tensor) => tf.Tensor;
  /** The part that trains: [n, classes] probabilities or logits. */
  forward: (x: tf.Tensor, training: boolean) => tf.Tensor;
  outputKind: OutputKind;
  /** Regularization terms to add to the loss (tfjs's model.calculateLosses()). */
  regularization?: () => tf.Scalar[];
  /** Variables the optimizer updates. */
  variables: tf.Variable[];
  /**
   * Everything training can change (the variables plus moving statistics),
   * copied at the best epoch and written back at the end when asked to.
   */
  state: tf.LayerVariable[];
  /** Computes `forward`'s gradients without the tape (then `frozen` is absent). */
  compiled?: StepGradients;
  /** Rows per micro-batch of the compiled step, when a batch does not fit in memory at once. */
  microBatch?: number;
}

export interface LoopOptions {
  epochs: number;
  optimizer: tf.Optimizer;
  learningRate: number;
  lrSchedule?: FinetuneSettings['lrSchedule'];
  earlyStopping?: FinetuneSettings['earlyStopping'];
  /** Tracked for the best epoch even without early stopping. */
  monitor: MonitorName;
  seed: number;
  signal?: AbortSignal;
  callbacks?: LoopCallbacks;
  /** Steps the batches on several threads; without it, the loop steps on this one. */
  runner?: StepRunner;
  /**
   * Keep the weights of the epoch the monitor liked best, not the last
   * epoch's (what early stopping's restoreBestWeights does, without stopping).
   */
  keepBest?: boolean;
}

export interface LoopResult {
  history: EpochLogs[];
  epochsRun: number;
  stoppedEarly: boolean;
  monitor: MonitorName;
  /** 1-based. */
  bestEpoch: number;
  bestValue: number;
  /** The monitored value of the last epoch run. */
  lastValue: number;
  restored: boolean;
  /** The validation rows' outcomes with the weights the run ends with (absent without a validation set). */
  predictions?: RowPrediction[];
}

export type OptimizerName = FinetuneSettings['optimizer'];

export function createOptimizer(name: OptimizerName, learningRate: number): tf.Optimizer {
  switch (name) {
    case 'adam':
      return tf.train.adam(learningRate);
    case 'sgd':
      return tf.train.sgd(learningRate);
    case 'rmsprop':
      return tf.train.rmsprop(learningRate);
  }
}

/**
 * Sets the rate an optimizer uses from its next step on. tfjs optimizers read
 * their (protected) `learningRate` in every step; SGD caches it as a scalar
 * and has setLearningRate for that.
 */
export function setLearningRate(optimizer: tf.Optimizer, lr: number): void {
  const o = optimizer as unknown as { learningRate?: number; setLearningRate?: (lr: number) => void };
  if (typeof o.setLearningRate === 'function') o.setLearningRate(lr);
  else if (typeof o.learningRate === 'number') o.learningRate = lr;
  else throw new EngineError('internal', `the ${optimizer.getClassName()} optimizer has no learning rate Layer Lens can set.`);
}

/** The learning rate for epoch `epoch` (0-based) under the schedule. */
export function learningRateAt(epoch: number, epochs: number, base: number, schedule: FinetuneSettings['lrSchedule']): number {
  if (!schedule) return base;
  if (schedule.kind === 'step') return base * Math.pow(schedule.factor, Math.floor(epoch / schedule.every));
  const min = Math.min(schedule.minLearningRate, base);
  // Cosine from base at epoch 0 down towards min at the last epoch (Keras's CosineDecay over the run).
  const t = epochs <= 1 ? 0 : epoch / (epochs - 1);
  return min + ((base - min) * (1 + Math.cos(Math.PI * t))) / 2;
}

/** Runs `fn` with Math.random replaced by `rng` (see the header: tfjs's unseeded random ops). */
export function withSeededRandom<T>(rng: Rng, fn: () => T): T {
  const original = Math.random;
  Math.random = () => rng.next();
  try {
    return fn();
  } finally {
    Math.random = original;
  }
}

/** The loss plus the model's regularization terms (kernel L2 and the like), as Keras adds them. */
export function totalLoss(net: Trainable, out: tf.Tensor, ys: tf.Tensor2D): tf.Scalar {
  const loss = lossOf(out, ys, net.outputKind);
  const extra = net.regularization?.() ?? [];
  return extra.length > 0 ? tf.add(loss, tf.addN(extra)) : loss;
}

export interface PartGradients {
  /** Mean loss over the rows (regularization included). */
  loss: tf.Scalar;
  correct: number;
  /** One per `net.variables`, undefined where the loss does not depend on it. */
  grads: (tf.Tensor | undefined)[];
}

/**
 * The gradients of the mean loss over some rows of a batch, without stepping
 * the optimizer: what each thread of a data-parallel step computes (the
 * replica in a helper thread too). Call inside tf.tidy; the returned tensors
 * survive it.
 */
export function partGradients(net: Trainable, xs: tf.Tensor, ys: tf.Tensor2D): PartGradients {
  if (net.compiled && !net.frozen) {
    // Its generic layers' randomness is seeded from the stream the caller seeded (withSeededRandom).
    const seed = Math.floor(Math.random() * 4294967296);
    return net.compiled.gradients(xs, ys, { outputKind: net.outputKind, regularization: net.regularization, seed, ...(net.microBatch ? { microBatch: net.microBatch } : {}) });
  }
  const input = net.frozen ? net.frozen(xs) : xs;
  let out: tf.Tensor | undefined;
  const { value, grads } = tf.variableGrads(() => {
    out = tf.keep(net.forward(input, true));
    return totalLoss(net, out, ys);
  }, net.variables);
  if (!out) throw new EngineError('internal', 'the training step produced no output.');
  const correct = correctCount(out, ys);
  out.dispose();
  return { loss: value, correct, grads: net.variables.map((v) => grads[v.name]) };
}

/** One optimizer step from a compiled step's gradients (those the loss depends on, in variable order). */
function stepCompiled(net: Trainable, b: Batch, optimizer: tf.Optimizer): number[] {
  const part = partGradients(net, b.xs, b.ys);
  // A list, not a map: stateful optimizers key their slots by position in it.
  const grads: { name: string; tensor: tf.Tensor }[] = [];
  net.variables.forEach((v, i) => {
    const g = part.grads[i];
    if (g) grads.push({ name: v.name, tensor: g });
  });
  optimizer.applyGradients(grads);
  return [part.loss.dataSync()[0], part.correct];
}

function isBetter(monitor: MonitorName, value: number, best: number): boolean {
  return monitor.endsWith('acc') ? value > best : value < best;
}

const nextTick = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Trains `net` on `data` for `options.epochs` epochs (fewer when early
 * stopping stops it). Throws CancelledError when the signal fires; the
 * weights are then left as they were after the last finished batch.
 */
export async function trainLoop(net: Trainable, data: TrainData, options: LoopOptions): Promise<LoopResult> {
  if (net.variables.length === 0) {
    throw new EngineError('bad-input', 'every layer is frozen, so there is nothing to train; unfreeze at least the last layer.');
  }
  const { epochs, optimizer, signal, callbacks = {} } = options;
  const es = options.earlyStopping;
  const monitor = options.monitor;
  const history: EpochLogs[] = [];
  let best = monitor.endsWith('acc') ? -Infinity : Infinity;
  let bestEpoch = 0;
  let snapshot: tf.Tensor[] | undefined;
  let stoppedEarly = false;
  const keepBest = options.keepBest ?? !!es?.restoreBestWeights;
  let bestPredictions: RowPrediction[] | undefined;
  let lastPredictions: RowPrediction[] | undefined;
  // The ETA from smoothed paces (a batch, with its data; an epoch's validation), so that it does not jump from batch to batch.
  const pace = new Pace();
  const checkCancel = () => {
    if (signal?.aborted) throw new CancelledError('Fine-tuning');
  };

  try {
    for (let epoch = 0; epoch < epochs; epoch++) {
      checkCancel();
      const lr = learningRateAt(epoch, epochs, options.learningRate, options.lrSchedule);
      setLearningRate(optimizer, lr);
      await callbacks.onEpochBegin?.(epoch, lr);
      const rng = new Rng(deriveSeed(options.seed, 'step', epoch));
      const start = performance.now();
      let lossSum = 0;
      let correct = 0;
      let seen = 0;
      let batch = 0;
      let trainMs = 0;
      for await (const b of data.train(epoch)) {
        const t0 = performance.now();
        let values: number[];
        try {
          values = options.runner
            ? await options.runner.step(net, b, optimizer, rng, deriveSeed(options.seed, 'step', epoch, batch))
            : net.compiled
              ? withSeededRandom(rng, () => tf.tidy(() => stepCompiled(net, b, optimizer)))
              : withSeededRandom(rng, () =>
                tf.tidy(() => {
                  const input = net.frozen ? net.frozen(b.xs) : b.xs;
                  let out: tf.Tensor | undefined;
                  const cost = optimizer.minimize(
                    () => {
                      out = tf.keep(net.forward(input, true));
                      return totalLoss(net, out, b.ys);
                    },
                    true,
                    net.variables,
                  );
                  if (!cost || !out) throw new EngineError('internal', 'the optimizer step returned no loss.');
                  const right = correctCount(out, b.ys);
                  out.dispose();
                  return [cost.dataSync()[0], right];
                }),
              );
        } finally {
          b.xs.dispose();
          b.ys.dispose();
        }
        trainMs += performance.now() - t0;
        lossSum += values[0] * b.size;
        correct += values[1];
        seen += b.size;
        pace.batchDone();
        await callbacks.onBatchEnd?.(batch, {
          loss: lossSum / seen,
          acc: correct / seen,
          size: b.size,
          imagesPerSec: seen / (trainMs / 1000 || 1e-9),
          etaSec: pace.eta(data.batchesPerEpoch - batch - 1, epochs - epoch - 1, data.batchesPerEpoch),
        });
        batch++;
        // Let the event loop deliver a cancel (tf ops are synchronous), then check it.
        await nextTick();
        checkCancel();
      }
      if (seen === 0) throw new EngineError('bad-dataset', 'no training image could be read in this epoch; see the warnings above for the files.');

      let valLoss: number | undefined;
      let valAcc: number | undefined;
      const validationStart = performance.now();
      if (data.validation) {
        let vLoss = 0;
        let vRight = 0;
        let vSeen = 0;
        const rows: RowPrediction[] = [];
        for await (const b of data.validation(epoch)) {
          try {
            const [l, r] = tf.tidy(() => {
              const input = net.frozen ? net.frozen(b.xs) : b.xs;
              const out = net.forward(input, false);
              const predicted = rowPredictions(out, b.ys, net.outputKind, b.indices, vSeen);
              rows.push(...predicted);
              return [totalLoss(net, out, b.ys).dataSync()[0], predicted.filter((p) => p.predicted === p.label).length];
            });
            vLoss += l * b.size;
            vRight += r;
          } finally {
            b.xs.dispose();
            b.ys.dispose();
          }
          vSeen += b.size;
          await nextTick();
          checkCancel();
        }
        if (vSeen > 0) {
          valLoss = vLoss / vSeen;
          valAcc = vRight / vSeen;
          lastPredictions = rows;
        }
      }

      const seconds = (performance.now() - start) / 1000;
      pace.validationDone((performance.now() - validationStart) / 1000);
      const logs: EpochLogs = {
        loss: lossSum / seen,
        acc: correct / seen,
        ...(valLoss !== undefined ? { val_loss: valLoss, val_acc: valAcc } : {}),
        lr,
        imagesPerSec: seen / (trainMs / 1000 || 1e-9),
        seconds,
        etaSec: pace.eta(0, epochs - epoch - 1, data.batchesPerEpoch),
        improved: false,
      };
      const value = logs[monitor];
      if (value !== undefined && Number.isFinite(value) && isBetter(monitor, value, best)) {
        best = value;
        bestEpoch = epoch + 1;
        logs.improved = true;
        bestPredictions = lastPredictions;
        // The weights only while a later epoch may be worse (the last epoch's are the model's own).
        if (keepBest && epoch + 1 < epochs) {
          snapshot?.forEach((t) => t.dispose());
          snapshot = net.state.map((w) => tf.keep(w.read().clone()));
        }
      }
      history.push(logs);
      await callbacks.onEpochEnd?.(epoch, logs);
      if (es && epoch + 1 - bestEpoch >= es.patience && epoch + 1 < epochs) {
        stoppedEarly = true;
        break;
      }
    }

    let restored = false;
    if (keepBest && snapshot && bestEpoch !== history.length) {
      net.state.forEach((w, i) => w.write(snapshot![i]));
      restored = true;
    }
    const lastValue = history[history.length - 1]?.[monitor] ?? NaN;
    if (bestEpoch === 0) {
      // The monitored value was never finite (NaN losses): report the last epoch.
      bestEpoch = history.length;
      best = lastValue;
    }
    const predictions = restored ? bestPredictions : lastPredictions;
    return { history, epochsRun: history.length, stoppedEarly, monitor, bestEpoch, bestValue: best, lastValue, restored, ...(predictions ? { predictions } : {}) };
  } finally {
    snapshot?.forEach((t) => t.dispose());
  }
}
