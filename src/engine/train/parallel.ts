/**
 * Data-parallel training on several threads. tfjs's wasm backend runs one
 * thread under Node (its threaded build does not start there), so a second
 * core is used the way multi-GPU training uses a second device: the engine's
 * thread and each helper thread (a worker_threads Worker holding a replica of
 * the model, src/engine/train/replica.ts) compute the gradients of the loss
 * over their share of each batch, and the engine combines them and steps its
 * optimizer once.
 *
 * - Shares: a batch of n rows is cut in order into parts of n/threads rows
 *   (the first ones one row larger when it does not divide); part 0 is the
 *   engine's. A batch with fewer rows than threads uses fewer threads.
 * - The gradient of the batch's mean loss is the row-weighted mean of the
 *   parts' gradients, summed in part order, so two runs with the same seed
 *   give bitwise the same weights whatever order the threads finish in.
 *   Without BatchNormalization this is the one-thread gradient up to float
 *   rounding.
 * - Weights: before each step the helpers get the current values of the
 *   trainable variables and the statistics (never the frozen weights, which
 *   no thread writes), so every replica computes with the engine's weights.
 * - Randomness: each part's unseeded random ops (Dropout) draw from a stream
 *   seeded by the run's seed, the epoch, the batch and the part.
 * - BatchNormalization that trains normalises each part with that part's own
 *   batch statistics ("ghost batch normalization", as on several GPUs without
 *   synchronised BN), so its output, and the gradients, differ a little from
 *   one thread's. Its moving mean and variance after a step are what one
 *   model would hold after the whole batch, up to float rounding
 *   (combineStatistics). A frozen BatchNormalization runs in inference mode
 *   on every thread and is unchanged.
 * - The helpers are terminated when training ends, fails or is cancelled
 *   (dispose), and a helper that dies fails the step with a message.
 * - Cost: the engine's thread also cuts the batch, sends the shares and the
 *   weights, combines and steps the optimizer, so it is the busier one (on
 *   the benchmark CNN, scripts/benchTrain.ts --threads 1,2: 0.87-0.94 s of
 *   CPU per epoch against the helper's 0.74-0.76 s); in all, 2 threads spend
 *   about 12% more CPU per image than 1, and are 1.45-1.9x faster when both
 *   have a core, slower when they do not.
 */
import * as tf from '@tensorflow/tfjs';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { backendOptionsInUse } from '../backend';
import { EngineError, messageOf } from '../errors';
import { modelArtifacts, weightBytes } from '../io/save';
import type { Rng } from '../random';
import { isRpcMessage, RemoteError, RpcClient, type RpcMessage } from '../../protocol/rpc';
import type { ReplicaApi, ReplicaInit, ReplicaLayout, ReplicaStepResult, ReplicaWeight, ReplicaWeightSpec } from '../../protocol/trainReplica';
import { deriveSeed } from './dataset';
import { partGradients, withSeededRandom, type Batch, type PartGradients, type StepRunner, type Trainable } from './loop';
import { describeWeights, flatStatistics, ownedFloats, type MovingStatistics } from './replica';

/** Rows per part: n cut into `parts` nearly equal, larger ones first. */
export function shares(n: number, parts: number): number[] {
  const k = Math.max(1, Math.min(parts, n));
  const base = Math.floor(n / k);
  return Array.from({ length: k }, (_, i) => base + (i < n % k ? 1 : 0));
}

/**
 * The helper's entry: dist/trainHelper.js next to the bundle that runs the
 * engine; from sources (tests, scripts under tsx), src/worker/trainHelper.ts
 * loaded through tsx's require hook.
 */
function startHelper(): Worker {
  const bundled = path.join(__dirname, 'trainHelper.js');
  if (fs.existsSync(bundled)) return new Worker(bundled);
  const source = path.resolve(__dirname, '..', '..', 'worker', 'trainHelper.ts');
  if (!fs.existsSync(source)) throw new EngineError('internal', `the training helper is missing (looked for ${bundled}); rebuild the extension.`);
  return new Worker(`require(${JSON.stringify(require.resolve('tsx/cjs'))}); require(${JSON.stringify(source)});`, { eval: true });
}

/** Helper threads started and not yet exited, in this process (tests check that none outlives its run). */
let running = 0;

export function runningHelpers(): number {
  return running;
}

interface Helper {
  worker: Worker;
  rpc: RpcClient<ReplicaApi>;
  /** Why it stopped, once it has. */
  gone?: string;
}

function sameLayout(a: ReplicaWeight[], b: ReplicaWeight[]): boolean {
  return a.length === b.length && a.every((w, i) => w.name === b[i].name && w.shape.join() === b[i].shape.join());
}

export interface ParallelOptions {
  /** Threads in all, the engine's included (2 or more). */
  threads: number;
  model: tf.LayersModel;
  /** The freeze plan's layer paths. */
  frozen: string[];
  /** The top-level layer up to which the backbone is wholly frozen, when the engine trains only the head after it. */
  cutLayer?: string;
  outputKind: Trainable['outputKind'];
  /** The optimizer's variables, in its order (the model's trainable weights). */
  variables: tf.LayerVariable[];
  /** The statistics a step writes (statisticsOf(model)). */
  statistics: MovingStatistics[];
  signal?: AbortSignal;
}

export class ParallelStepRunner implements StepRunner {
  private constructor(
    private readonly helpers: Helper[],
    private readonly variables: tf.LayerVariable[],
    private readonly statistics: MovingStatistics[],
  ) {}

  /** Starts threads - 1 helpers, each with a replica of the model; they are stopped by dispose(). */
  static async start(o: ParallelOptions): Promise<ParallelStepRunner> {
    const backend = backendOptionsInUse();
    if (!backend) throw new EngineError('internal', 'the backend is not initialised, so no training helper can start.');
    const artifacts = await modelArtifacts(o.model);
    // One copy of the weights that every helper reads (posting an ArrayBuffer would clone it per helper).
    const bytes = weightBytes(artifacts);
    const weightData = new SharedArrayBuffer(bytes.byteLength);
    new Uint8Array(weightData).set(bytes);
    const init: ReplicaInit = {
      backend: backend.prefer,
      wasmDir: backend.wasmDir,
      modelTopology: artifacts.modelTopology as object,
      weightSpecs: (artifacts.weightSpecs ?? []) as ReplicaWeightSpec[],
      weightData,
      frozen: o.frozen,
      cutLayer: o.cutLayer,
      outputKind: o.outputKind,
    };
    const expected: ReplicaLayout = { variables: describeWeights(o.variables), statistics: describeWeights(flatStatistics(o.statistics)) };
    const helpers: Helper[] = [];
    const runner = new ParallelStepRunner(helpers, o.variables, o.statistics);
    try {
      for (let i = 1; i < o.threads; i++) helpers.push(ParallelStepRunner.connect(startHelper()));
      const layouts = await Promise.all(helpers.map((h) => ParallelStepRunner.call(h, () => h.rpc.call('init', init, { signal: o.signal }))));
      for (const layout of layouts) {
        if (!sameLayout(layout.variables, expected.variables) || !sameLayout(layout.statistics, expected.statistics)) {
          throw new EngineError('internal', `a training helper rebuilt the model with other weights (${layout.variables.map((w) => w.name).join(', ')}) than the engine trains (${expected.variables.map((w) => w.name).join(', ')}).`);
        }
      }
    } catch (e) {
      await runner.dispose();
      throw e;
    }
    return runner;
  }

  private static connect(worker: Worker): Helper {
    const helper: Helper = {
      worker,
      rpc: new RpcClient<ReplicaApi>({ post: (m: RpcMessage) => worker.postMessage(m) }),
    };
    const fail = (why: string) => {
      if (helper.gone) return;
      helper.gone = why;
      helper.rpc.failAll(new EngineError('internal', `a training helper thread stopped: ${why}`));
    };
    worker.on('message', (m: unknown) => {
      if (isRpcMessage(m)) helper.rpc.handle(m);
    });
    running++;
    worker.on('error', (e) => fail(messageOf(e)));
    worker.on('exit', (code) => {
      running--;
      fail(`it exited with code ${code}`);
    });
    return helper;
  }

  /** Runs a call on a helper, giving its failures the engine's error type. */
  private static async call<T>(h: Helper, f: () => Promise<T>): Promise<T> {
    if (h.gone) throw new EngineError('internal', `a training helper thread stopped: ${h.gone}`);
    try {
      return await f();
    } catch (e) {
      if (e instanceof RemoteError) throw new EngineError(e.code === 'cancelled' ? 'cancelled' : 'internal', `a training helper thread failed: ${e.message}`);
      throw e;
    }
  }

  /** Threads in all, the engine's included. */
  get threads(): number {
    return this.helpers.length + 1;
  }

  async step(net: Trainable, b: Batch, optimizer: tf.Optimizer, rng: Rng, seed: number): Promise<[number, number]> {
    const rows = shares(b.size, this.threads);
    const n = b.size;
    const xsParts = tf.split(b.xs, rows);
    const ysParts = tf.split(b.ys, rows) as tf.Tensor2D[];
    let mine: PartGradients | undefined;
    try {
      // The helpers start first, from the weights as they are before this step.
      const variables = this.variables.map((w) => ownedFloats(w.read().dataSync()));
      const statistics = flatStatistics(this.statistics).map((w) => ownedFloats(w.read().dataSync()));
      const pending = rows.slice(1).map((_, k) => {
        const h = this.helpers[k];
        const xs = xsParts[k + 1];
        const ys = ysParts[k + 1];
        const params = {
          variables,
          statistics,
          xs: { data: ownedFloats(xs.dataSync()), shape: xs.shape },
          ys: { data: ownedFloats(ys.dataSync()), shape: ys.shape },
          seed: deriveSeed(seed, 'part', k + 1),
        };
        return ParallelStepRunner.call(h, () => h.rpc.call('step', params));
      });
      // Our part meanwhile, with the loop's seeded stream (as on one thread).
      // tidy keeps the tensors in what it returns (the loss and the gradients).
      const part = withSeededRandom(rng, () => tf.tidy(() => partGradients(net, xsParts[0], ysParts[0]) as unknown as tf.TensorContainer)) as unknown as PartGradients;
      mine = part;
      // Settle every helper before going on, so that none is left computing when this step fails.
      const settled = await Promise.allSettled(pending);
      const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
      if (failed) throw failed.reason;
      const theirs = (settled as PromiseFulfilledResult<ReplicaStepResult>[]).map((s) => s.value);
      return this.combine(net, optimizer, rows, n, part, theirs);
    } finally {
      tf.dispose([...xsParts, ...ysParts]);
      if (mine) tf.dispose([mine.loss, ...mine.grads.filter((g): g is tf.Tensor => g !== undefined)]);
    }
  }

  /** Row-weighted means in part order, one optimizer step, the statistics written back. */
  private combine(net: Trainable, optimizer: tf.Optimizer, rows: number[], n: number, mine: PartGradients, theirs: ReplicaStepResult[]): [number, number] {
    const weight = rows.map((r) => r / n);
    let loss = weight[0] * mine.loss.dataSync()[0];
    let correct = mine.correct;
    theirs.forEach((t, k) => {
      loss += weight[k + 1] * t.loss;
      correct += t.correct;
    });
    tf.tidy(() => {
      // A list, not a map: stateful optimizers key their slots by position in it.
      const grads: { name: string; tensor: tf.Tensor }[] = [];
      net.variables.forEach((v, i) => {
        const g0 = mine.grads[i];
        if (!g0) return; // as optimizer.minimize does: a variable the loss ignores is not stepped
        let g = tf.mul(g0, weight[0]);
        theirs.forEach((t, k) => {
          if (t.grads[i].length !== g0.size) throw new EngineError('internal', `a training helper sent ${t.grads[i].length} gradient values for ${v.name}, which has ${g0.size}.`);
          g = tf.add(g, tf.mul(tf.tensor(t.grads[i], g0.shape), weight[k + 1]));
        });
        grads.push({ name: v.name, tensor: g });
      });
      optimizer.applyGradients(grads as unknown as tf.NamedTensorMap);
    });
    this.combineStatistics(weight, theirs);
    return [loss, correct];
  }

  /**
   * The moving statistics one model would hold after the whole batch. Each
   * part updated its copy with its rows' mean m_k and variance v_k (biased, as
   * tfjs's BatchNormalization uses): mean_k' = mean + d (m_k - mean), the same
   * for the variance, d = 1 - momentum. The batch's mean is the row-weighted
   * mean of the m_k, and its variance the weighted mean of the v_k plus the
   * weighted spread of the m_k around it; so the result is the weighted mean
   * of the parts' updates, plus, for the variance, sum_k w_k (mean_k' - mean')^2 / d
   * (the parts' means recovered from their updates). In float64, in part order.
   */
  private combineStatistics(weight: number[], theirs: ReplicaStepResult[]): void {
    this.statistics.forEach((s, j) => {
      const means = [s.mean.read().dataSync(), ...theirs.map((t) => t.statistics[2 * j])];
      const variances = [s.variance.read().dataSync(), ...theirs.map((t) => t.statistics[2 * j + 1])];
      const size = means[0].length;
      if (means.some((m) => m.length !== size) || variances.some((v) => v.length !== size)) {
        throw new EngineError('internal', `a training helper sent statistics of another size for ${s.mean.originalName}.`);
      }
      const mean = new Float32Array(size);
      const variance = new Float32Array(size);
      for (let c = 0; c < size; c++) {
        let m = 0;
        let v = 0;
        for (let k = 0; k < means.length; k++) {
          m += weight[k] * means[k][c];
          v += weight[k] * variances[k][c];
        }
        if (s.decay > 0) for (let k = 0; k < means.length; k++) v += (weight[k] * (means[k][c] - m) ** 2) / s.decay;
        mean[c] = m;
        variance[c] = v;
      }
      for (const [w, values] of [[s.mean, mean], [s.variance, variance]] as const) {
        const t = tf.tensor(values, w.shape as number[]);
        w.write(t);
        t.dispose();
      }
    });
  }

  /** Stops every helper thread (idempotent). */
  async dispose(): Promise<void> {
    await Promise.all(
      this.helpers.map(async (h) => {
        h.gone ??= 'training ended';
        h.rpc.failAll(new EngineError('cancelled', 'training ended'));
        await h.worker.terminate();
      }),
    );
  }
}
