/**
 * A training loop's progress as the callbacks and messages see it: the logs
 * of a batch and an epoch, tfjs-style callbacks, the adapter from those to
 * the progress stream every training job sends, and the smoothed paces the
 * ETA comes from.
 */
import type { EpochMetrics, TrainProgress } from '../../protocol/train';

export interface BatchLogs {
  /** Running means over the epoch so far. */
  loss: number;
  acc: number;
  /** Images in this batch. */
  size: number;
  imagesPerSec: number;
  etaSec: number;
}

/** An epoch's metrics as saved (without its number, which the callback passes), and what the loop adds. */
export interface EpochLogs extends Omit<EpochMetrics, 'epoch'> {
  etaSec: number;
  /** The monitored quantity improved. */
  improved: boolean;
}

/** tfjs-style callbacks; epochs and batches are 0-based as in tfjs. Async ones are awaited. */
export interface LoopCallbacks {
  onEpochBegin?(epoch: number, lr: number): void | Promise<void>;
  onBatchEnd?(batch: number, logs: BatchLogs): void | Promise<void>;
  onEpochEnd?(epoch: number, logs: EpochLogs): void | Promise<void>;
}

/**
 * The loop's callbacks as the progress stream every training job sends:
 * throttled batch messages, one message per epoch, and the epoch metrics
 * collected for metrics.json. `afterEpoch` runs once an epoch is reported.
 */
export function progressCallbacks(o: {
  epochs: number;
  batchesPerEpoch: number;
  throttleMs: number;
  onProgress: (p: TrainProgress) => void;
  afterEpoch?: (epoch: number) => Promise<void>;
}): { callbacks: LoopCallbacks; metrics: EpochMetrics[] } {
  const metrics: EpochMetrics[] = [];
  let lastBatch = 0;
  let epochNow = 0;
  const callbacks: LoopCallbacks = {
    onEpochBegin: (epoch) => {
      epochNow = epoch;
    },
    onBatchEnd: (batch, logs) => {
      const now = performance.now();
      if (now - lastBatch < o.throttleMs) return;
      lastBatch = now;
      o.onProgress({ type: 'batch', epoch: epochNow + 1, epochs: o.epochs, batch: batch + 1, batches: o.batchesPerEpoch, loss: logs.loss, acc: logs.acc, imagesPerSec: logs.imagesPerSec, etaSec: logs.etaSec });
    },
    onEpochEnd: async (epoch, logs) => {
      const m: EpochMetrics = {
        epoch: epoch + 1,
        loss: logs.loss,
        acc: logs.acc,
        ...(logs.val_loss !== undefined ? { val_loss: logs.val_loss, val_acc: logs.val_acc } : {}),
        lr: logs.lr,
        imagesPerSec: logs.imagesPerSec,
        seconds: logs.seconds,
      };
      metrics.push(m);
      o.onProgress({ type: 'epoch', epochs: o.epochs, batches: o.batchesPerEpoch, metrics: m, etaSec: logs.etaSec, improved: logs.improved });
      await o.afterEpoch?.(epoch);
    },
  };
  return { callbacks, metrics };
}


/**
 * Smoothed paces for the ETA: seconds per batch (its data included) and per
 * validation pass, each an exponential moving average, so that one slow or
 * fast batch moves the estimate a little, while a lasting change (epoch 2
 * reading cached backbone outputs) takes over within a few batches.
 */
export class Pace {
  private batch: number | undefined;
  private validation = 0;
  private last = performance.now();

  batchDone(): void {
    const now = performance.now();
    const dt = (now - this.last) / 1000;
    this.last = now;
    this.batch = this.batch === undefined ? dt : 0.8 * this.batch + 0.2 * dt;
  }

  validationDone(seconds: number): void {
    this.validation = this.validation === 0 ? seconds : 0.7 * this.validation + 0.3 * seconds;
    this.last = performance.now();
  }

  /** Seconds left: the batches left in this epoch, then whole epochs (with their validation). */
  eta(batchesLeft: number, epochsLeft: number, batchesPerEpoch: number): number {
    const b = this.batch ?? 0;
    return Math.max(0, batchesLeft) * b + (batchesLeft > 0 ? this.validation : 0) + epochsLeft * (batchesPerEpoch * b + this.validation);
  }
}

