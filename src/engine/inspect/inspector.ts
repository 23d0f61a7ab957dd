/**
 * The inspector's engine side: one forward pass per (model, image) keeps every
 * layer's output in the backend; the layer list, predictions, one layer's maps
 * and Grad-CAM are all served from it. One Inspector per process (the worker
 * or the CLI); it holds the last inspection of each model until the next one
 * (which disposes it), `release(model)` or `dispose()`.
 *
 * Calls queue on the process's tfjs lane (lane.ts), with the Comparer's: a
 * second request arriving while the first awaits a download must not dispose
 * the tensors the first is still reading.
 */
import * as tf from '@tensorflow/tfjs';
import * as path from 'node:path';
import { EngineError } from '../errors';
import { normalizePixels, pixelsToBytes, readImageFile, resizeToTensor, type DecodedImage } from '../image';
import type { LoadedModel } from '../model';
import type { GradCamResult, InspectResult, LayerMaps } from '../../protocol/inspect';
import type { Normalization } from '../../protocol/model';
import { computeActivations, disposeActivations, layerInfos, quantiseLayer, topPredictions, type Activations } from './activations';
import { outputImage, outputKind } from './outputs';
import { computeGradCam } from './gradCam';
import { tfjsLane, type Lane } from '../lane';
import { inputGeometry } from '../inputGeometry';
import { nodeValue, onnxLayerInfos, runAllNodes, scoreCam, toEngineLayout, type OnnxRun } from '../onnx/inspect';

export interface InspectOptions {
  /** How many predictions to return (default 5). */
  topK?: number;
  /** Which output's predictions to show, for a model with several (default 0, the first). */
  output?: number;
}

interface State {
  loaded: LoadedModel;
  input: tf.Tensor;
  acts: Activations;
  /** ONNX models: the run's node outputs (acts is then empty). */
  onnx?: OnnxRun;
  result: InspectResult;
}

/** A model as messages name it: its folder for a model.json, else the file. */
function shownModel(modelPath: string): string {
  const file = path.basename(modelPath);
  return file === 'model.json' ? path.basename(path.dirname(path.resolve(modelPath))) : file;
}

/** True once the model's weights were disposed (the session reloaded or unloaded it). */
function modelDisposed(model: tf.LayersModel): boolean {
  const w = model.weights[0];
  if (!w) return false;
  try {
    w.read();
    return false;
  } catch {
    return true;
  }
}

/**
 * Every output's kind, and the chosen one's predictions (top-k classes), values
 * or image. The labels belong to the first output; other outputs name their
 * classes by index.
 */
async function describeOutputs(loaded: LoadedModel, acts: Activations, input: tf.Tensor, normalization: Normalization, options: InspectOptions): Promise<Pick<InspectResult, 'predictions' | 'probabilities' | 'outputs' | 'output' | 'values' | 'image'>> {
  const index = Math.min(Math.max(0, Math.floor(options.output ?? 0)), acts.outputs.length - 1);
  const names = loaded.summary.outputs;
  const outputs = await Promise.all(
    acts.outputs.map(async (t, i) => {
      const shape = t.shape.slice(1);
      // Only the chosen and the small outputs are read to tell their kind; an image's shape tells it alone.
      const values = i === index || t.size <= 4096 ? await t.data() : new Float32Array(0);
      return { name: names[i]?.name ?? `output ${i + 1}`, shape, kind: outputKind(shape, values, i === 0 && loaded.summary.labels !== undefined) };
    }),
  );
  const chosen = acts.outputs[index];
  const labels = index === 0 ? loaded.summary.labels : undefined;
  const { predictions, probabilities } = await topPredictions(chosen, labels, outputs[index].kind === 'classes' ? (options.topK ?? 5) : 0);
  const base = { predictions, probabilities, outputs, output: index };
  if (outputs[index].kind === 'values') return { ...base, values: Array.from((await chosen.data()).subarray(0, 64)) };
  if (outputs[index].kind === 'image') return { ...base, image: await outputImage(chosen, input, normalization) };
  return base;
}

export class Inspector {
  private readonly states = new Map<string, State>();
  /** Shared with every other user of tfjs in this process (lane.ts). */
  constructor(private readonly lane: Lane = tfjsLane) {}

  private serial<T>(fn: () => T | Promise<T>): Promise<T> {
    return this.lane.run(fn);
  }

  /** Reads `imagePath` and inspects `loaded` with it. */
  inspect(loaded: LoadedModel, imagePath: string, normalization: Normalization, options: InspectOptions = {}): Promise<InspectResult> {
    // Decoded reduced to about the size the model takes (the geometry as run() will find it from the file's size).
    const fit = (size: { width: number; height: number }) => inputGeometry(loaded.summary.name, loaded.summary.inputShape, { purpose: 'inspect', image: size });
    return this.serial(async () => this.run(loaded, await readImageFile(imagePath, fit), imagePath, normalization, options));
  }

  /** Inspects with an already decoded image (`imagePath` is only reported). */
  inspectImage(loaded: LoadedModel, image: DecodedImage, imagePath: string, normalization: Normalization, options: InspectOptions = {}): Promise<InspectResult> {
    return this.serial(() => this.run(loaded, image, imagePath, normalization, options));
  }

  private async run(loaded: LoadedModel, image: DecodedImage, imagePath: string, normalization: Normalization, options: InspectOptions): Promise<InspectResult> {
    const key = path.resolve(loaded.summary.modelPath);
    if (loaded.onnx) return this.runOnnx(loaded, image, imagePath, normalization, options);
    const inputs = loaded.layers?.inputs.length ?? loaded.graph?.inputs.length ?? 1;
    if (inputs !== 1) throw new EngineError('bad-input', `${loaded.summary.name} takes ${inputs} inputs; inspecting with an image needs a model with one image input.`);
    const geo = inputGeometry(loaded.summary.name, loaded.summary.inputShape, { purpose: 'inspect', image: image.original ?? image });
    // The new image replaces the old one now, before the forward pass: its
    // memory is then reused instead of a second set of activations being
    // allocated next to it (measurably slower on wasm's heap).
    this.drop(key);
    const start = performance.now();
    // One resize serves both the input and the picture of what the model saw.
    const pixels = resizeToTensor(image, geo.height, geo.width);
    let seen: DecodedImage;
    let input: tf.Tensor;
    try {
      seen = image.width === geo.width && image.height === geo.height ? image : { width: geo.width, height: geo.height, data: pixelsToBytes(pixels.dataSync()) };
      input = tf.tidy(() => {
        const x = normalizePixels(pixels, normalization, geo.channels);
        return geo.rank === 4 ? tf.expandDims(x, 0) : tf.reshape(x, [1, geo.height, geo.width]);
      });
    } finally {
      pixels.dispose();
    }
    let acts: Activations;
    try {
      acts = computeActivations(loaded, input);
    } catch (e) {
      input.dispose();
      if (e instanceof EngineError) throw e;
      throw new EngineError('internal', `${loaded.summary.name}: the forward pass failed (${e instanceof Error ? e.message.split('\n')[0] : String(e)}).`);
    }
    try {
      const layers = layerInfos(loaded, acts);
      const shown = await describeOutputs(loaded, acts, input, normalization, options);
      const { predictions, probabilities } = shown;
      const ms = Math.round(performance.now() - start);
      const notes: string[] = [];
      if (!layers.some((l) => l.kind === 'map')) notes.push(`No layer of ${loaded.summary.name} outputs a feature map [h, w, c], so there are no channel grids to show; the layer statistics and predictions still apply.`);
      // Named by its own file: a Keras model is an .h5 or .keras file, not a model.json.
      if (!loaded.summary.labels) notes.push(`The model has no labels (no metadata.json or labels.txt next to ${path.basename(loaded.summary.modelPath)}); classes are shown by index. A labels.txt there, one label a line in output order, names them.`);
      const result: InspectResult = {
        imagePath,
        input: { width: seen.width, height: seen.height, rgb: seen.data },
        inputShape: loaded.summary.inputShape,
        normalization,
        layers,
        predictions,
        probabilities,
        outputs: shown.outputs,
        output: shown.output,
        ...(shown.values ? { values: shown.values } : {}),
        ...(shown.image ? { image: shown.image } : {}),
        ms,
        ...(notes.length > 0 ? { notes } : {}),
      };
      this.states.set(key, { loaded, input, acts, result });
      return result;
    } catch (e) {
      disposeActivations(acts);
      input.dispose();
      throw e;
    }
  }

  /** The same inspection for an ONNX model: ONNX Runtime computes, tf only prepares the image. */
  private async runOnnx(loaded: LoadedModel, image: DecodedImage, imagePath: string, normalization: Normalization, options: InspectOptions): Promise<InspectResult> {
    const model = loaded.onnx!;
    const key = path.resolve(loaded.summary.modelPath);
    const geo = inputGeometry(loaded.summary.name, loaded.summary.inputShape, { purpose: 'inspect', image });
    this.drop(key);
    const start = performance.now();
    const pixels = resizeToTensor(image, geo.height, geo.width);
    let seen: DecodedImage;
    let data: Float32Array;
    try {
      seen = image.width === geo.width && image.height === geo.height ? image : { width: geo.width, height: geo.height, data: pixelsToBytes(pixels.dataSync()) };
      const x = tf.tidy(() => normalizePixels(pixels, normalization, geo.channels));
      data = x.dataSync() as Float32Array;
      x.dispose();
    } finally {
      pixels.dispose();
    }
    const run = await runAllNodes(model, { data, dims: [1, geo.height, geo.width, geo.channels] });
    const layers = onnxLayerInfos(model, loaded.summary.layers, run);
    const out = tf.tensor(run.output.data, run.output.dims);
    let top: Awaited<ReturnType<typeof topPredictions>>;
    try {
      top = await topPredictions(out, loaded.summary.labels, options.topK ?? 5);
    } finally {
      out.dispose();
    }
    const notes: string[] = [];
    if (!loaded.summary.labels) notes.push(`The model has no labels (no labels.txt or metadata.json next to ${path.basename(loaded.summary.modelPath)}, no "labels" in its metadata_props); classes are shown by index. A labels.txt there, one label a line in output order, names them.`);
    if (run.values.size === 0) notes.push(`${loaded.summary.name}'s node outputs for one image exceed the memory budget, so each node's maps are computed again when you select it.`);
    const result: InspectResult = {
      imagePath,
      input: { width: seen.width, height: seen.height, rgb: seen.data },
      inputShape: loaded.summary.inputShape,
      normalization,
      layers,
      predictions: top.predictions,
      probabilities: top.probabilities,
      ms: Math.round(performance.now() - start),
      ...(notes.length > 0 ? { notes } : {}),
    };
    const none = tf.scalar(0);
    this.states.set(key, { loaded, input: tf.scalar(0), acts: { byPath: new Map(), output: none, outputs: [none], owned: [none] }, onnx: run, result });
    return result;
  }

  private state(modelPath: string): State {
    const s = this.states.get(path.resolve(modelPath));
    if (!s) throw new EngineError('bad-input', `${shownModel(modelPath)} has not been inspected with an image yet; pick an image first.`);
    return s;
  }

  /** The last InspectResult of a model, if any. */
  lastResult(modelPath: string): InspectResult | undefined {
    return this.states.get(path.resolve(modelPath))?.result;
  }

  /**
   * One layer's values quantised to bytes; maps downsampled to at most
   * `maxSize` on the longer side (0 or Infinity: full size, for the zoom).
   */
  layerMaps(modelPath: string, layerPath: string, maxSize: number): Promise<LayerMaps> {
    return this.serial(() => {
      const s = this.state(modelPath);
      if (s.onnx && s.loaded.onnx) return this.onnxMaps(s.loaded.onnx, s.onnx, layerPath, maxSize);
      const t = s.acts.byPath.get(layerPath);
      if (!t) throw new EngineError('bad-input', `${s.loaded.summary.name} has no layer "${layerPath}".`);
      return quantiseLayer(layerPath, t, maxSize);
    });
  }

  private async onnxMaps(model: NonNullable<LoadedModel['onnx']>, run: OnnxRun, layerPath: string, maxSize: number): Promise<LayerMaps> {
    const t = toEngineLayout(await nodeValue(model, run, layerPath));
    try {
      return await quantiseLayer(layerPath, t, maxSize);
    } finally {
      t.dispose();
    }
  }

  /** ONNX models: a node's output for the last image, in the engine's layout ([1, h, w, c] or [1, n]). Caller disposes. */
  async onnxActivation(modelPath: string, layerPath: string): Promise<tf.Tensor | undefined> {
    const s = this.states.get(path.resolve(modelPath));
    if (!s?.onnx || !s.loaded.onnx) return undefined;
    return toEngineLayout(await nodeValue(s.loaded.onnx, s.onnx, layerPath));
  }

  /**
   * The kept output of one layer (batch dimension included) for tests and
   * exports. Owned by the inspector: do not dispose it.
   */
  activation(modelPath: string, layerPath: string): tf.Tensor | undefined {
    return this.states.get(path.resolve(modelPath))?.acts.byPath.get(layerPath);
  }

  gradCam(modelPath: string, layerPath: string, classIndex: number): Promise<GradCamResult> {
    return this.serial(async () => {
      const s = this.state(modelPath);
      if (s.onnx && s.loaded.onnx) {
        return scoreCam(s.loaded.onnx, s.onnx, layerPath, classIndex, s.loaded.summary.labels?.[classIndex] ?? `class ${classIndex}`, s.result.input.height, s.result.input.width);
      }
      if (s.loaded.layers && modelDisposed(s.loaded.layers)) {
        throw new EngineError('bad-input', `${s.loaded.summary.name} was reloaded since this image was inspected; inspect the image again for Grad-CAM.`);
      }
      if (!s.acts.graph || !s.acts.slots) {
        throw new EngineError('bad-input', `${s.loaded.summary.name} is a graph model; Grad-CAM needs a layers model (the graph format cannot be split at a layer).`);
      }
      return computeGradCam({
        graph: s.acts.graph,
        slots: s.acts.slots,
        layerPath,
        classIndex,
        label: s.loaded.summary.labels?.[classIndex] ?? `class ${classIndex}`,
        height: s.result.input.height,
        width: s.result.input.width,
      });
    });
  }

  private drop(key: string): void {
    const s = this.states.get(key);
    if (!s) return;
    disposeActivations(s.acts);
    s.input.dispose();
    this.states.delete(key);
  }

  /** Frees the kept activations of one model (call when it is unloaded or reloaded). */
  release(modelPath: string): void {
    this.drop(path.resolve(modelPath));
  }

  dispose(): void {
    for (const key of [...this.states.keys()]) this.drop(key);
  }
}
