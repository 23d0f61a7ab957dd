/**
 * Builds tfjs models from checked model files, and describes them as plain
 * data (the layer table). Unknown and unsupported layer classes are named
 * before tfjs sees the topology, so the user gets one clear message instead of
 * tfjs's deserialisation error.
 */
import * as tf from '@tensorflow/tfjs';
import * as path from 'node:path';
import { EngineError } from './errors';
import { findUnresolvableCall, libraryReason } from './io/graphCheck';
import { clipText as clip, type ModelFiles } from './io/files';
import { readModelFiles, resolveInside } from './io/modelFiles';
import { isNormalization, type LayerRow, type ModelOutput, type ModelSummary, type Normalization, type Shape } from '../protocol/model';
import { buildGuarded, disposeCreated, registeredClasses, type BuildHooks } from './io/buildGuard';
import { normalizeFusedOps } from './io/graphFusion';
import { graphOutputs, graphParams, graphRows, graphShape } from './graphSummary';
import { adaptGraphInput, channelsFirstNodes, channelsLast, isChannelsFirst } from './graphInput';
import { detectInputPreprocessing } from './inputPreprocessing';
import { checkLayerConfigs, checkOutputShapes } from './io/geometry';
import { readRegularFile } from './io/safeRead';
import './io/normalizationLayer';
import type { OnnxModel } from './onnx/model';

export interface LoadedModel {
  files: ModelFiles;
  summary: ModelSummary;
  /** Present for layers models. */
  layers?: tf.LayersModel;
  /** Present for graph models (inference only). */
  graph?: tf.GraphModel;
  /** Graph nodes whose outputs are channels-first ([n, c, h, w]; graphInput.ts), shown transposed. */
  channelsFirst?: ReadonlySet<string>;
  /** Present for ONNX models (run by ONNX Runtime). */
  onnx?: OnnxModel;
}

/** Classes that exist in Keras but cannot be rebuilt from JSON anywhere. */
const unsupported: Record<string, string> = {
  Lambda: 'holds Python code, which cannot be loaded outside Python',
  TFOpLambda: 'wraps a raw TensorFlow op, which tfjs-layers cannot rebuild',
  SlicingOpLambda: 'wraps a raw TensorFlow op, which tfjs-layers cannot rebuild',
};

function checkLayerClasses(files: ModelFiles): void {
  const name = path.basename(files.modelJsonPath);
  // hasOwnProperty, not `in`: a class named "toString" or "__proto__" is unknown, not unsupported.
  const bad = files.layerClasses.filter((c) => Object.prototype.hasOwnProperty.call(unsupported, c));
  if (bad.length > 0) {
    throw new EngineError(
      'unsupported-layer',
      `${name} uses ${bad.map((c) => `${c} (${unsupported[c]})`).join(', ')}; replace it with built-in layers before exporting.`,
    );
  }
  const known = registeredClasses();
  const unknown = files.layerClasses.filter((c) => !known.has(c));
  if (unknown.length > 0) {
    const shown = unknown.slice(0, 5).map((c) => clip(c, 80));
    const more = unknown.length > 5 ? ` and ${unknown.length - 5} more` : '';
    throw new EngineError(
      'unknown-layer',
      `${name} uses layer class${unknown.length > 1 ? 'es' : ''} ${shown.join(', ')}${more}, which tfjs-layers does not provide (a custom layer?). Register it in tfjs or replace it before exporting.`,
    );
  }
}

/**
 * The top of a layers topology must be a model (Sequential, Model, Functional):
 * given a single layer (class_name "Dense"), tfjs decodes every weight and then
 * fails calling loadWeights on it, and those weights were never freed.
 */
function checkModelClass(topology: unknown, shown: string): void {
  const t = topology as Record<string, unknown> | null;
  const top = (typeof t?.['model_config'] === 'object' && t['model_config'] !== null ? t['model_config'] : t) as Record<string, unknown> | null;
  const cls = top?.['class_name'];
  if (typeof cls !== 'string') return; // tfjs says what is missing
  const map = tf.serialization.SerializationMap.getMap().classNameMap;
  const ctor = Object.prototype.hasOwnProperty.call(map, cls) ? map[cls][0] : undefined;
  if (ctor && ctor !== tf.LayersModel && !(ctor.prototype instanceof tf.LayersModel)) {
    throw new EngineError('not-a-model', `${shown}: its modelTopology is a ${clip(cls, 40)}, not a model (Sequential, Model or Functional); the file is damaged. Re-export the model.`);
  }
}

/**
 * tf.loadLayersModel under the build guard (io/buildGuard.ts): each weight
 * is checked before it is allocated (a shape, a name tfjs can use, no more
 * values than the manifest holds plus a little slack, so that a merely
 * incomplete manifest gets tfjs's own message naming the missing weights)
 * and once made (a unique name, the manifest entry's dtype and shape). A
 * failed build frees what it allocated.
 */
async function buildLayersModel<T>(files: ModelFiles, shown: string, describe: (model: tf.LayersModel) => T): Promise<{ model: tf.LayersModel; described: T }> {
  const specs = new Map((files.artifacts.weightSpecs ?? []).map((s) => [s.name, s]));
  const manifestValues = [...specs.values()].reduce((n, s) => n + s.shape.reduce((a, d) => a * d, 1), 0);
  const names = new Set<string>();
  const hooks: BuildHooks = {
    allowed: manifestValues + 2 ** 24,
    check: (layer, name, shape) => {
      if (!shape.every((d) => Number.isInteger(d) && d >= 0)) {
        const dims = shape.map((d) => (typeof d === 'number' ? String(d) : (JSON.stringify(d) ?? String(d))));
        throw new EngineError('not-a-model', `${shown}: layer "${clip(layer.name)}" asks for a weight of shape [${clip(dims.join(', '))}], which is not a shape; its config is damaged.`);
      }
      // tfjs refuses these names (its weight names are "<layer>/<weight>") only after allocating the weight, which then leaks.
      if (!/^[A-Za-z0-9][-A-Za-z0-9._/]*$/.test(`${layer.name}/${name}`)) {
        throw new EngineError('not-a-model', `${shown}: layer "${clip(layer.name)}" has a name tfjs cannot give its weights (letters, digits, "-", "_", "." and "/" only).`);
      }
    },
    overBudget: (layer, shape, values) =>
      new EngineError(
        'bad-weights',
        `${shown}: layer "${clip(layer.name)}" asks for a weight of shape [${clip(shape.join(', '))}] (${values} values), far more than the ${manifestValues} values its weights manifest holds; the topology does not match its weights (refused before allocating).`,
      ),
    made: (layer, w) => {
      // tfjs would find out only after building every layer (seconds for a model.json holding 1600 copies of a layer).
      if (names.has(w.originalName)) {
        throw new EngineError('not-a-model', `${shown}: the weight "${clip(w.originalName)}" is made by two layers named "${clip(layer.name)}"; layer names must be unique. Re-export the model.`);
      }
      names.add(w.originalName);
      const spec = specs.get(w.originalName);
      if (spec && spec.dtype !== w.dtype) {
        throw new EngineError(
          'bad-weights',
          `${shown}: weight "${clip(spec.name)}" is listed as ${spec.dtype} in the weights manifest, but layer "${clip(layer.name)}" stores ${w.dtype} values; the manifest does not match the model. Re-export the model.`,
        );
      }
      if (spec && spec.shape.join(',') !== w.shape.join(',')) {
        throw new EngineError(
          'bad-weights',
          `${shown}: weight "${clip(spec.name)}" has shape [${clip(spec.shape.join(', '))}] in the weights manifest, but layer "${clip(layer.name)}" needs [${clip(w.shape.join(', '))}]; the manifest does not match the model. Re-export the model.`,
        );
      }
    },
  };
  let built: { value: tf.LayersModel; created: tf.LayerVariable[] };
  try {
    built = await buildGuarded(hooks, () => tf.loadLayersModel(tf.io.fromMemory(files.artifacts)));
  } catch (e) {
    if (e instanceof EngineError) throw e;
    throw new EngineError('not-a-model', `${shown}: tfjs could not build the model from its topology and weights (${libraryReason(e)}).`);
  }
  try {
    // Sequential models build their inner graph lazily, so describing one can fail too.
    return { model: built.value, described: describe(built.value) };
  } catch (e) {
    // model.dispose() leaves the weights of a half-built nested model behind; free every weight made.
    disposeCreated(built.created);
    if (e instanceof EngineError) throw e;
    throw new EngineError('not-a-model', `${shown}: tfjs built the model but cannot describe it (${libraryReason(e)}).`);
  }
}

/** A small file (at most 1 MB) beside the model, confined to its folder; undefined when absent or unreadable. */
export async function readSmallFile(folder: string, file: string): Promise<string | undefined> {
  try {
    const p = await resolveInside(folder, file, 'model folder');
    // As io/safeRead.ts reads: an ordinary file, its size, a time limit (never a FIFO or a device).
    return Buffer.from(await readRegularFile(p, { shown: file, maxBytes: 1024 * 1024 })).toString('utf8');
  } catch {
    return undefined;
  }
}

/** Labels and preprocessing from Teachable Machine's metadata.json or a labels.txt. */
type ModelMeta = { labels?: string[]; normalization?: Normalization; normalizationFrom?: string; origin?: 'teachable-machine' };

export async function readModelMetadata(folder: string): Promise<ModelMeta> {
  const meta = await readSmallFile(folder, 'metadata.json');
  if (meta !== undefined) {
    try {
      const m = JSON.parse(meta) as Record<string, unknown>;
      const labels = Array.isArray(m['labels']) && m['labels'].every((l) => typeof l === 'string') ? (m['labels'] as string[]) : undefined;
      const norm = m['normalization'];
      let normalization: Normalization | undefined;
      const teachable = typeof m['tmVersion'] === 'string' || m['packageName'] === '@teachablemachine/image';
      const origin = teachable ? ({ origin: 'teachable-machine' } as const) : {};
      let normalizationFrom: string | undefined;
      if (isNormalization(norm)) [normalization, normalizationFrom] = [norm, "the model's metadata.json"];
      // Teachable Machine image models are trained on pixels scaled to [-1, 1].
      else if (teachable) [normalization, normalizationFrom] = ['minusOneOne', "its Teachable Machine metadata.json"];
      const from = normalizationFrom ? { normalizationFrom } : {};
      if (labels) return { labels, normalization, ...from, ...origin };
      if (normalization) return { normalization, ...from, ...origin };
    } catch {
      // A broken metadata.json must not stop the model from loading.
    }
  }
  const txt = await readSmallFile(folder, 'labels.txt');
  if (txt !== undefined) {
    const labels = txt.split(/\r?\n/).map((l) => l.trim()).filter((l) => l.length > 0);
    if (labels.length > 0) return { labels };
  }
  return {};
}

function isContainer(layer: tf.layers.Layer): layer is tf.LayersModel & tf.layers.Layer {
  return layer instanceof tf.LayersModel;
}

function weightCount(ws: tf.LayerVariable[]): number {
  let n = 0;
  for (const w of ws) n += w.shape.reduce((a: number, b) => a * (b ?? 1), 1);
  return n;
}

/**
 * Params in the weights that training updates unless the layer is frozen. The
 * public `trainableWeights` is empty for a frozen layer, so this reads the
 * list tfjs keeps whatever `trainable` says (`_trainableWeights`, protected;
 * a nested model keeps its weights in its layers).
 */
function freezableCount(layer: tf.layers.Layer): number {
  if (isContainer(layer)) return layer.layers.reduce((n, l) => n + freezableCount(l), 0);
  return weightCount((layer as unknown as { _trainableWeights: tf.LayerVariable[] })._trainableWeights);
}

/** The layer table, nested models flattened depth-first after their own row. */
export function layerRows(model: tf.LayersModel, prefix = '', depth = 0): LayerRow[] {
  const rows: LayerRow[] = [];
  for (const layer of model.layers) {
    const p = prefix ? `${prefix}/${layer.name}` : layer.name;
    const container = isContainer(layer);
    rows.push({
      path: p,
      name: layer.name,
      className: layer.getClassName(),
      outputShape: layer.outputShape as Shape | Shape[],
      params: layer.countParams(),
      trainableParams: weightCount(layer.trainableWeights),
      freezableParams: freezableCount(layer),
      trainable: layer.trainable,
      depth,
      isContainer: container,
      ...(prefix ? { parent: prefix } : {}),
    });
    if (container) rows.push(...layerRows(layer, p, depth + 1));
  }
  return rows;
}

/** Walks a model's layers, nested ones included, with their paths. */
export function* walkLayers(model: tf.LayersModel, prefix = ''): Generator<{ path: string; layer: tf.layers.Layer }> {
  for (const layer of model.layers) {
    const p = prefix ? `${prefix}/${layer.name}` : layer.name;
    yield { path: p, layer };
    if (isContainer(layer)) yield* walkLayers(layer, p);
  }
}

export function modelName(modelJsonPath: string, model?: tf.LayersModel): string {
  const dir = path.basename(path.dirname(modelJsonPath));
  const file = path.basename(modelJsonPath);
  if (file === 'model.json') return dir || model?.name || file;
  return file.replace(/\.(json|h5|hdf5|keras|onnx)$/i, '');
}

/** Loads model.json and its weights; throws EngineError with a clear message on any failure. */
export async function loadModel(modelJsonPath: string): Promise<LoadedModel> {
  if (/\.onnx$/i.test(modelJsonPath)) {
    // Loaded on demand: ONNX Runtime is a native module that TF.js-only work never needs.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { loadOnnxModel } = require('./onnx/load') as typeof import('./onnx/load');
    return loadOnnxModel(modelJsonPath, readModelMetadata);
  }
  const start = performance.now();
  const files = await readModelFiles(modelJsonPath);
  const meta = await readModelMetadata(files.folder);
  const shown = path.basename(files.modelJsonPath);
  if (files.format === 'graph') {
    let graph: tf.GraphModel;
    // The weights tfjs decodes, so that a failed build can free them (tfjs does not).
    let decoded: tf.NamedTensorMap | undefined;
    const tfio = { ...tf.io, decodeWeights: (...a: Parameters<typeof tf.io.decodeWeights>) => (decoded = tf.io.decodeWeights(...a)) } as typeof tf.io;
    let layers: LayerRow[];
    // Fused biases of rank > 1 (current converters) made runnable on wasm too (io/graphFusion.ts).
    const { artifacts } = normalizeFusedOps(files.artifacts);
    try {
      graph = await tf.loadGraphModel(tf.io.fromMemory(artifacts), {}, tfio);
      try {
        layers = graphRows(graph, artifacts.modelTopology as Record<string, unknown>);
      } catch (e) {
        graph.dispose();
        throw e;
      }
    } catch (e) {
      if (decoded) tf.dispose(Object.values(decoded));
      throw new EngineError('not-a-model', `${shown}: the graph model could not be built (${libraryReason(e)}).`);
    }
    const outputs = graphOutputs(graph, layers);
    const declared = graphShape(graph.inputs[0]?.shape);
    // After the table's zero run, which feeds the declared shape itself.
    const adapted = adaptGraphInput(graph);
    const summary: ModelSummary = {
      modelPath: files.modelJsonPath,
      name: modelName(files.modelJsonPath),
      format: 'graph',
      inputShape: isChannelsFirst(declared) ? channelsLast(declared) : declared,
      outputShape: outputs[0]?.shape ?? [],
      outputs,
      layers: markOutputs(layers, outputs),
      totalParams: graphParams(graph),
      trainableParams: 0,
      ...meta,
      warnings: files.warnings,
      loadMs: Math.round(performance.now() - start),
      ...(adapted ? { graphInput: { shape: declared, note: adapted } } : {}),
    };
    const channelsFirst = channelsFirstNodes(graph, artifacts.modelTopology as Record<string, unknown>);
    return { files, summary, graph, ...(channelsFirst.size > 0 ? { channelsFirst } : {}) };
  }
  checkLayerClasses(files);
  checkModelClass(files.artifacts.modelTopology, shown);
  const unresolvable = findUnresolvableCall(files.artifacts.modelTopology);
  if (unresolvable) throw new EngineError('not-a-model', `${shown}: the model's graph cannot be rebuilt: ${unresolvable}. Its layer list is damaged; re-export the model.`);
  checkLayerConfigs(files.artifacts.modelTopology, shown);
  const { model, described: summary } = await buildLayersModel(files, shown, (m) => {
    checkOutputShapes(m, shown);
    return summarize(m, files.modelJsonPath, files.warnings, meta);
  });
  summary.loadMs = Math.round(performance.now() - start);
  return { files, summary, layers: model };
}

export function summarize(
  model: tf.LayersModel,
  modelJsonPath: string,
  warnings: string[] = [],
  meta: ModelMeta = {},
): ModelSummary {
  const pre = detectInputPreprocessing(model);
  const outputs = layersOutputs(model);
  // The model's own preprocessing layer decides its pixels unless its metadata says otherwise.
  const scaling = pre && !meta.normalization ? { normalization: pre.normalization, normalizationFrom: pre.reason } : {};
  return {
    modelPath: modelJsonPath,
    name: modelName(modelJsonPath, model),
    format: 'layers',
    inputShape: model.inputs[0].shape as Shape,
    outputShape: model.outputs[0].shape as Shape,
    outputs,
    ...(pre ? { preprocessing: { layer: pre.layer, className: pre.className, description: pre.description } } : {}),
    layers: markOutputs(layerRows(model), outputs),
    totalParams: model.countParams(),
    trainableParams: weightCount(model.trainableWeights),
    ...meta,
    ...scaling,
    warnings,
    loadMs: 0,
  };
}

/** Marks the top-level rows that make the model's outputs. */
function markOutputs(rows: LayerRow[], outputs: ModelOutput[]): LayerRow[] {
  if (outputs.length < 2) return rows;
  return rows.map((r) => {
    const i = r.depth === 0 ? outputs.findIndex((o) => o.name === r.path) : -1;
    return i >= 0 ? { ...r, output: i } : r;
  });
}

/** Every output of a layers model, named by the layer that makes it. */
function layersOutputs(model: tf.LayersModel): ModelOutput[] {
  return model.outputs.map((o, i) => ({ name: model.outputLayers[i]?.name ?? o.sourceLayer?.name ?? `output ${i + 1}`, shape: o.shape as Shape }));
}

export function disposeModel(m: LoadedModel): void {
  // LayersModel.dispose() leaves some weights of nested models behind (a Teachable
  // Machine export's head lost 4 tensors per reload): free every weight it had.
  const weights = m.layers?.weights ?? [];
  m.layers?.dispose();
  for (const w of weights) {
    try {
      w.dispose();
    } catch {
      // Already disposed with its layer.
    }
  }
  m.graph?.dispose();
  void m.onnx?.release();
}
