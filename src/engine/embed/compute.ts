/**
 * Embeddings of an image folder at one layer of a model, computed in batches
 * and cached on disk (store.ts): a second run over the same folder reads the
 * cache and computes only the images that changed or are new.
 *
 * The layer's output comes from the flat graph (inspect/flatGraph.ts), so any
 * layer works, nested ones included, and only the steps the layer depends on
 * run. Layers run in inference mode (BatchNormalization uses its moving
 * statistics, Dropout is off), as model.predict does.
 *
 * A feature map larger than `maxDim` values per image is averaged over its
 * height and width (global average pooling) before it is stored: 10,000
 * images of a 29x29x32 map would be 1 GB, and the map of a latent space does
 * not need the positions. The manifest records the pooling.
 */
import * as tf from '@tensorflow/tfjs';
import * as path from 'node:path';
import { CancelledError, EngineError, isEngineError } from '../errors';
import { decodeImage, imageLimits, toInputTensor } from '../image';
import { fsCauseOrMessage } from '../io/fsErrors';
import { readRegularFile } from '../io/safeRead';
import { flatGraph, type FlatGraph } from '../inspect/flatGraph';
import type { LoadedModel } from '../model';
import type { NodeValue } from '../onnx/model';
import { viewShape } from '../onnx/inspect';
import { findFeatureCut } from '../train/head';
import type { EmbedProgress, EmbeddingKey, EmbeddingSummary } from '../../protocol/embed';
import type { Normalization, Shape } from '../../protocol/model';
import { scanImageFolder, type ImageEntry } from './images';
import { cacheSlot, fileStamp, modelHash, readCache, StoredIndex, writeCache, type ManifestFile } from './store';
import { batchShape, inputGeometry } from '../inputGeometry';

/** Largest embedding stored whole; larger feature maps are averaged over space. */
export const MAX_DIM = 4096;

export interface EmbeddingSet {
  summary: Omit<EmbeddingSummary, 'setId'>;
  /** count * dim values, row i for images[i]. */
  vectors: Float32Array;
  dim: number;
  /** The images embedded (decodable ones), in folder order. */
  images: ImageEntry[];
  classes: string[] | null;
}

export interface ComputeOptions {
  loaded: LoadedModel;
  datasetDir: string;
  /** Layer path; default: the last feature layer (the input of the classification head). */
  layer?: string;
  normalization?: Normalization;
  batchSize?: number;
  signal?: AbortSignal;
  onProgress?: (p: EmbedProgress) => void;
  /** Write the cache (default true). */
  write?: boolean;
}

/** The default layer: the last feature layer before the classification head, else the layer before the output. */
export function defaultEmbeddingLayer(loaded: LoadedModel): string {
  if (loaded.onnx) {
    const v = loaded.onnx.featureValue();
    return loaded.onnx.pathOfValue(v) ?? v;
  }
  if (loaded.layers) {
    try {
      return findFeatureCut(loaded.layers, loaded.summary.name).layer.name;
    } catch {
      const top = loaded.layers.layers;
      return top[top.length - 1].name;
    }
  }
  const rows = loaded.summary.layers;
  if (rows.length === 0) throw new EngineError('bad-input', `${loaded.summary.name} has no layers to embed with.`);
  return rows[Math.max(0, rows.length - 2)].path;
}

function firstShape(s: Shape | Shape[]): Shape {
  return Array.isArray(s[0]) ? (s as Shape[])[0] : (s as Shape);
}

/** One image's output shape at `layer` (without the batch dimension), from the layer table. */
export function layerFeatureShape(loaded: LoadedModel, layer: string): number[] | undefined {
  if (loaded.onnx) {
    // The engine's layout: a node's [n, c, h, w] map is described as [h, w, c].
    const dims = loaded.onnx.shapes.get(loaded.onnx.valueOf(layer));
    return dims ? viewShape(dims).shape : undefined;
  }
  const row = loaded.summary.layers.find((r) => r.path === layer);
  if (!row) return undefined;
  const shape = firstShape(row.outputShape).slice(1);
  return shape.every((d) => d != null && d > 0) ? (shape as number[]) : undefined;
}

/** Indices of the steps slot `target` depends on, in run order. */
function stepsFor(g: FlatGraph, target: number): number[] {
  const need = new Set<number>();
  const stack = [target];
  const seen = new Set<number>();
  while (stack.length > 0) {
    const s = stack.pop()!;
    if (seen.has(s)) continue;
    seen.add(s);
    const p = g.producer[s];
    if (p === undefined || p < 0 || need.has(p)) continue;
    need.add(p);
    for (const i of g.steps[p].inputs) stack.push(i);
  }
  return [...need].sort((a, b) => a - b);
}

/**
 * A function from model inputs to the output of layer `layer` (inference
 * mode). Call inside tf.tidy.
 */
export function layerFunction(loaded: LoadedModel, layer: string): (xs: tf.Tensor) => tf.Tensor {
  const name = loaded.summary.name;
  if (loaded.onnx) throw new EngineError('internal', `${name} is an ONNX model; its layers run in ONNX Runtime (onnxRows), not as tfjs functions.`);
  if (loaded.layers) {
    const g = flatGraph(loaded.layers);
    const slots = g.layerSlots.get(layer);
    if (!slots) {
      const near = loaded.summary.layers.slice(-4).map((r) => r.path).join(', ');
      throw new EngineError('bad-input', `${layer} is not a layer of ${name} with an output of its own; pick a layer from the layer table (e.g. ${near}).`);
    }
    const target = slots[0];
    const steps = stepsFor(g, target);
    return (xs) => {
      const values: (tf.Tensor | undefined)[] = new Array(g.slotCount);
      values[g.inputSlots[0]] = xs;
      for (const i of steps) {
        const step = g.steps[i];
        const ins = step.inputs.map((s) => values[s]!);
        const y = step.layer.apply(ins.length === 1 ? ins[0] : ins, step.kwargs) as tf.Tensor | tf.Tensor[];
        const ys = Array.isArray(y) ? y : [y];
        step.outputs.forEach((s, k) => (values[s] = ys[k]));
      }
      return values[target]!;
    };
  }
  const graph = loaded.graph;
  if (!graph) throw new EngineError('internal', `${name}: neither a layers nor a graph model.`);
  if (!loaded.summary.layers.some((r) => r.path === layer)) throw new EngineError('bad-input', `${layer} is not a node of ${name}.`);
  const input = graph.inputs[0].name;
  // A channels-first node (graphs converted from PyTorch) is pooled over its spatial axes like any other map.
  if (loaded.channelsFirst?.has(layer)) {
    return (xs) =>
      tf.tidy(() => {
        const y = graph.execute({ [input]: xs }, layer) as tf.Tensor;
        return y.rank === 4 ? tf.transpose(y, [0, 2, 3, 1]) : y;
      });
  }
  return (xs) => graph.execute({ [input]: xs }, layer) as tf.Tensor;
}

/** [n, ...] layer outputs to [n, dim] rows: whole, or averaged over space for large maps. */
function toRows(y: tf.Tensor, pooling: 'none' | 'mean'): tf.Tensor2D {
  const n = y.shape[0];
  if (pooling === 'mean' && y.rank === 4) return tf.mean(y, [1, 2]) as tf.Tensor2D;
  return tf.reshape(y, [n, -1]) as tf.Tensor2D;
}

/** An ONNX node's [n, c, h, w] (or [n, …]) values as [n, dim] rows in the engine's order: [h, w, c] flattened, or the channel means. */
export function onnxRows(v: NodeValue, pooling: 'none' | 'mean'): Float32Array {
  const n = v.dims[0];
  if (v.dims.length !== 4) return v.data;
  const [, c, h, w] = v.dims;
  const hw = h * w;
  const out = new Float32Array(pooling === 'mean' ? n * c : v.data.length);
  for (let b = 0; b < n; b++) {
    const src = b * c * hw;
    for (let k = 0; k < c; k++) {
      if (pooling === 'mean') {
        let s = 0;
        for (let p = 0; p < hw; p++) s += v.data[src + k * hw + p];
        out[b * c + k] = s / hw;
      } else {
        for (let p = 0; p < hw; p++) out[src + p * c + k] = v.data[src + k * hw + p];
      }
    }
  }
  return out;
}

export function poolingFor(featureShape: number[]): 'none' | 'mean' {
  const size = featureShape.reduce((a, b) => a * b, 1);
  return featureShape.length === 3 && size > MAX_DIM ? 'mean' : 'none';
}

interface Decoded {
  index: number;
  data: Float32Array;
}

/** Computes (or reads from the cache) the embeddings of every image in a folder. */
export async function computeEmbeddings(o: ComputeOptions): Promise<EmbeddingSet> {
  const started = performance.now();
  const { loaded, signal } = o;
  const check = () => {
    if (signal?.aborted) throw new CancelledError('Computing embeddings');
  };
  const geometry = inputGeometry(loaded.summary.name, loaded.summary.inputShape, { purpose: 'embed' });
  const normalization = o.normalization ?? loaded.summary.normalization ?? 'zeroOne';
  const layer = o.layer ?? defaultEmbeddingLayer(loaded);
  const onnx = loaded.onnx;
  const run = onnx ? undefined : layerFunction(loaded, layer);
  let featureShape = layerFeatureShape(loaded, layer);
  if (onnx && !featureShape) {
    const [v] = await onnx.values({ data: new Float32Array(geometry.height * geometry.width * geometry.channels), dims: [1, geometry.height, geometry.width, geometry.channels] }, [onnx.valueOf(layer)]);
    featureShape = viewShape(v.dims).shape;
  }
  if (run && !featureShape) {
    // Shapes the layer table leaves open: run one blank image to see.
    const probe = tf.tidy(() => run(tf.zeros(batchShape(geometry, 1))));
    featureShape = probe.shape.slice(1);
    probe.dispose();
  }
  if (!featureShape) throw new EngineError('internal', `${loaded.summary.name}: the output shape of ${layer} is unknown.`);
  const pooling = poolingFor(featureShape);
  const dim = pooling === 'mean' ? featureShape[featureShape.length - 1] : featureShape.reduce((a, b) => a * b, 1);
  const key: EmbeddingKey = { layer, normalization, imageSize: [geometry.height, geometry.width], pooling };

  const folder = await scanImageFolder(o.datasetDir, signal);
  check();
  o.onProgress?.({ type: 'scan', files: folder.images.length });
  const hash = await modelHash(loaded.files);
  const slot = cacheSlot(loaded.files, folder.dir, key);
  const { stored, dir: readFrom } = await readCache(slot, { modelHash: hash, key });
  let cacheDir = readFrom;
  const warnings = [...folder.warnings];
  const index = new StoredIndex(stored && stored.manifest.dim === dim ? stored : undefined);

  const n = folder.images.length;
  const rows = new Array<Float32Array | undefined>(n);
  const stamps = await Promise.all(folder.images.map((im) => fileStamp(im.file)));
  const todo: number[] = [];
  let reused = 0;
  folder.images.forEach((im, i) => {
    const st = stamps[i];
    const hit = st ? index.lookup(im.rel, st.size, st.mtimeMs) : undefined;
    if (hit) {
      rows[i] = hit;
      reused++;
    } else if (st) todo.push(i);
  });
  const skipped = [...folder.skipped];
  for (let i = 0; i < n; i++) if (!stamps[i]) skipped.push({ file: folder.images[i].rel, detail: 'disappeared during the scan' });
  const keptPaths = new Set(folder.images.map((im) => im.rel));
  let dropped = 0;
  for (const p of index.paths()) if (!keptPaths.has(p)) dropped++;

  const bs = Math.max(1, o.batchSize ?? 32);
  let done = 0;
  let lastReport = 0;
  const report = (force = false) => {
    const now = performance.now();
    if (!force && now - lastReport < 200) return;
    lastReport = now;
    o.onProgress?.({ type: 'embed', done: done + reused, total: n, reused });
  };
  report(true);
  const decode = async (i: number): Promise<Decoded | undefined> => {
    const im = folder.images[i];
    try {
      const bytes = await readRegularFile(im.file, { shown: im.rel, maxBytes: imageLimits.maxFileBytes });
      const img = decodeImage(bytes, im.rel, { quote: !im.outside, fit: () => geometry });
      const t = toInputTensor(img, geometry.height, geometry.width, normalization, geometry.channels);
      const data = t.dataSync() as Float32Array;
      t.dispose();
      return { index: i, data };
    } catch (e) {
      skipped.push({ file: im.rel, detail: isEngineError(e) ? e.message.replace(im.rel, '').replace(/^[:\s]+/, '') : `cannot be read (${fsCauseOrMessage(e)})` });
      return undefined;
    }
  };
  const pixels = geometry.height * geometry.width * geometry.channels;
  let computed = 0;
  for (let k = 0; k < todo.length; k += bs) {
    check();
    const part = todo.slice(k, k + bs);
    const decoded = (await Promise.all(part.map(decode))).filter((d): d is Decoded => d !== undefined);
    done += part.length;
    if (decoded.length > 0) {
      const data = new Float32Array(decoded.length * pixels);
      decoded.forEach((d, j) => data.set(d.data, j * pixels));
      let values: Float32Array;
      if (onnx) {
        values = onnxRows((await onnx.values({ data, dims: [decoded.length, geometry.height, geometry.width, geometry.channels] }, [onnx.valueOf(layer)]))[0], pooling);
      } else {
        const out = tf.tidy(() => toRows(run!(tf.tensor(data, batchShape(geometry, decoded.length))), pooling));
        values = (await out.data()) as Float32Array;
        out.dispose();
      }
      decoded.forEach((d, j) => (rows[d.index] = values.slice(j * dim, (j + 1) * dim)));
      computed += decoded.length;
    }
    report();
    // Let a cancel arrive between batches.
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  report(true);

  const images: ImageEntry[] = [];
  const files: ManifestFile[] = [];
  const vectors = new Float32Array(rows.filter((r) => r !== undefined).length * dim);
  folder.images.forEach((im, i) => {
    const r = rows[i];
    if (!r) return;
    vectors.set(r, images.length * dim);
    images.push(im);
    files.push({ path: im.rel, size: stamps[i]!.size, mtimeMs: stamps[i]!.mtimeMs, label: im.label });
  });
  if ((o.write ?? true) && (computed > 0 || dropped > 0 || !stored || files.length !== index.size)) {
    check();
    const written = await writeCache(slot, {
      ...key,
      modelHash: hash,
      model: path.basename(loaded.files.modelJsonPath),
      datasetDir: folder.dir,
      featureShape,
      dim,
      classes: folder.classes,
      files,
    }, vectors);
    cacheDir = written.dir;
    if (written.warning) warnings.push(written.warning);
  }
  const counts = folder.classes ? folder.classes.map((_, c) => images.filter((im) => im.label === c).length) : [images.length];
  return {
    summary: {
      ...key,
      modelPath: loaded.files.modelJsonPath,
      datasetDir: folder.dir,
      cacheDir,
      dim,
      featureShape,
      count: images.length,
      classes: folder.classes,
      counts,
      computed,
      reused,
      dropped,
      skipped,
      ...(warnings.length > 0 ? { warnings } : {}),
      seconds: (performance.now() - started) / 1000,
    },
    vectors,
    dim,
    images,
    classes: folder.classes,
  };
}

