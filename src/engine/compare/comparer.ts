/**
 * Two models with the same input, side by side: the layers that match
 * (match.ts), how far each one's weights moved (drift.ts), what both models
 * make of one image (every layer's output kept, as the Inspector does, so
 * that any layer's maps come without another forward pass), and how similar
 * each layer's representation stays over a set of images (linear CKA,
 * cka.ts).
 *
 * One Comparer per process (the worker, or the CLI). It keeps the last
 * comparison of each pair until the next one of that pair, `release(model)`
 * or `dispose()`. Calls queue on the process's tfjs lane (lane.ts), with the
 * Inspector's.
 */
import * as tf from '@tensorflow/tfjs';
import * as path from 'node:path';
import { CancelledError, EngineError } from '../errors';
import { normalizePixels, pixelsToBytes, readImageFile, resizeToTensor, type DecodedImage } from '../image';
import { walkLayers, type LoadedModel } from '../model';
import { computeActivations, disposeActivations, kindOf, topPredictions, type Activations } from '../inspect/activations';
import { inputGeometry } from '../inputGeometry';
import type { CompareMaps, CompareResult, CompareSide, LayerDrift, LayerSimilarity, SimilarityProgress, SimilarityResult } from '../../protocol/compare';
import type { ChannelStats, LayerMaps } from '../../protocol/inspect';
import { formatShape, type Normalization } from '../../protocol/model';
import { linearCka, sampleIndices } from './cka';
import { weightDrifts, type WeightDrift } from './drift';
import { onnxActivations, onnxWeightDrifts } from '../onnx/compare';
import { matchLayers, type LayerMatching } from './match';
import { tfjsLane, type Lane } from '../lane';

export interface CompareOptions {
  /** Predictions per model (default 5). */
  topK?: number;
}

export interface SimilarityOptions {
  /** Features per image and layer kept for CKA (default 2048); bigger layers are subsampled. */
  maxFeatures?: number;
  /** Upper bound on the memory the kept features take (default 256 MB); maxFeatures shrinks to fit. */
  maxBytes?: number;
  /** Shown in the result. */
  folder?: string;
  /** Images found before sampling (shown in the result). */
  found?: number;
  signal?: AbortSignal;
  onProgress?: (p: SimilarityProgress) => void;
}

interface State {
  a: LoadedModel;
  b: LoadedModel;
  input: tf.Tensor;
  actsA: Activations;
  actsB: Activations;
  result: CompareResult;
  /** A's path → B's path, for the matched layers. */
  pathB: Map<string, string>;
}

const keyOf = (a: string, b: string) => `${path.resolve(a)}\n${path.resolve(b)}`;

/** Both ONNX, or both layers models: weights and layer names mean different things across formats. */
function sameFormat(a: LoadedModel, b: LoadedModel): boolean {
  if (!!a.onnx !== !!b.onnx) {
    throw new EngineError('bad-input', `${a.summary.name} is ${a.onnx ? 'an ONNX' : 'a TF.js/Keras'} model and ${b.summary.name} ${b.onnx ? 'an ONNX' : 'a TF.js/Keras'} one; Compare matches layers and weights within one format (a model and its fine-tuned copy, for instance).`);
  }
  return !!a.onnx;
}

function layersOf(m: LoadedModel, side: string): tf.LayersModel {
  if (!m.layers) throw new EngineError('bad-input', `${m.summary.name} (${side}) is a graph model; comparing layer by layer needs two layers models (graph models have no layers to match).`);
  return m.layers;
}

/** The two models must read the same input; returns it for messages. */
function checkSameInput(a: LoadedModel, b: LoadedModel): void {
  const sa = a.summary.inputShape.slice(1);
  const sb = b.summary.inputShape.slice(1);
  if (JSON.stringify(sa) !== JSON.stringify(sb)) {
    throw new EngineError('bad-input', `${a.summary.name} takes input ${formatShape(a.summary.inputShape)} and ${b.summary.name} takes ${formatShape(b.summary.inputShape)}; comparing needs two models with the same input (a model and its fine-tuned copy, for instance).`);
  }
  for (const m of [a, b]) {
    const n = m.layers?.inputs.length ?? 1;
    if (n !== 1) throw new EngineError('bad-input', `${m.summary.name} takes ${n} inputs; comparing with an image needs models with one image input.`);
  }
}

/** The model's input for `image`, and the image as the model sees it. */
function prepareInput(summary: LoadedModel['summary'], image: DecodedImage, normalization: Normalization, geo = inputGeometry(summary.name, summary.inputShape, { purpose: 'inspect', image: image.original ?? image })): { input: tf.Tensor; seen: DecodedImage } {
  const pixels = resizeToTensor(image, geo.height, geo.width);
  try {
    const seen = image.width === geo.width && image.height === geo.height ? image : { width: geo.width, height: geo.height, data: pixelsToBytes(pixels.dataSync()) };
    const input = tf.tidy(() => {
      const x = normalizePixels(pixels, normalization, geo.channels);
      return geo.rank === 4 ? tf.expandDims(x, 0) : tf.reshape(x, [1, geo.height, geo.width]);
    });
    return { input, seen };
  } finally {
    pixels.dispose();
  }
}

async function forward(m: LoadedModel, input: tf.Tensor): Promise<Activations> {
  try {
    return m.onnx ? await onnxActivations(m.onnx, input) : computeActivations(m, input);
  } catch (e) {
    if (e instanceof EngineError) throw e;
    throw new EngineError('internal', `${m.summary.name}: the forward pass failed (${e instanceof Error ? e.message.split('\n')[0] : String(e)}).`);
  }
}

/** Fraction of values exactly 0 (as activations.ts computes it). */
function zeroFraction(x: tf.Tensor, axis?: number[]): tf.Tensor {
  return tf.sub(1, tf.mean(tf.step(tf.abs(x)), axis));
}

/** round((x - min) / (max - min) * 255) clipped to [0, 255], 0 where max = min; int32 for download. */
function quantise(x: tf.Tensor, min: tf.Tensor, max: tf.Tensor): tf.Tensor {
  const range = tf.sub(max, min);
  const scale = tf.div(tf.scalar(255), tf.where(tf.greater(range, 0), range, tf.onesLike(range)));
  return tf.cast(tf.clipByValue(tf.round(tf.mul(tf.sub(x, min), scale)), 0, 255), 'int32');
}

/** Area average by an integer factor, edges mirrored (as activations.ts does for the grids). */
function areaDownsample(x: tf.Tensor3D, f: number): tf.Tensor3D {
  if (f <= 1) return x;
  const [h, w] = x.shape;
  const ph = (f - (h % f)) % f;
  const pw = (f - (w % f)) % f;
  const padded = ph || pw ? tf.mirrorPad(x, [[0, ph], [0, pw], [0, 0]], 'symmetric') : x;
  return tf.avgPool(padded, f, f, 'valid');
}

function statsAt(s: ArrayLike<number>, i: number, n: number): ChannelStats {
  return { min: s[i], max: s[n + i], mean: s[2 * n + i], std: s[3 * n + i], zeros: s[4 * n + i] };
}

/**
 * A's and B's outputs of one layer quantised to a shared per-channel range,
 * and |B − A| quantised against that range (see CompareMaps).
 */
export async function quantisePair(layerPath: string, ta: tf.Tensor, tb: tf.Tensor, maxSize: number): Promise<CompareMaps> {
  const shape = ta.shape.slice(1);
  if (shape.join(',') !== tb.shape.slice(1).join(',')) {
    throw new EngineError('bad-input', `layer ${layerPath} outputs [${shape.join(', ')}] in A but [${tb.shape.slice(1).join(', ')}] in B; there is nothing to put side by side.`);
  }
  const kind = kindOf(shape);
  if (kind === 'other') {
    throw new EngineError('bad-input', `layer ${layerPath} outputs shape [${shape.join(', ')}], which is neither a feature map [h, w, c] nor a vector; there is nothing to draw for it.`);
  }
  const [h, w, c] = kind === 'map' ? shape : [1, 1, shape[0]];
  const f = kind === 'map' && maxSize > 0 && Math.max(h, w) > maxSize ? Math.ceil(Math.max(h, w) / maxSize) : 1;
  // Vectors share one range over all units (stats[0]); maps have one per channel.
  const axis = kind === 'map' ? [0, 1] : undefined;
  const [packed, qa, qb, qd] = tf.tidy(() => {
    const as3 = (t: tf.Tensor) => tf.cast(tf.reshape(t, kind === 'map' ? [h, w, c] : [1, 1, c]), 'float32') as tf.Tensor3D;
    const xa = as3(ta);
    const xb = as3(tb);
    const d = tf.abs(tf.sub(xb, xa)) as tf.Tensor3D;
    const min = tf.minimum(tf.min(xa, axis), tf.min(xb, axis));
    const max = tf.maximum(tf.max(xa, axis), tf.max(xb, axis));
    const range = tf.sub(max, min);
    const zero = tf.zerosLike(min);
    const side = (x: tf.Tensor3D, lo: tf.Tensor, hi: tf.Tensor) => {
      const { mean, variance } = tf.moments(x, axis);
      return [lo, hi, mean, tf.sqrt(variance), zeroFraction(x, axis)];
    };
    // The largest |B − A|, broadcast to the stats' shape so that it stacks with them.
    const maxAbs = tf.mul(tf.onesLike(min), tf.max(d));
    const stats = tf.stack([...side(xa, min, max), ...side(xb, min, max), ...side(d, zero, range), maxAbs]);
    const q = (x: tf.Tensor3D, lo: tf.Tensor, hi: tf.Tensor) => (kind === 'map' ? tf.transpose(quantise(areaDownsample(x, f), lo, hi), [2, 0, 1]) : tf.reshape(quantise(x, lo, hi), [c]));
    return [stats, q(xa, min, max), q(xb, min, max), q(d, zero, range)];
  });
  const [s, ba, bb, bd] = await Promise.all([packed.data(), qa.data(), qb.data(), qd.data()]);
  const [oh, ow] = kind === 'map' ? qa.shape.slice(1) : [1, 1];
  tf.dispose([packed, qa, qb, qd]);
  const n = kind === 'map' ? c : 1;
  const block = 5 * n;
  const maps = (offset: number, bytes: ArrayLike<number>): LayerMaps => ({
    path: layerPath,
    kind,
    channels: c,
    height: oh,
    width: ow,
    fullHeight: kind === 'map' ? h : 1,
    fullWidth: kind === 'map' ? w : 1,
    stats: Array.from({ length: n }, (_, i) => statsAt(s.subarray(offset), i, n)),
    data: Uint8Array.from(bytes),
  });
  return { path: layerPath, kind, a: maps(0, ba), b: maps(block, bb), diff: maps(2 * block, bd), maxAbsDiff: s[3 * block] };
}

export class Comparer {
  private readonly states = new Map<string, State>();
  /** Shared with every other user of tfjs in this process (lane.ts). */
  constructor(private readonly lane: Lane = tfjsLane) {}

  private serial<T>(fn: () => T | Promise<T>): Promise<T> {
    return this.lane.run(fn);
  }

  /**
   * Matches the layers of `a` (the reference) and `b`, measures each matched
   * layer's weight drift, and runs both on the image at `imagePath`.
   */
  compare(a: LoadedModel, b: LoadedModel, imagePath: string, normalization: Normalization, options: CompareOptions = {}): Promise<CompareResult> {
    // Decoded reduced to about the size the models take (see DecodeOptions.fit).
    const fit = (size: { width: number; height: number }) => inputGeometry(a.summary.name, a.summary.inputShape, { purpose: 'inspect', image: size });
    return this.serial(async () => this.run(a, b, await readImageFile(imagePath, fit), imagePath, normalization, options));
  }

  private async run(a: LoadedModel, b: LoadedModel, image: DecodedImage, imagePath: string, normalization: Normalization, options: CompareOptions): Promise<CompareResult> {
    const start = performance.now();
    const onnx = sameFormat(a, b);
    checkSameInput(a, b);
    const key = keyOf(a.summary.modelPath, b.summary.modelPath);
    this.drop(key);
    const matching = matchLayers(a.summary.layers, b.summary.layers);
    let drifts: WeightDrift[];
    if (onnx) {
      drifts = onnxWeightDrifts(a.onnx!, b.onnx!, matching.pairs.map((p) => [p.a.path, p.b.path] as const));
    } else {
      const layersA = new Map([...walkLayers(layersOf(a, 'A'))].map((e) => [e.path, e.layer]));
      const layersB = new Map([...walkLayers(layersOf(b, 'B'))].map((e) => [e.path, e.layer]));
      drifts = weightDrifts(matching.pairs.map((p) => [layersA.get(p.a.path)!, layersB.get(p.b.path)!] as const));
    }

    const { input, seen } = prepareInput(a.summary, image, normalization);
    let actsA: Activations | undefined;
    let actsB: Activations | undefined;
    try {
      actsA = await forward(a, input);
      actsB = await forward(b, input);
      const changes = activationChanges(matching, actsA, actsB);
      const layers: LayerDrift[] = matching.pairs.map((p, i) => {
        const t = actsA!.byPath.get(p.a.path);
        return {
          path: p.a.path,
          pathB: p.b.path,
          matchedBy: p.by,
          className: p.a.className,
          depth: p.a.depth,
          isContainer: p.a.isContainer,
          shape: p.a.outputShape,
          params: p.a.params,
          trainableB: p.b.trainable,
          weightDrift: drifts[i].drift,
          weightChange: drifts[i].change,
          weightNorm: drifts[i].norm,
          ...(drifts[i].note ? { driftNote: drifts[i].note } : {}),
          activationChange: changes[i],
          kind: t ? kindOf(t.shape.slice(1)) : 'other',
        };
      });
      const side = async (m: LoadedModel, acts: Activations): Promise<CompareSide> => {
        const { predictions, probabilities } = await topPredictions(acts.output, m.summary.labels, options.topK ?? 5);
        return { modelPath: m.summary.modelPath, name: m.summary.name, ...(m.summary.labels ? { labels: m.summary.labels } : {}), predictions, probabilities, totalParams: m.summary.totalParams };
      };
      const notes: string[] = [];
      const na = a.summary.normalization;
      const nb = b.summary.normalization;
      if (na && nb && na !== nb) notes.push(`${a.summary.name} asks for ${na} pixels and ${b.summary.name} for ${nb}; both ran with ${normalization}.`);
      if (matching.onlyA.length + matching.onlyB.length > 0) notes.push(`${matching.onlyA.length} layer${matching.onlyA.length === 1 ? '' : 's'} of A and ${matching.onlyB.length} of B match nothing on the other side (a replaced head, for instance); they are listed, not compared.`);
      if (a.summary.modelPath === b.summary.modelPath) notes.push('A and B are the same model file.');
      const result: CompareResult = {
        a: await side(a, actsA),
        b: await side(b, actsB),
        imagePath,
        input: { width: seen.width, height: seen.height, rgb: seen.data },
        normalization,
        layers,
        onlyA: matching.onlyA,
        onlyB: matching.onlyB,
        notes,
        ms: Math.round(performance.now() - start),
      };
      this.states.set(key, { a, b, input, actsA, actsB, result, pathB: new Map(matching.pairs.map((p) => [p.a.path, p.b.path])) });
      return result;
    } catch (e) {
      if (actsA) disposeActivations(actsA);
      if (actsB) disposeActivations(actsB);
      input.dispose();
      throw e;
    }
  }

  lastResult(aPath: string, bPath: string): CompareResult | undefined {
    return this.states.get(keyOf(aPath, bPath))?.result;
  }

  /** A's and B's maps of one matched layer (by A's path), and |B − A|; maxSize as in Inspector.layerMaps. */
  maps(aPath: string, bPath: string, layerPath: string, maxSize: number): Promise<CompareMaps> {
    return this.serial(() => {
      const s = this.states.get(keyOf(aPath, bPath));
      if (!s) throw new EngineError('bad-input', 'these two models have not been compared on an image yet; compare them first.');
      const pb = s.pathB.get(layerPath);
      const ta = s.actsA.byPath.get(layerPath);
      const tb = pb === undefined ? undefined : s.actsB.byPath.get(pb);
      if (!ta || !tb) throw new EngineError('bad-input', `layer "${layerPath}" is not a matched layer of ${s.a.summary.name} and ${s.b.summary.name}.`);
      return quantisePair(layerPath, ta, tb, maxSize);
    });
  }

  /**
   * Linear CKA of every matched layer of `a` and `b` over the images at
   * `imagePaths` (unreadable ones are skipped with a note). Each image runs
   * through both models once; per layer, at most `maxFeatures` values per
   * image are kept (sampleIndices), in float32, and the CKA is computed in
   * float64 from their Gram matrices.
   */
  similarity(a: LoadedModel, b: LoadedModel, imagePaths: readonly string[], normalization: Normalization, options: SimilarityOptions = {}): Promise<SimilarityResult> {
    return this.serial(() => similarity(a, b, imagePaths, normalization, options));
  }

  private drop(key: string): void {
    const s = this.states.get(key);
    if (!s) return;
    disposeActivations(s.actsA);
    disposeActivations(s.actsB);
    s.input.dispose();
    this.states.delete(key);
  }

  /** Frees every kept comparison that involves this model. */
  release(modelPath: string): void {
    const p = path.resolve(modelPath);
    for (const key of [...this.states.keys()]) if (key.split('\n').includes(p)) this.drop(key);
  }

  dispose(): void {
    for (const key of [...this.states.keys()]) this.drop(key);
  }
}

/** ||b − a|| / ||a|| of each matched layer's output, one download for all. */
function activationChanges(matching: LayerMatching, actsA: Activations, actsB: Activations): (number | null)[] {
  const idx: number[] = [];
  const sums = tf.tidy(() => {
    const parts: tf.Tensor[] = [];
    matching.pairs.forEach((p, i) => {
      const ta = actsA.byPath.get(p.a.path);
      const tb = actsB.byPath.get(p.b.path);
      if (!ta || !tb || ta.shape.join(',') !== tb.shape.join(',')) return;
      const fa = tf.cast(ta, 'float32');
      parts.push(tf.sum(tf.square(tf.sub(tf.cast(tb, 'float32'), fa))), tf.sum(tf.square(fa)));
      idx.push(i);
    });
    return parts.length ? tf.stack(parts) : tf.zeros([0]);
  });
  const v = sums.dataSync();
  sums.dispose();
  const out: (number | null)[] = matching.pairs.map(() => null);
  idx.forEach((i, k) => {
    const norm = Math.sqrt(v[2 * k + 1]);
    out[i] = norm > 0 ? Math.sqrt(v[2 * k]) / norm : null;
  });
  return out;
}

async function similarity(a: LoadedModel, b: LoadedModel, imagePaths: readonly string[], normalization: Normalization, o: SimilarityOptions): Promise<SimilarityResult> {
  const start = performance.now();
  if (!sameFormat(a, b)) {
    layersOf(a, 'A');
    layersOf(b, 'B');
  }
  checkSameInput(a, b);
  const matching = matchLayers(a.summary.layers, b.summary.layers);
  const notes: string[] = [];
  const checkCancel = () => {
    if (o.signal?.aborted) throw new CancelledError('The similarity measure');
  };

  // Decode the images first: the readable ones fix n, and the first fixes the input size.
  const images: DecodedImage[] = [];
  const bad: string[] = [];
  // Each decoded reduced to about the input size, which the first image fixes for a model that takes any size.
  let first: { width: number; height: number } | undefined;
  const fit = (size: { width: number; height: number }) => inputGeometry(a.summary.name, a.summary.inputShape, { purpose: 'inspect', image: (first ??= size) });
  for (const p of imagePaths) {
    checkCancel();
    try {
      images.push(await readImageFile(p, fit));
    } catch (e) {
      if (images.length === 0) first = undefined;
      bad.push(`${path.basename(p)} (${e instanceof Error ? e.message : String(e)})`);
    }
  }
  if (bad.length > 0) notes.push(`Skipped ${bad.length} unreadable image${bad.length > 1 ? 's' : ''}: ${bad.slice(0, 3).join('; ')}${bad.length > 3 ? '; …' : ''}`);
  const n = images.length;
  if (n < 2) notes.push(`CKA compares how activations vary across images, so it needs at least 2 images (${n === 0 ? 'none' : 'only 1'} could be used); pick a folder with more images.`);

  let result: LayerSimilarity[] = [];
  if (n >= 1) {
    const geo = inputGeometry(a.summary.name, a.summary.inputShape, { purpose: 'inspect', image: images[0].original ?? images[0] });
    // Shapes from a first pass: they decide how many features each layer keeps.
    type Plan = { path: string; pathB: string; total: number; indices?: Int32Array; idx?: tf.Tensor; kept: number; xa: Float32Array; xb: Float32Array };
    let plans: Plan[] = [];
    const maxBytes = o.maxBytes ?? 256 * 1024 * 1024;
    const extract = (acts: Activations, side: 'a' | 'b', i: number) => {
      const flat = tf.tidy(() => {
        const parts: tf.Tensor[] = [];
        for (const p of plans) {
          const t = acts.byPath.get(side === 'a' ? p.path : p.pathB)!;
          const f = tf.reshape(tf.cast(t, 'float32'), [-1]);
          parts.push(p.idx ? tf.gather(f, p.idx) : f);
        }
        return parts.length ? tf.concat(parts) : tf.zeros([0]);
      });
      const v = flat.dataSync() as Float32Array;
      flat.dispose();
      let off = 0;
      for (const p of plans) {
        (side === 'a' ? p.xa : p.xb).set(v.subarray(off, off + p.kept), i * p.kept);
        off += p.kept;
      }
    };
    try {
      for (let i = 0; i < n; i++) {
        checkCancel();
        const { input } = prepareInput(a.summary, images[i], normalization, geo);
        try {
          const actsA = await forward(a, input);
          try {
            if (i === 0) {
              const shapes = matching.pairs
                .map((p) => ({ p, t: actsA.byPath.get(p.a.path) }))
                .filter((e): e is { p: (typeof matching.pairs)[number]; t: tf.Tensor } => e.t !== undefined);
              const totals = shapes.map((e) => e.t.size);
              // Shrink the per-layer budget until 2 models × n images × the kept features fit in maxBytes.
              let maxFeatures = o.maxFeatures ?? 2048;
              const bytes = (mf: number) => 2 * n * 4 * totals.reduce((s, t) => s + Math.min(t, mf), 0);
              while (maxFeatures > 16 && bytes(maxFeatures) > maxBytes) maxFeatures = Math.floor(maxFeatures / 2);
              plans = shapes.map(({ p, t }) => {
                const indices = sampleIndices(t.shape.slice(1), maxFeatures);
                const kept = indices ? indices.length : t.size;
                return { path: p.a.path, pathB: p.b.path, total: t.size, indices, idx: indices ? tf.tensor1d(indices, 'int32') : undefined, kept, xa: new Float32Array(n * kept), xb: new Float32Array(n * kept) };
              });
              const sampled = plans.filter((p) => p.indices).length;
              if (sampled > 0) notes.push(`${sampled} layer${sampled > 1 ? 's' : ''} larger than ${maxFeatures} values per image: CKA used ${maxFeatures} of their values (every channel at seeded random positions), the same for both models.`);
            }
            extract(actsA, 'a', i);
          } finally {
            disposeActivations(actsA);
          }
          const actsB = await forward(b, input);
          try {
            extract(actsB, 'b', i);
          } finally {
            disposeActivations(actsB);
          }
        } finally {
          input.dispose();
        }
        o.onProgress?.({ done: i + 1, total: n });
        // Let a cancel arrive between images.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      result = plans.map((p) => ({ path: p.path, cka: linearCka(p.xa, p.xb, n, p.kept, p.kept), features: p.kept, totalFeatures: p.total }));
    } finally {
      for (const p of plans) p.idx?.dispose();
    }
  }
  return {
    ...(o.folder ? { folder: o.folder } : {}),
    images: n,
    found: o.found ?? imagePaths.length,
    layers: result,
    notes,
    ms: Math.round(performance.now() - start),
  };
}
