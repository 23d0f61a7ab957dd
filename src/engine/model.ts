/**
 * Builds tfjs models from checked model files, and describes them as plain
 * data (the layer table). Unknown and unsupported layer classes are named
 * before tfjs sees the topology, so the user gets one clear message instead of
 * tfjs's deserialisation error.
 */
import * as tf from '@tensorflow/tfjs';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EngineError } from './errors';
import { readModelFiles, resolveInside, type ModelFiles } from './io/modelFiles';
import type { LayerRow, ModelSummary, Normalization, Shape } from '../protocol/model';

export interface LoadedModel {
  files: ModelFiles;
  summary: ModelSummary;
  /** Present for layers models. */
  layers?: tf.LayersModel;
  /** Present for graph models (inference only). */
  graph?: tf.GraphModel;
}

/** Classes that exist in Keras but cannot be rebuilt from JSON anywhere. */
const unsupported: Record<string, string> = {
  Lambda: 'holds Python code, which cannot be loaded outside Python',
  TFOpLambda: 'wraps a raw TensorFlow op, which tfjs-layers cannot rebuild',
  SlicingOpLambda: 'wraps a raw TensorFlow op, which tfjs-layers cannot rebuild',
};

function knownClasses(): Set<string> {
  return new Set(Object.keys(tf.serialization.SerializationMap.getMap().classNameMap));
}

function checkLayerClasses(files: ModelFiles): void {
  const name = path.basename(files.modelJsonPath);
  const bad = files.layerClasses.filter((c) => c in unsupported);
  if (bad.length > 0) {
    throw new EngineError(
      'unsupported-layer',
      `${name} uses ${bad.map((c) => `${c} (${unsupported[c]})`).join(', ')}; replace it with built-in layers before exporting.`,
    );
  }
  const known = knownClasses();
  const unknown = files.layerClasses.filter((c) => !known.has(c));
  if (unknown.length > 0) {
    throw new EngineError(
      'unknown-layer',
      `${name} uses layer class${unknown.length > 1 ? 'es' : ''} ${unknown.join(', ')}, which tfjs-layers does not provide (a custom layer?). Register it in tfjs or replace it before exporting.`,
    );
  }
}

async function readSmallFile(folder: string, file: string): Promise<string | undefined> {
  try {
    const p = await resolveInside(folder, file, 'model folder');
    const st = await fs.promises.stat(p);
    if (!st.isFile() || st.size > 1024 * 1024) return undefined;
    return await fs.promises.readFile(p, 'utf8');
  } catch {
    return undefined;
  }
}

/** Labels and preprocessing from Teachable Machine's metadata.json or a labels.txt. */
async function readModelMetadata(folder: string): Promise<{ labels?: string[]; normalization?: Normalization }> {
  const meta = await readSmallFile(folder, 'metadata.json');
  if (meta !== undefined) {
    try {
      const m = JSON.parse(meta) as Record<string, unknown>;
      const labels = Array.isArray(m['labels']) && m['labels'].every((l) => typeof l === 'string') ? (m['labels'] as string[]) : undefined;
      const norm = m['normalization'];
      let normalization: Normalization | undefined;
      if (norm === 'zeroOne' || norm === 'minusOneOne' || norm === 'imagenet' || norm === 'raw') normalization = norm;
      // Teachable Machine image models are trained on pixels scaled to [-1, 1].
      else if (typeof m['tmVersion'] === 'string' || m['packageName'] === '@teachablemachine/image') normalization = 'minusOneOne';
      if (labels) return { labels, normalization };
      if (normalization) return { normalization };
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

function graphRows(model: tf.GraphModel, topology: Record<string, unknown>): LayerRow[] {
  const weights = model.weights;
  const nodes = Array.isArray(topology['node']) ? (topology['node'] as Record<string, unknown>[]) : [];
  const rows: LayerRow[] = [];
  for (const n of nodes) {
    const op = typeof n['op'] === 'string' ? n['op'] : '?';
    const name = typeof n['name'] === 'string' ? n['name'] : '?';
    if (op === 'Const' || op === 'NoOp') continue;
    const inputs = Array.isArray(n['input']) ? (n['input'] as string[]) : [];
    let params = 0;
    for (const i of inputs) {
      const w = weights[i.split(':')[0]];
      if (w) for (const t of w) params += t.size;
    }
    rows.push({ path: name, name, className: op, outputShape: [], params, trainableParams: 0, trainable: false, depth: 0, isContainer: false });
  }
  return rows;
}

function modelName(modelJsonPath: string, model?: tf.LayersModel): string {
  const dir = path.basename(path.dirname(modelJsonPath));
  const file = path.basename(modelJsonPath);
  if (file === 'model.json') return dir || model?.name || file;
  return file.replace(/\.json$/, '');
}

/** Loads model.json and its weights; throws EngineError with a clear message on any failure. */
export async function loadModel(modelJsonPath: string): Promise<LoadedModel> {
  const start = performance.now();
  const files = await readModelFiles(modelJsonPath);
  const meta = await readModelMetadata(files.folder);
  const shown = path.basename(files.modelJsonPath);
  if (files.format === 'graph') {
    let graph: tf.GraphModel;
    try {
      graph = await tf.loadGraphModel(tf.io.fromMemory(files.artifacts));
    } catch (e) {
      throw new EngineError('not-a-model', `${shown}: the graph model could not be built (${e instanceof Error ? e.message : String(e)}).`);
    }
    const layers = graphRows(graph, files.artifacts.modelTopology as Record<string, unknown>);
    const total = Object.values(graph.weights).reduce((a, ts) => a + ts.reduce((b, t) => b + t.size, 0), 0);
    const summary: ModelSummary = {
      modelPath: files.modelJsonPath,
      name: modelName(files.modelJsonPath),
      format: 'graph',
      inputShape: (graph.inputs[0]?.shape ?? []) as Shape,
      outputShape: (graph.outputs[0]?.shape ?? []) as Shape,
      layers,
      totalParams: total,
      trainableParams: 0,
      ...meta,
      warnings: files.warnings,
      loadMs: Math.round(performance.now() - start),
    };
    return { files, summary, graph };
  }
  checkLayerClasses(files);
  let model: tf.LayersModel;
  try {
    model = await tf.loadLayersModel(tf.io.fromMemory(files.artifacts));
  } catch (e) {
    const why = e instanceof Error ? e.message.split('\n')[0] : String(e);
    throw new EngineError('not-a-model', `${shown}: tfjs could not build the model from its topology and weights (${why}).`);
  }
  const summary = summarize(model, files.modelJsonPath, files.warnings, meta);
  summary.loadMs = Math.round(performance.now() - start);
  return { files, summary, layers: model };
}

export function summarize(
  model: tf.LayersModel,
  modelJsonPath: string,
  warnings: string[] = [],
  meta: { labels?: string[]; normalization?: Normalization } = {},
): ModelSummary {
  return {
    modelPath: modelJsonPath,
    name: modelName(modelJsonPath, model),
    format: 'layers',
    inputShape: model.inputs[0].shape as Shape,
    outputShape: model.outputs[0].shape as Shape,
    layers: layerRows(model),
    totalParams: model.countParams(),
    trainableParams: weightCount(model.trainableWeights),
    ...meta,
    warnings,
    loadMs: 0,
  };
}

export function disposeModel(m: LoadedModel): void {
  m.layers?.dispose();
  m.graph?.dispose();
}
