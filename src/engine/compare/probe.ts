/**
 * Live feature maps during a fine-tune: a probe image and a layer, run
 * through the model being trained before the first epoch and after each one
 * (finetune()'s `probe` hook), and sent as quantised LayerMaps with the
 * progress stream. Only the layers up to the probed one run, in inference
 * mode, outside the gradient tape. The image is decoded and preprocessed once
 * per run. A failure stops the probe with one warning; training goes on.
 *
 * Training must not slow down by more than `budget` (5%): after the first
 * epoch's probe (which measures what a warm probe costs), the time spent in
 * epoch probes is kept under that fraction of the training time, and epochs
 * too short to pay for a probe are skipped (a head trained on cached backbone
 * outputs takes milliseconds per epoch). The one pass before training is a
 * start-up cost, like loading the model. A layer that nothing trainable comes
 * before (a frozen backbone's) cannot change, so it is computed once and
 * marked `unchanging`.
 */
import * as tf from '@tensorflow/tfjs';
import { messageOf } from '../errors';
import { readImageFile, toInputTensor } from '../image';
import { batchShape } from '../inputGeometry';
import { quantiseLayer } from '../inspect/activations';
import { flatGraph, type FlatGraph } from '../inspect/flatGraph';
import type { EpochProbe, EpochProbeContext } from '../train/finetune';
import type { TrainProbe, TrainWarning } from '../../protocol/train';

export interface ProbeRequest {
  imagePath: string;
  /** A layer path of the model being fine-tuned (as in its layer table). */
  layerPath: string;
  /** Longest side of the maps sent (default 64, as the inspector's grid). */
  maxSize?: number;
  /** Largest fraction of the training time the probe may take (default 0.05). */
  budget?: number;
}

/** Indices of the steps that slot `slot` depends on. */
function ancestors(g: FlatGraph, slot: number): number[] {
  const seen = new Set<number>();
  const stack = [slot];
  while (stack.length > 0) {
    const step = g.producer[stack.pop()!];
    if (step === undefined || step < 0 || seen.has(step)) continue;
    seen.add(step);
    stack.push(...g.steps[step].inputs);
  }
  return [...seen].sort((a, b) => a - b);
}

/** True when no step before the slot can change in training: each is weightless or frozen. */
export function isUnchanging(g: FlatGraph, slot: number): boolean {
  return ancestors(g, slot).every((i) => {
    const layer = g.steps[i].layer;
    return layer.weights.length === 0 || !layer.trainable;
  });
}

/** Runs the steps of `g` in order until `slot` has its value; returns it (the caller owns it unless it is the input). */
export function runUntil(g: FlatGraph, input: tf.Tensor, slot: number): tf.Tensor {
  const values: (tf.Tensor | undefined)[] = new Array(g.slotCount);
  g.inputSlots.forEach((s) => (values[s] = input));
  return tf.tidy(() => {
    for (const step of g.steps) {
      if (values[slot] !== undefined) break;
      const xs = step.inputs.map((s) => values[s]!);
      const y = step.layer.apply(xs.length === 1 ? xs[0] : xs, step.kwargs) as tf.Tensor | tf.Tensor[];
      const ys = Array.isArray(y) ? y : [y];
      step.outputs.forEach((s, i) => (values[s] = ys[i]));
    }
    const out = values[slot];
    if (!out) throw new Error('the probed layer was not reached by the forward pass');
    return out;
  });
}

export class LiveMapsProbe implements EpochProbe {
  private input: tf.Tensor | undefined;
  private stopped = false;
  private unchanging = false;
  /** Time spent in the probes after epochs, and in training between the calls (ms). */
  private probeMs = 0;
  private trainMs = 0;
  /** The last epoch probe's time (undefined until one ran: the first one always runs). */
  private lastMs: number | undefined;
  private lastEnd: number | undefined;
  /** Epochs skipped to keep within the budget. */
  skipped = 0;

  constructor(private readonly request: ProbeRequest) {}

  async onEpochEnd(ctx: EpochProbeContext): Promise<TrainProbe | TrainWarning | undefined> {
    if (this.stopped) return undefined;
    const start = performance.now();
    if (this.lastEnd !== undefined) this.trainMs += start - this.lastEnd;
    try {
      return await this.probe(ctx, start);
    } finally {
      const end = performance.now();
      if (ctx.epoch > 0) this.probeMs += end - start;
      this.lastEnd = end;
    }
  }

  private async probe(ctx: EpochProbeContext, start: number): Promise<TrainProbe | TrainWarning | undefined> {
    if (ctx.epoch > 0 && this.unchanging) return undefined;
    // Would this call take the probe's share of the training time over the budget?
    if (ctx.epoch > 0 && this.lastMs !== undefined && this.probeMs + this.lastMs > (this.request.budget ?? 0.05) * this.trainMs) {
      this.skipped++;
      return undefined;
    }
    try {
      const g = flatGraph(ctx.model);
      const slots = g.layerSlots.get(this.request.layerPath);
      if (!slots || slots.length === 0) {
        this.stopped = true;
        return { type: 'warning', message: `Live maps: the probe layer ${this.request.layerPath} is not part of the model being trained (it belonged to the replaced head?); pick another layer to watch.` };
      }
      if (!this.input) {
        const image = await readImageFile(this.request.imagePath, () => ({ height: ctx.height, width: ctx.width }));
        this.input = tf.tidy(() => {
          const x = toInputTensor(image, ctx.height, ctx.width, ctx.normalization, ctx.channels);
          return tf.reshape(x, batchShape(ctx, 1));
        });
      }
      if (ctx.epoch === 0) this.unchanging = isUnchanging(g, slots[0]);
      const out = runUntil(g, this.input, slots[0]);
      try {
        const maps = await quantiseLayer(this.request.layerPath, out, this.request.maxSize ?? 64);
        const ms = performance.now() - start;
        if (ctx.epoch > 0) this.lastMs = ms;
        return {
          type: 'probe',
          epoch: ctx.epoch,
          epochs: ctx.epochs,
          imagePath: this.request.imagePath,
          layerPath: this.request.layerPath,
          maps,
          ms,
          ...(this.unchanging ? { unchanging: true } : {}),
        };
      } finally {
        if (out !== this.input) out.dispose();
      }
    } catch (e) {
      this.stopped = true;
      return { type: 'warning', message: `Live maps stopped: ${messageOf(e)} Training goes on.` };
    }
  }

  dispose(): void {
    this.input?.dispose();
    this.input = undefined;
  }
}
