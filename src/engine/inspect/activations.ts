/**
 * Every layer's output for one input in one forward pass, and what the
 * inspector shows of it: per-layer mean and fraction of zeros (the layer
 * list's bars), the top-k predictions, and one layer's channels quantised to
 * bytes on demand.
 *
 * The hot path downloads almost nothing: the forward pass keeps its tensors in
 * the backend, the per-layer numbers are reduced there and come back in one
 * read, and a layer's maps are read only when someone asks for that layer.
 */
import * as tf from '@tensorflow/tfjs';
import { checkKeepAll } from '../inferenceMemory';
import { EngineError } from '../errors';
import type { LoadedModel } from '../model';
import type { ChannelStats, LayerInfo, LayerMaps, Prediction } from '../../protocol/inspect';
import { tensorStats } from './fastStats';
import { flatGraph, runAll, type FlatGraph } from './flatGraph';
import { isDistribution } from './outputs';

/** The kept outputs of one forward pass. Owns its tensors (not the input). */
export interface Activations {
  /** Layer path → its (first) output, batch dimension included. */
  byPath: Map<string, tf.Tensor>;
  /** The model's first output. */
  output: tf.Tensor;
  /** Every output of the model, in its order. */
  outputs: tf.Tensor[];
  /** For layers models: every slot of the flat graph, for Grad-CAM. */
  graph?: FlatGraph;
  slots?: tf.Tensor[];
  /** Every distinct tensor owned here (to dispose). */
  owned: tf.Tensor[];
}

/** Runs `loaded` on `input` ([1, h, w, c]) keeping every layer's output. */
export function computeActivations(loaded: LoadedModel, input: tf.Tensor): Activations {
  if (loaded.layers) {
    checkKeepAll(loaded.layers, input.shape, `inspecting ${loaded.summary.name}`);
    const g = flatGraph(loaded.layers);
    const slots = tf.tidy(() => runAll(g, [input]));
    const byPath = new Map<string, tf.Tensor>();
    for (const [p, s] of g.layerSlots) byPath.set(p, slots[s[0]]);
    const owned = [...new Set(slots)].filter((t) => t !== input);
    return { byPath, output: slots[g.outputSlots[0]], outputs: g.outputSlots.map((o) => slots[o]), graph: g, slots, owned };
  }
  if (loaded.graph) {
    const graph = loaded.graph;
    const inputName = graph.inputs[0]?.name;
    const outputNames = graph.outputs.map((o) => o.name);
    const names = loaded.summary.layers.map((r) => r.path).filter((n) => n !== inputName && !outputNames.includes(n) && !outputNames.includes(`${n}:0`));
    const wanted = [...names, ...outputNames];
    const ran = graph.execute({ [inputName]: input }, wanted) as tf.Tensor[];
    // Channels-first maps (graphs converted from PyTorch) as [h, w, c], the layout every view reads.
    const nchw = loaded.channelsFirst;
    const outs = nchw
      ? ran.map((t, i) => {
          if (t.rank !== 4 || !nchw.has(wanted[i].replace(/:0$/, ''))) return t;
          const y = tf.transpose(t, [0, 2, 3, 1]);
          t.dispose();
          return y;
        })
      : ran;
    const byPath = new Map<string, tf.Tensor>();
    wanted.forEach((n, i) => byPath.set(n.replace(/:0$/, ''), outs[i]));
    if (inputName) byPath.set(inputName, input);
    const outputs = outs.slice(names.length);
    return { byPath, output: outputs[0], outputs, owned: [...new Set(outs)].filter((t) => t !== input) };
  }
  throw new EngineError('internal', `${loaded.summary.name}: neither a layers nor a graph model.`);
}

export function disposeActivations(a: Activations): void {
  for (const t of a.owned) if (!t.isDisposed) t.dispose();
  a.owned = [];
  a.byPath.clear();
}

/**
 * Fraction of values exactly 0, as 1 - mean(step(|x|)). The direct
 * mean(cast(equal(x, 0))) costs 10x more on wasm, whose comparison with a
 * broadcast scalar takes a slow per-element index path (30 ms per million
 * values here, against 3 ms for abs, step and mean together).
 */
function zeroFraction(x: tf.Tensor, axis?: number[]): tf.Tensor {
  return tf.sub(1, tf.mean(tf.step(tf.abs(x)), axis));
}

export function kindOf(shape: number[]): LayerInfo['kind'] {
  if (shape.length === 3) return 'map';
  if (shape.length === 1) return 'vector';
  return 'other';
}

/**
 * One LayerInfo per row of the layer table, in its order. Means and zero
 * fractions come from one in-place pass per distinct tensor (fastStats.ts).
 */
export function layerInfos(loaded: LoadedModel, acts: Activations): LayerInfo[] {
  const rows = loaded.summary.layers.filter((r) => acts.byPath.has(r.path));
  const stats = new Map<tf.Tensor, { mean: number; zeros: number }>();
  for (const r of rows) {
    const t = acts.byPath.get(r.path)!;
    if (stats.has(t)) continue;
    const { sum, zeros } = tensorStats(t);
    stats.set(t, { mean: t.size ? sum / t.size : 0, zeros: t.size ? zeros / t.size : 0 });
  }
  return rows.map((r) => {
    const t = acts.byPath.get(r.path)!;
    const shape = t.shape.slice(1);
    return { path: r.path, className: r.className, shape, kind: kindOf(shape), ...stats.get(t)! };
  });
}

/** Top-k of the model's first output, labelled; `probabilities` when it is a distribution. */
export async function topPredictions(output: tf.Tensor, labels: string[] | undefined, k: number): Promise<{ predictions: Prediction[]; probabilities: boolean }> {
  const v = await output.data();
  const order = Array.from(v.keys()).sort((a, b) => v[b] - v[a] || a - b);
  const predictions = order.slice(0, Math.max(0, k)).map((index) => ({ index, label: labels?.[index] ?? `class ${index}`, probability: v[index] }));
  return { predictions, probabilities: isDistribution(v) };
}

/**
 * Area average by an integer factor; the edges are mirrored up to a multiple
 * of it so that the last row and column average real values only.
 */
function areaDownsample(x: tf.Tensor3D, f: number): tf.Tensor3D {
  const [h, w] = x.shape;
  const ph = (f - (h % f)) % f;
  const pw = (f - (w % f)) % f;
  const padded = ph || pw ? tf.mirrorPad(x, [[0, ph], [0, pw], [0, 0]], 'symmetric') : x;
  return tf.avgPool(padded, f, f, 'valid');
}

/**
 * One layer's values as bytes. Maps: per channel, channel-major, area-averaged
 * to at most `maxSize` on the longer side (stats stay those of the full map,
 * so the bytes of a downsampled grid and of the full-size zoom mean the same
 * values). Vectors: all units, one shared min/max in stats[0].
 */
export async function quantiseLayer(path: string, t: tf.Tensor, maxSize: number): Promise<LayerMaps> {
  const shape = t.shape.slice(1);
  const kind = kindOf(shape);
  if (kind === 'other') {
    throw new EngineError('bad-input', `layer ${path} outputs shape [${shape.join(', ')}], which is neither a feature map [h, w, c] nor a vector; there is nothing to draw for it.`);
  }
  if (kind === 'vector') {
    const [packed, q] = tf.tidy(() => {
      const x = tf.cast(tf.reshape(t, [-1]), 'float32');
      const { mean, variance } = tf.moments(x);
      const min = tf.min(x);
      const max = tf.max(x);
      const stats = tf.stack([min, max, mean, tf.sqrt(variance), zeroFraction(x)]);
      return [stats, quantise(x, min, max)];
    });
    const [s, bytes] = await Promise.all([packed.data(), q.data()]);
    tf.dispose([packed, q]);
    const n = shape[0];
    return { path, kind, channels: n, height: 1, width: 1, fullHeight: 1, fullWidth: 1, stats: [statsAt(s, 0, 1)], data: Uint8Array.from(bytes) };
  }
  const [h, w, c] = shape;
  const f = maxSize > 0 && Math.max(h, w) > maxSize ? Math.ceil(Math.max(h, w) / maxSize) : 1;
  const [packed, q] = tf.tidy(() => {
    const x = tf.cast(tf.reshape(t, [h, w, c]), 'float32') as tf.Tensor3D;
    const { mean, variance } = tf.moments(x, [0, 1]);
    const min = tf.min(x, [0, 1]);
    const max = tf.max(x, [0, 1]);
    const zeros = zeroFraction(x, [0, 1]);
    const stats = tf.stack([min, max, mean, tf.sqrt(variance), zeros]);
    const small = f > 1 ? areaDownsample(x, f) : x;
    return [stats, tf.transpose(quantise(small, min, max), [2, 0, 1])];
  });
  const [s, bytes] = await Promise.all([packed.data(), q.data()]);
  const [, oh, ow] = q.shape;
  tf.dispose([packed, q]);
  return {
    path,
    kind,
    channels: c,
    height: oh,
    width: ow,
    fullHeight: h,
    fullWidth: w,
    stats: Array.from({ length: c }, (_, i) => statsAt(s, i, c)),
    data: Uint8Array.from(bytes),
  };
}

/** round((x - min) / (max - min) * 255), 0 where max = min; int32 for download. */
function quantise(x: tf.Tensor, min: tf.Tensor, max: tf.Tensor): tf.Tensor {
  const range = tf.sub(max, min);
  const scale = tf.div(tf.scalar(255), tf.where(tf.greater(range, 0), range, tf.onesLike(range)));
  return tf.cast(tf.clipByValue(tf.round(tf.mul(tf.sub(x, min), scale)), 0, 255), 'int32');
}

function statsAt(s: ArrayLike<number>, i: number, n: number): ChannelStats {
  return { min: s[i], max: s[n + i], mean: s[2 * n + i], std: s[3 * n + i], zeros: s[4 * n + i] };
}
