/**
 * The inspector on an ONNX model: one run of the probe session fetches every
 * activation node's output (NCHW float32, as ONNX Runtime returns it), the
 * layer list's mean and zero fraction are computed on the plain arrays, and a
 * node's maps are turned into the engine's [h, w, c] layout only when the
 * view asks for that node.
 *
 * Memory stays bounded: when a model's activations for one image exceed the
 * budget (256 MB by default), the run is split into groups that fit; each
 * group's statistics are taken and its values dropped, and a node's maps are
 * fetched again, alone, when the view asks for them.
 *
 * The class-activation map is Score-CAM (Wang et al. 2020), which needs no
 * gradients (ONNX Runtime has none): each channel of the chosen node's map,
 * upsampled to the input and scaled to [0, 1], masks the input; the class
 * score of each masked input, less the score of a blank input, weighs that
 * channel. The strongest channels (by mean activation) are used, at most 64.
 */
import * as tf from '@tensorflow/tfjs';
import { EngineError } from '../errors';
import { sumAndZeros } from '../inspect/fastStats';
import type { GradCamResult, LayerInfo } from '../../protocol/inspect';
import type { LayerRow } from '../../protocol/model';
import type { NodeValue, OnnxModel } from './model';

export const ACTIVATION_BUDGET = 256 * 1024 * 1024;
/** Channels Score-CAM runs the model for (one masked image each). */
export const SCORE_CAM_CHANNELS = 64;

export interface OnnxRun {
  input: NodeValue;
  /** Kept node outputs by value name (all of them when they fit the budget). */
  values: Map<string, NodeValue>;
  stats: Map<string, { mean: number; zeros: number }>;
  output: NodeValue;
}

/** Runs every activation node for one NHWC image ([1, h, w, c]). */
export async function runAllNodes(model: OnnxModel, input: NodeValue, budgetBytes = ACTIVATION_BUDGET): Promise<OnnxRun> {
  const stats = new Map<string, { mean: number; zeros: number }>();
  const names = model.activationValues();
  if (!names.includes(model.outputName)) names.push(model.outputName);
  const known = names.every((n) => model.shapes.has(n));
  const total = known ? names.reduce((a, n) => a + model.shapes.get(n)!.reduce((x, d) => x * d, 1) * 4, 0) : Infinity;
  const keep = total <= budgetBytes;
  let output: NodeValue | undefined;
  const values = await model.runValues(input, names, {
    keep,
    budgetBytes,
    onGroup: (got) => {
      for (const [name, v] of got) {
        const { sum, zeros } = sumAndZeros(v.data);
        const n = v.data.length;
        stats.set(name, { mean: n ? sum / n : 0, zeros: n ? zeros / n : 0 });
        if (name === model.outputName) output = v;
      }
    },
  });
  if (!output) throw new EngineError('internal', `${model.shown}: the model's output "${model.outputName}" is not a float32 tensor; Layer Lens shows predictions of float outputs only.`);
  return { input, values, stats, output };
}

/** [1, C, H, W] → [H, W, C]; [1, N] → [N]; otherwise the dims without the batch. */
export function viewShape(dims: number[]): { shape: number[]; kind: LayerInfo['kind'] } {
  const rest = dims.slice(1);
  // A pooled map [n, c, 1, 1] is a vector of c.
  if (rest.length === 3 && rest[1] * rest[2] > 1) return { shape: [rest[1], rest[2], rest[0]], kind: 'map' };
  if (rest.length === 1) return { shape: rest, kind: 'vector' };
  // [1, N, 1, 1] pooled vectors and the like read as vectors when only one axis is longer than 1.
  const long = rest.filter((d) => d > 1);
  if (rest.length > 0 && long.length <= 1) return { shape: [rest.reduce((a, b) => a * b, 1)], kind: 'vector' };
  return { shape: rest, kind: 'other' };
}

export function onnxLayerInfos(model: OnnxModel, rows: LayerRow[], run: OnnxRun): LayerInfo[] {
  const out: LayerInfo[] = [];
  for (const r of rows) {
    if (r.inspectable === false) continue;
    const n = model.byPath.get(r.path);
    const value = n?.node.output?.[0];
    const s = value ? run.stats.get(value) : undefined;
    const dims = value ? model.shapes.get(value) : undefined;
    if (!s || !dims) continue;
    const { shape, kind } = viewShape(dims);
    out.push({ path: r.path, className: r.className, shape, kind, mean: s.mean, zeros: s.zeros });
  }
  return out;
}

/** A node's output for the current image, from the run or fetched again alone. */
export async function nodeValue(model: OnnxModel, run: OnnxRun, nodePath: string): Promise<NodeValue> {
  const value = model.valueOf(nodePath);
  const kept = run.values.get(value);
  if (kept) return kept;
  const got = await model.runValues(run.input, [value], { keep: true });
  const v = got.get(value);
  if (!v) throw new EngineError('bad-input', `node "${nodePath}" of ${model.shown} does not output float32 values; there is nothing to draw for it.`);
  return v;
}

/** A node's output as a tf tensor in the engine's layout: [1, h, w, c] maps, [1, n] vectors. Caller disposes. */
export function toEngineLayout(v: NodeValue): tf.Tensor {
  const { shape, kind } = viewShape(v.dims);
  if (kind === 'map') return tf.tidy(() => tf.transpose(tf.tensor4d(v.data, v.dims as [number, number, number, number]), [0, 2, 3, 1]));
  if (kind === 'vector') return tf.tensor2d(v.data, [1, shape[0]]);
  return tf.tensor(v.data, v.dims);
}

function softmaxRow(v: Float32Array): Float32Array {
  let max = -Infinity;
  for (const x of v) max = Math.max(max, x);
  const e = v.map((x) => Math.exp(x - max));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

function isDistribution(v: Float32Array): boolean {
  let s = 0;
  for (const x of v) {
    if (!(x >= 0 && x <= 1)) return false;
    s += x;
  }
  return Math.abs(s - 1) < 1e-3;
}

/** Score-CAM of `classIndex` at node `nodePath` for the run's image; heat at height × width. */
export async function scoreCam(model: OnnxModel, run: OnnxRun, nodePath: string, classIndex: number, label: string, height: number, width: number): Promise<GradCamResult> {
  const A = await nodeValue(model, run, nodePath);
  if (A.dims.length !== 4) {
    throw new EngineError('bad-input', `Score-CAM needs a node with a feature map [n, c, h, w]; ${nodePath} outputs [${A.dims.join(', ')}]. Pick a convolution, activation or pooling node.`);
  }
  const classes = run.output.data.length;
  if (!(Number.isInteger(classIndex) && classIndex >= 0 && classIndex < classes)) {
    throw new EngineError('bad-input', `Score-CAM: class ${classIndex} does not exist; the model has ${classes} outputs (0-${classes - 1}).`);
  }
  const [, c, h, w] = A.dims;
  const [, ih, iw, ic] = run.input.dims;
  const probs = isDistribution(run.output.data);
  const score = (out: Float32Array) => (probs ? out : softmaxRow(out))[classIndex];
  // The strongest channels by mean activation.
  const means = Array.from({ length: c }, (_, k) => {
    let s = 0;
    for (let p = 0; p < h * w; p++) s += A.data[k * h * w + p];
    return s / (h * w);
  });
  const chosen = means.map((m, k) => [m, k] as const).sort((a, b) => b[0] - a[0]).slice(0, SCORE_CAM_CHANNELS).map(([, k]) => k);
  // Masks: each channel upsampled to the input and scaled to [0, 1].
  const masks = tf.tidy(() => {
    const maps = tf.transpose(tf.tensor4d(A.data, [1, c, h, w]), [1, 2, 3, 0]) as tf.Tensor4D; // [c, h, w, 1]
    const picked = tf.gather(maps, chosen);
    const up = tf.image.resizeBilinear(picked, [ih, iw], false, true);
    const lo = tf.min(up, [1, 2, 3], true);
    const hi = tf.max(up, [1, 2, 3], true);
    return tf.div(tf.sub(up, lo), tf.maximum(tf.sub(hi, lo), 1e-12)) as tf.Tensor4D; // [k, ih, iw, 1]
  });
  try {
    const maskData = (await masks.data()) as Float32Array;
    const base = score((await model.predict({ data: new Float32Array(ih * iw * ic), dims: [1, ih, iw, ic] })).data);
    const weights: number[] = [];
    const batch = model.batched() ? 16 : 1;
    for (let k0 = 0; k0 < chosen.length; k0 += batch) {
      const m = Math.min(batch, chosen.length - k0);
      const data = new Float32Array(m * ih * iw * ic);
      for (let j = 0; j < m; j++) {
        const mask = maskData.subarray((k0 + j) * ih * iw, (k0 + j + 1) * ih * iw);
        for (let p = 0; p < ih * iw; p++) for (let q = 0; q < ic; q++) data[j * ih * iw * ic + p * ic + q] = run.input.data[p * ic + q] * mask[p];
      }
      const out = await model.predict({ data, dims: [m, ih, iw, ic] });
      for (let j = 0; j < m; j++) weights.push(score(out.data.subarray(j * classes, (j + 1) * classes)) - base);
    }
    const heat = tf.tidy(() => {
      const maps = tf.gather(tf.transpose(tf.tensor4d(A.data, [1, c, h, w]), [1, 2, 3, 0]), chosen) as tf.Tensor4D; // [k, h, w, 1]
      const cam = tf.relu(tf.sum(tf.mul(maps, tf.tensor4d(weights, [weights.length, 1, 1, 1])), 0, true)) as tf.Tensor4D;
      const resized = tf.image.resizeBilinear(cam, [height, width], false, true);
      const scaled = tf.div(resized, tf.maximum(tf.max(resized), 1e-12));
      return tf.cast(tf.clipByValue(tf.round(tf.mul(scaled, 255)), 0, 255), 'int32');
    });
    const bytes = await heat.data();
    heat.dispose();
    return { layerPath: nodePath, classIndex, label, height, width, heat: Uint8Array.from(bytes), method: 'score-cam', channels: chosen.length };
  } finally {
    masks.dispose();
  }
}
