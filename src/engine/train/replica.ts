/**
 * A replica of the model being trained, for a helper thread of data-parallel
 * training (src/engine/train/parallel.ts), and the lists both sides must
 * agree on: the variables the optimizer updates (in its order) and the
 * statistics a training step changes besides them (the moving mean and
 * variance of every BatchNormalization that is not frozen).
 *
 * The replica is rebuilt from the model as model.save() serialises it, with
 * the same freeze plan applied (so a frozen BatchNormalization runs in
 * inference mode here too) and, when the engine trains a head on a wholly
 * frozen backbone, split at the same layer. Each step it takes the current
 * values of the variables and statistics, computes the gradients of the mean
 * loss over its rows with the engine's own code (partGradients), and hands
 * them back with the statistics its forward pass wrote. It never steps an
 * optimizer and never writes a frozen weight.
 */
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../backend';
import { EngineError } from '../errors';
import { walkLayers } from '../model';
import { Rng } from '../random';
import type { ReplicaInit, ReplicaLayout, ReplicaStep, ReplicaStepResult, ReplicaWeight } from '../../protocol/trainReplica';
import { applyFreezePlan } from './freeze';
import { splitAt } from './head';
import { partGradients, withSeededRandom, type Trainable } from './loop';
import { CompiledStep } from './step/executor';
import { planTrainingStep } from './step/plan';
import { simdKernels } from '../kernels/simd';

/**
 * The regularization terms of every layer, nested ones included, as Keras
 * adds them to the loss; undefined when there are none (most models). Read
 * from the layers themselves: a Sequential's own calculateLosses() finds
 * nothing, since its layers hang off an inner model's nodes.
 */
export function regularizationOf(model: tf.LayersModel): (() => tf.Scalar[]) | undefined {
  const layers = [...walkLayers(model)].map((e) => e.layer).filter((l) => !(l instanceof tf.LayersModel) && l.losses.length > 0);
  return layers.length > 0 ? () => layers.flatMap((l) => l.calculateLosses()) : undefined;
}

/** The moving statistics of one BatchNormalization that trains, and its update rate. */
export interface MovingStatistics {
  mean: tf.LayerVariable;
  variance: tf.LayerVariable;
  /** 1 - momentum: the weight of a batch's statistics in the moving ones. */
  decay: number;
}

/**
 * The weights a training step writes besides the optimizer's variables: the
 * moving statistics of each BatchNormalization that trains (a frozen one runs
 * in inference mode and writes nothing), in layer order, each layer once.
 */
export function statisticsOf(model: tf.LayersModel): MovingStatistics[] {
  const seen = new Set<tf.layers.Layer>();
  const out: MovingStatistics[] = [];
  for (const { layer } of walkLayers(model)) {
    if (seen.has(layer) || layer.getClassName() !== 'BatchNormalization' || !layer.trainable) continue;
    seen.add(layer);
    const [mean, variance] = layer.nonTrainableWeights;
    if (!mean?.originalName.endsWith('moving_mean') || !variance?.originalName.endsWith('moving_variance')) {
      throw new EngineError('internal', `BatchNormalization "${layer.name}" has no moving mean and variance where tfjs keeps them.`);
    }
    const momentum = layer.getConfig()['momentum'];
    out.push({ mean, variance, decay: 1 - (typeof momentum === 'number' ? momentum : 0.99) });
  }
  return out;
}

/** The statistics as the replica channel lists them: each layer's mean, then its variance. */
export function flatStatistics(stats: readonly MovingStatistics[]): tf.LayerVariable[] {
  return stats.flatMap((s) => [s.mean, s.variance]);
}

export function describeWeights(ws: readonly tf.LayerVariable[]): ReplicaWeight[] {
  return ws.map((w) => ({ name: w.originalName, shape: w.shape.map((d) => d ?? -1) }));
}

/** A Float32Array that owns its whole buffer, so that transferring the buffer sends nothing else. */
export function ownedFloats(a: tf.TypedArray): Float32Array {
  if (a instanceof Float32Array && a.byteOffset === 0 && a.byteLength === a.buffer.byteLength) return a;
  return Float32Array.from(a as Float32Array);
}

function writeAll(targets: readonly tf.LayerVariable[], values: readonly Float32Array[], what: string): void {
  if (values.length !== targets.length) throw new EngineError('internal', `the replica got ${values.length} ${what} for its ${targets.length}.`);
  targets.forEach((w, i) => {
    const t = tf.tensor(values[i], w.shape as number[]);
    try {
      w.write(t);
    } finally {
      t.dispose();
    }
  });
}

export class Replica {
  private constructor(
    private readonly model: tf.LayersModel,
    private readonly net: Trainable,
    private readonly variables: tf.LayerVariable[],
    private readonly statistics: tf.LayerVariable[],
  ) {}

  static async create(init: ReplicaInit): Promise<Replica> {
    await initBackend({ prefer: init.backend, wasmDir: init.wasmDir });
    const model = await tf.loadLayersModel(
      tf.io.fromMemory({ modelTopology: init.modelTopology, weightSpecs: init.weightSpecs as tf.io.WeightsManifestEntry[], weightData: init.weightData }),
    );
    try {
      const freeze = applyFreezePlan(model, init.frozen);
      if (freeze.unknown.length > 0) throw new EngineError('internal', `the replica has no layer ${freeze.unknown.join(', ')}.`);
      let frozen: Trainable['frozen'];
      let forward: Trainable['forward'];
      if (init.cutLayer !== undefined) {
        const { backbone, headLayers } = splitAt(model, init.cutLayer, model.name);
        frozen = (xs) => backbone.apply(xs, false);
        forward = (x, training) => headLayers.reduce((t, l) => l.apply(t, { training }) as tf.Tensor, x);
      } else {
        forward = (x, training) => model.apply(x, { training }) as tf.Tensor;
      }
      const variables = model.trainableWeights;
      const net: Trainable = {
        frozen,
        forward,
        outputKind: init.outputKind,
        regularization: regularizationOf(model),
        variables: variables.map((w) => w.read() as tf.Variable),
        state: [],
      };
      // The engine's thread computes its part with the compiled step; so does this one.
      if (!frozen && simdKernels()) {
        const planned = planTrainingStep(model, net.variables);
        if ('plan' in planned) net.compiled = new CompiledStep(planned.plan);
      }
      return new Replica(model, net, variables, flatStatistics(statisticsOf(model)));
    } catch (e) {
      model.dispose();
      throw e;
    }
  }

  get layout(): ReplicaLayout {
    return { variables: describeWeights(this.variables), statistics: describeWeights(this.statistics) };
  }

  step(s: ReplicaStep): ReplicaStepResult {
    writeAll(this.variables, s.variables, 'variables');
    writeAll(this.statistics, s.statistics, 'statistics');
    return withSeededRandom(new Rng(s.seed), () =>
      tf.tidy(() => {
        const xs = tf.tensor(s.xs.data, s.xs.shape);
        const ys = tf.tensor2d(s.ys.data, s.ys.shape as [number, number]);
        const part = partGradients(this.net, xs, ys);
        return {
          loss: part.loss.dataSync()[0],
          correct: part.correct,
          // An empty array stands for "no gradient" (the loss does not depend on that variable).
          grads: part.grads.map((g) => (g ? ownedFloats(g.dataSync()) : new Float32Array(0))),
          statistics: this.statistics.map((w) => ownedFloats(w.read().dataSync())),
        };
      }),
    );
  }

  dispose(): void {
    (this.net.compiled as CompiledStep | undefined)?.dispose();
    this.model.dispose();
  }
}
