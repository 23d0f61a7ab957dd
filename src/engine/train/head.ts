/**
 * The classification head: where a model's features end and its classifier
 * begins, and a new classifier when the dataset's classes are not the
 * model's.
 *
 * The default cut is the input of the final classification block, found by
 * walking back from the output over the layers such a block is made of: a
 * Softmax/Activation/Dropout after the last Dense, the Dense itself, and a
 * Dropout before it (Keras's GAP -> Dropout -> Dense pattern). A nested model
 * at the end whose layers are all of that kind is a head as a whole: a
 * Teachable Machine export is Sequential[backbone, Sequential[dense, dense]],
 * and its cut is the backbone's output.
 *
 * The model is split at the cut into a backbone (the original layers, no
 * copies) and the chain of head layers after it, so that the training loop can
 * run a frozen backbone once per image and train only the head (the embedding
 * cache).
 *
 * A Sequential stays a Sequential: tf.model() over a Sequential's tensors
 * would flatten a nested first layer into its inner layers (the Sequential
 * reuses the nested model's own output tensor), and the layer paths that the
 * freeze plan names ("features/backbone/Conv1") would no longer exist.
 */
import * as tf from '@tensorflow/tfjs';
import { EngineError } from '../errors';
import { Rng } from '../random';
import { deriveSeed } from './dataset';
import { looseList, matchClasses } from './classNames';

/** Layer classes a classification block is made of (after the last feature layer). */
const HEAD_CLASSES = new Set(['Dense', 'Dropout', 'Activation', 'Softmax', 'ReLU', 'BatchNormalization', 'Flatten']);
/** Layers around the final Dense that belong to its block. */
const AROUND_DENSE = new Set(['Dropout', 'Activation', 'Softmax']);

export type OutputKind = 'probabilities' | 'logits';

export interface HeadPlan {
  /** The model to train and save (the loaded one when the head is kept). */
  model: tf.LayersModel;
  replaced: boolean;
  /** Top-level layer whose output the head reads. */
  cutLayer: string;
  /** Why the head was kept or replaced, in words. */
  reason: string;
  /** Class names in output order. */
  labels: string[];
  outputKind: OutputKind;
  /** The model up to the cut, sharing weights with `model`; absent when the head is not a simple chain. */
  backbone?: Backbone;
  /** Layers after the cut, applied in order to the backbone's output. */
  headLayers?: tf.layers.Layer[];
  /**
   * The head as plain tf ops, when it is the one created here: the same
   * function as applying `headLayers`, without tfjs-layers' per-call
   * bookkeeping, which is most of the cost of a step when the backbone's
   * outputs are cached and the head is one small Dense.
   */
  headOps?: (features: tf.Tensor) => tf.Tensor;
  /** Layers created here (the new head), for disposal. */
  created: tf.layers.Layer[];
  warnings: string[];
}

function isContainer(layer: tf.layers.Layer): layer is tf.LayersModel & tf.layers.Layer {
  return layer instanceof tf.LayersModel;
}

/**
 * The layers from the output backwards while each has a single input: the
 * part of the graph a classification head can be. A Sequential is a chain by
 * construction (and tfjs leaves its outputLayers empty); a functional model is
 * followed through the nodes of its own graph, since a layer used in several
 * models has several nodes.
 */
function tailLayers(model: tf.LayersModel): tf.layers.Layer[] {
  if (model instanceof tf.Sequential) return [...model.layers].reverse();
  const out: tf.layers.Layer[] = [];
  let layer: tf.layers.Layer | undefined = model.outputLayers[0];
  let nodeIndex = model.outputLayersNodeIndices[0];
  while (layer && layer.getClassName() !== 'InputLayer') {
    out.push(layer);
    const node: (typeof layer.inboundNodes)[number] | undefined = layer.inboundNodes[nodeIndex];
    if (!node || node.inboundLayers.length !== 1) break;
    layer = node.inboundLayers[0];
    nodeIndex = node.nodeIndices[0];
  }
  return out;
}

/** The layer that produces the model's output, looking inside nested models. */
function lastLeaf(model: tf.LayersModel): tf.layers.Layer | undefined {
  const last = tailLayers(model)[0];
  return last && isContainer(last) ? lastLeaf(last) : last;
}

function leafLayers(layer: tf.layers.Layer): tf.layers.Layer[] {
  return isContainer(layer) ? layer.layers.flatMap(leafLayers) : [layer];
}

/** A nested model made only of classifier layers, with a Dense among them. */
function isHeadContainer(layer: tf.layers.Layer): boolean {
  if (!isContainer(layer)) return false;
  const leaves = leafLayers(layer).filter((l) => l.getClassName() !== 'InputLayer');
  return leaves.some((l) => l.getClassName() === 'Dense') && leaves.every((l) => HEAD_CLASSES.has(l.getClassName()));
}

function activationOf(layer: tf.layers.Layer): string | undefined {
  const cls = layer.getClassName();
  if (cls === 'Softmax') return 'softmax';
  const a = layer.getConfig()['activation'];
  return typeof a === 'string' ? a : undefined;
}

/** Whether the model ends in a softmax (probabilities) or not (logits). */
function outputKindOf(model: tf.LayersModel): OutputKind {
  const layer = lastLeaf(model);
  return layer && activationOf(layer) === 'softmax' ? 'probabilities' : 'logits';
}

/** The part of a model before its head. */
export interface Backbone {
  /** Runs the layers up to and including the cut. */
  apply(xs: tf.Tensor, training: boolean): tf.Tensor;
  /** One output's shape, without the batch dimension (null where it varies). */
  featureShape: (number | null)[];
  /** Whether training can change none of its weights (read after the freeze plan is applied). */
  isFrozen(): boolean;
}

function sequentialBackbone(layers: tf.layers.Layer[]): Backbone {
  const last = layers[layers.length - 1];
  return {
    apply: (xs, training) => layers.reduce((t, l) => l.apply(t, { training }) as tf.Tensor, xs),
    featureShape: (last.outputShape as (number | null)[]).slice(1),
    isFrozen: () => layers.every((l) => l.trainableWeights.length === 0),
  };
}

function functionalBackbone(model: tf.LayersModel, output: tf.SymbolicTensor): Backbone {
  const m = tf.model({ inputs: model.inputs, outputs: output, name: `${model.name}_backbone` });
  return {
    apply: (xs, training) => m.apply(xs, { training }) as tf.Tensor,
    featureShape: output.shape.slice(1),
    isFrozen: () => m.trainableWeights.length === 0,
  };
}

/** The backbone ending at `cut`, a top-level layer of `model`. */
function backboneAt(model: tf.LayersModel, cut: tf.layers.Layer, modelName: string): Backbone {
  if (model instanceof tf.Sequential) return sequentialBackbone(model.layers.slice(0, model.layers.indexOf(cut) + 1));
  return functionalBackbone(model, symbolicOutput(cut, modelName));
}

/**
 * A model built by planHead, split again at its cut: the backbone up to the
 * top-level layer `cutLayer` and the chain of layers after it. A replica of
 * the model (src/engine/train/replica.ts) rebuilt from its saved topology
 * splits where the engine's plan did.
 */
export function splitAt(model: tf.LayersModel, cutLayer: string, modelName: string): { backbone: Backbone; headLayers: tf.layers.Layer[] } {
  const cut = findTopLevel(model, cutLayer, modelName);
  if (model instanceof tf.Sequential) {
    const k = model.layers.indexOf(cut);
    return { backbone: sequentialBackbone(model.layers.slice(0, k + 1)), headLayers: model.layers.slice(k + 1) };
  }
  const tail = tailLayers(model);
  const k = tail.indexOf(cut);
  if (k < 0) throw new EngineError('internal', `${modelName}: layer "${cutLayer}" is not on the single-input chain to the output, so the model cannot be split there.`);
  return { backbone: functionalBackbone(model, symbolicOutput(cut, modelName)), headLayers: tail.slice(0, k).reverse() };
}

export interface FeatureCut {
  /** The last feature layer: the head reads its output. */
  layer: tf.layers.Layer;
  /** The layers after it up to the output, in order. */
  chain: tf.layers.Layer[];
  /** How the cut was found, in words, when it was not the usual final Dense. */
  found?: string;
}

/** Spatial poolings that turn a convolutional classifier's class maps into class scores. */
const GLOBAL_POOLS = new Set(['GlobalAveragePooling2D', 'GlobalMaxPooling2D']);
/** Layers a convolutional classifier (conv with one filter per class, pooled) can be. */
const CONV_CLASSIFIERS = new Set(['Conv2D', 'SeparableConv2D']);

/**
 * A classifier without a final Dense, as in mini-Xception and other all-
 * convolutional nets: [features] -> Conv2D(classes) [-> BatchNormalization /
 * Activation] -> GlobalAveragePooling2D [-> Flatten/Reshape] [-> softmax].
 * The cut is the last feature layer before that convolution.
 */
function convClassifierCut(tail: tf.layers.Layer[]): FeatureCut | undefined {
  let k = 0;
  const chain: tf.layers.Layer[] = [];
  const take = (ok: (cls: string) => boolean) => {
    while (k < tail.length && ok(tail[k].getClassName())) chain.unshift(tail[k++]);
  };
  take((c) => AROUND_DENSE.has(c) || c === 'Flatten' || c === 'Reshape');
  if (k >= tail.length || !GLOBAL_POOLS.has(tail[k].getClassName())) return undefined;
  chain.unshift(tail[k++]);
  take((c) => c === 'Activation' || c === 'ReLU' || c === 'BatchNormalization');
  if (k >= tail.length || !CONV_CLASSIFIERS.has(tail[k].getClassName())) return undefined;
  const conv = tail[k];
  chain.unshift(tail[k++]);
  const layer = tail[k];
  if (!layer || layer.getClassName() === 'InputLayer') return undefined;
  const names = chain.map((l) => l.name).join(' → ');
  return { layer, chain, found: `${names} is a convolutional classifier (${conv.getClassName()} with one filter per class, pooled), so the new head follows ${layer.name}` };
}

/**
 * The default cut: the input of the final classification block. Throws when
 * the model does not end in a Dense layer (or a nested head of Dense layers).
 */
export function findFeatureCut(model: tf.LayersModel, modelName: string): FeatureCut {
  checkSingleIO(model, modelName);
  const tail = tailLayers(model);
  const chain: tf.layers.Layer[] = [];
  let sawDense = false;
  let k = 0;
  for (; k < tail.length; k++) {
    const layer = tail[k];
    const cls = layer.getClassName();
    const belongs = sawDense ? cls === 'Dropout' : AROUND_DENSE.has(cls) || cls === 'Dense' || isHeadContainer(layer);
    if (!belongs) break;
    if (cls === 'Dense' || isHeadContainer(layer)) sawDense = true;
    chain.unshift(layer);
  }
  const layer = tail[k];
  if (!sawDense || !layer) {
    const conv = convClassifierCut(tail);
    if (conv) return conv;
    throw new EngineError(
      'bad-input',
      `${modelName}: no classification layer (a final Dense, or a convolution pooled into class scores) was found after a feature layer, so Layer Lens does not know where to put a new head. Set "cutLayer" in layerlens.json (finetune.cutLayer) to the last feature layer.`,
    );
  }
  return { layer, chain };
}

const outputName = (model: tf.LayersModel, i: number) => model.outputLayers[i]?.name ?? model.outputs[i].sourceLayer.name;
const shapeText = (shape: (number | null)[]) => `[${shape.map((d) => d ?? '?').join(', ')}]`;

/**
 * The output a fine-tune trains, for a model with several: the one with as
 * many units as the dataset has classes (when exactly one has), else the
 * first; the model is then the part that computes that output alone, and
 * `note` says so. A model with one output is returned as it is.
 */
export function oneOutput(model: tf.LayersModel, classes: number, modelName: string): { model: tf.LayersModel; index: number; note?: string } {
  if (model.outputs.length <= 1 || model.inputs.length !== 1) return { model, index: 0 };
  const units = model.outputs.map((t) => t.shape[t.shape.length - 1]);
  const matching = units.map((u, i) => (u === classes ? i : -1)).filter((i) => i >= 0);
  const index = matching.length === 1 ? matching[0] : 0;
  const list = model.outputs.map((t, i) => `${outputName(model, i)} ${shapeText(t.shape)}`).join(', ');
  const why = matching.length === 1 ? `it has ${classes} units, one per class of the dataset` : 'it is the first';
  const sub = tf.model({ inputs: model.inputs, outputs: model.outputs[index], name: model.name });
  return {
    model: sub,
    index,
    note: `${modelName} has ${model.outputs.length} outputs (${list}); the fine-tune works on output ${index + 1}, ${outputName(model, index)}, because ${why}. The fine-tuned model has that one output; the others are not part of it.`,
  };
}

function checkSingleIO(model: tf.LayersModel, modelName: string): void {
  if (model.inputs.length !== 1 || model.outputs.length !== 1) {
    throw new EngineError(
      'bad-input',
      `${modelName} has ${model.inputs.length} inputs and ${model.outputs.length} outputs; fine-tuning needs a model with one image input and one class output.`,
    );
  }
}

function findTopLevel(model: tf.LayersModel, name: string, modelName: string): tf.layers.Layer {
  const layer = model.layers.find((l) => l.name === name);
  if (layer) return layer;
  const slash = name.indexOf('/');
  const outer = slash > 0 ? model.layers.find((l) => l.name === name.slice(0, slash)) : undefined;
  if (outer) {
    throw new EngineError(
      'bad-recipe',
      `cutLayer "${name}" is inside the nested model "${outer.name}" of ${modelName}; a new head can only follow a top-level layer. Use "${outer.name}" (its output) or a top-level layer.`,
    );
  }
  throw new EngineError('bad-recipe', `cutLayer "${name}" is not a layer of ${modelName}; pick a top-level layer from the layer table (e.g. ${model.layers.slice(-3).map((l) => l.name).join(', ')}).`);
}

function symbolicOutput(layer: tf.layers.Layer, modelName: string): tf.SymbolicTensor {
  const out = layer.output;
  if (Array.isArray(out)) throw new EngineError('bad-input', `${modelName}: layer "${layer.name}" has several outputs; pick a layer with one output as the cut.`);
  return out;
}

function uniqueName(model: tf.LayersModel, base: string): string {
  const taken = new Set([...model.layers.flatMap(leafLayers), ...model.layers].map((l) => l.name));
  let name = base;
  for (let k = 2; taken.has(name); k++) name = `${base}_${k}`;
  return name;
}

/** Glorot-uniform kernel and zero bias from our own seeded stream, whatever tfjs's initialisers draw. */
export function seedDense(dense: tf.layers.Layer, seed: number): void {
  const rng = new Rng(deriveSeed(seed, 'head'));
  for (const w of dense.weights) {
    const shape = w.shape as number[];
    const size = shape.reduce((a, b) => a * b, 1);
    let values: Float32Array;
    if (shape.length === 2) {
      const limit = Math.sqrt(6 / (shape[0] + shape[1]));
      values = Float32Array.from({ length: size }, () => rng.uniform(-limit, limit));
    } else {
      values = new Float32Array(size);
    }
    const t = tf.tensor(values, shape);
    w.write(t);
    t.dispose();
  }
}

/** Whether the classes are the labels, one for one (names matched as in classNames.ts), and which matched loosely. */
function sameClasses(labels: readonly string[], classes: readonly string[]): { same: boolean; loose: string[] } {
  if (labels.length !== classes.length || new Set(labels).size !== labels.length) return { same: false, loose: [] };
  const { map, loose } = matchClasses(classes, labels);
  return { same: map.every((i) => i >= 0), loose };
}

export interface HeadOptions {
  /** Dataset class names, sorted. */
  classes: string[];
  /** Labels the model came with (metadata.json, labels.txt), if any. */
  modelLabels?: string[];
  /** Top-level layer after which to put a new head (forces a new head). */
  cutLayer?: string;
  seed: number;
  modelName: string;
}

/**
 * Keeps the model's head when it already classifies the dataset's classes, or
 * cuts the model and adds a Dense softmax for them. The returned `labels` are
 * the class names in output order (the model's order when its head is kept).
 */
export function planHead(source: tf.LayersModel, o: HeadOptions): HeadPlan {
  const warnings: string[] = [];
  const { model, note, index } = oneOutput(source, o.classes.length, o.modelName);
  if (note) warnings.push(note);
  checkSingleIO(model, o.modelName);
  const units = model.outputs[0].shape[model.outputs[0].shape.length - 1];
  let keep = false;
  let reason: string;
  if (o.cutLayer !== undefined) {
    reason = `cutLayer "${o.cutLayer}" set in the recipe`;
  } else if (o.modelLabels && sameClasses(o.modelLabels, o.classes).same) {
    keep = true;
    const { loose } = sameClasses(o.modelLabels, o.classes);
    reason = `the model's ${units} labels are the dataset's classes${loose.length > 0 ? `; folders matched ignoring case, spaces, _ and -: ${looseList(loose)}` : ''}`;
  } else if (o.modelLabels) {
    reason = `the dataset's classes (${o.classes.join(', ')}) are not the model's labels (${o.modelLabels.join(', ')})`;
  } else if (units === o.classes.length) {
    keep = true;
    reason = `the model has ${units} outputs and no labels; they are taken to be the dataset's classes in alphabetical order`;
    warnings.push(
      `${o.modelName} has no labels (no metadata.json or labels.txt), so its ${units} outputs are taken to be ${o.classes.join(', ')} in that order. If they are not, set "cutLayer" in layerlens.json to train a new head.`,
    );
  } else {
    reason = `the dataset has ${o.classes.length} classes, the model ${units} outputs`;
  }
  if (note) reason = `output ${index + 1} of ${source.outputs.length} (${outputName(source, index)}): ${reason}`;

  if (keep) {
    const labels = o.modelLabels ?? o.classes;
    let cut: FeatureCut | undefined;
    try {
      cut = findFeatureCut(model, o.modelName);
    } catch {
      // No recognisable head: the whole model trains, without the backbone split.
    }
    const base = { model, replaced: false, reason, labels, outputKind: outputKindOf(model), created: [], warnings };
    if (!cut) return { ...base, cutLayer: lastLeaf(model)?.name ?? model.name };
    return { ...base, cutLayer: cut.layer.name, backbone: backboneAt(model, cut.layer, o.modelName), headLayers: cut.chain };
  }

  const found = o.cutLayer !== undefined ? undefined : findFeatureCut(model, o.modelName);
  const cutLayer = found ? found.layer : findTopLevel(model, o.cutLayer!, o.modelName);
  if (found?.found) reason += `; ${found.found}`;
  const backbone = backboneAt(model, cutLayer, o.modelName);
  const created: tf.layers.Layer[] = [];
  const rank = backbone.featureShape.length + 1;
  if (rank === 4) {
    // A feature map (a cut at a conv block): pool it, as Keras's transfer-learning recipe does.
    created.push(tf.layers.globalAveragePooling2d({ name: uniqueName(model, 'layerlens_pool') }));
  } else if (rank !== 2) {
    created.push(tf.layers.flatten({ name: uniqueName(model, 'layerlens_flatten') }));
  }
  const dense = tf.layers.dense({ units: o.classes.length, activation: 'softmax', name: uniqueName(model, 'layerlens_head') });
  created.push(dense);
  let newModel: tf.LayersModel;
  if (model instanceof tf.Sequential) {
    const kept = model.layers.slice(0, model.layers.indexOf(cutLayer) + 1);
    newModel = tf.sequential({ layers: [...kept, ...created], name: model.name });
  } else {
    const x = created.reduce((t, l) => l.apply(t) as tf.SymbolicTensor, symbolicOutput(cutLayer, o.modelName));
    newModel = tf.model({ inputs: model.inputs, outputs: x, name: model.name });
  }
  // After the model is built, so that the Dense has its weights.
  seedDense(dense, o.seed);
  const [kernel, bias] = dense.weights.map((w) => w.read());
  const pooled = rank === 4;
  const headOps = rank === 4 || rank === 2 ? (f: tf.Tensor) => tf.softmax(tf.add(tf.matMul(pooled ? tf.mean(f, [1, 2]) : f, kernel), bias)) : undefined;
  return {
    model: newModel,
    replaced: true,
    cutLayer: cutLayer.name,
    reason,
    labels: [...o.classes],
    outputKind: 'probabilities',
    backbone,
    headLayers: created,
    headOps,
    created,
    warnings,
  };
}
