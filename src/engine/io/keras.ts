/**
 * Opens Keras models without Python: the legacy HDF5 format (`.h5`, written
 * by Keras 2 and by Keras 3's `model.save("x.h5")`) and the `.keras` zip
 * (Keras 2.13+ and 3). The Keras config becomes a tfjs-layers topology, the
 * model is built, each weight is matched to its layer (by layer and weight
 * name where the file names them, by Keras's own save order where it does
 * not) with its shape checked, and the result is serialised into the same
 * `tf.io.ModelArtifacts` a model.json gives, so everything downstream works
 * unchanged.
 *
 * Files come from strangers. The zip is read in memory by entry name (never
 * extracted, so entry names cannot point anywhere), entries are refused by
 * their declared size before they are inflated and can never inflate past
 * it; HDF5 is parsed by libhdf5 inside WebAssembly (see hdf5.ts); building
 * the model may not allocate more weight values than the file holds.
 */
import * as tf from '@tensorflow/tfjs';
import { EngineError } from '../errors';
import { Hdf5File, Hdf5ReadError, type Hdf5Dataset, type Hdf5Node } from './hdf5';
import { findUnresolvableCall, libraryReason } from './graphCheck';
import { countNonFinite, lfsMessage, lfsPointerSize, rel, type ModelFiles } from './files';
import { modelArtifacts } from './save';
import { buildGuarded, registeredClasses, type BuildHooks } from './buildGuard';
import { convertConfig, type Conversion } from './kerasConfig';
import { clip, convertHint, hdf5Signature, kerasLimits, readBytes, readH5, readKerasZip, shapeText, startsWith, type Json, type KerasSource } from './kerasFile';

export { kerasLimits } from './kerasFile';


// ---------------------------------------------------------------------------
// Weights

interface FileWeight {
  /** Name as the file gives it ("dense/kernel:0"), or the vars index path. */
  name: string;
  dataset: Hdf5Dataset;
}

/** Keras's naming.to_snake_case, which names layers in a .keras weights file. */
export function snakeCase(name: string): string {
  return name
    .replace(/\W+/g, '')
    .replace(/(.)([A-Z][a-z]+)/g, '$1_$2')
    .replace(/([a-z])([A-Z])/g, '$1_$2')
    .toLowerCase();
}

function isContainer(layer: tf.layers.Layer): layer is tf.LayersModel & tf.layers.Layer {
  return layer instanceof tf.LayersModel;
}

function shortName(w: tf.LayerVariable): string {
  const parts = w.originalName.split('/');
  return parts[parts.length - 1];
}

/** Strings of a Keras list attribute, which h5py splits into name0, name1, … when it exceeds 64 KB. */
function attrList(h5: Hdf5File, node: Hdf5Node, name: string): string[] | undefined {
  const whole = h5.attr(node, name);
  if (whole !== undefined) return typeof whole === 'string' ? [whole] : whole;
  const out: string[] = [];
  for (let i = 0; ; i++) {
    const part = h5.attr(node, `${name}${i}`);
    if (part === undefined) return i === 0 ? undefined : out;
    out.push(...(typeof part === 'string' ? [part] : part));
  }
}

/** Weights of one top-level layer in the legacy format: model_weights/<layer>/<weight_names…>. */
function legacyLayerWeights(h5: Hdf5File, modelWeights: Hdf5Node, layer: string, shown: string): FileWeight[] | undefined {
  const g = h5.group(modelWeights, layer);
  if (!g) return undefined;
  const names = attrList(h5, g, 'weight_names') ?? [];
  return names.map((n) => {
    const d = h5.child(g, n);
    if (d?.kind !== 'dataset') {
      throw new EngineError('bad-weights', `${shown}: weight "${clip(n)}" of layer "${clip(layer)}" is listed in the file but its data is missing (no dataset ${clip(`${g.path}/${n}`)}).`);
    }
    return { name: n, dataset: d };
  });
}

/** Numbered vars of a .keras layer, then those of its sub-objects (an RNN's cell, a wrapper's layer, Bidirectional's two). */
function v3LayerWeights(h5: Hdf5File, node: Hdf5Node, depth = 0): FileWeight[] {
  const out: FileWeight[] = [];
  const vars = h5.group(node, 'vars');
  if (vars) {
    const idx = h5.children(vars).filter((k) => /^\d+$/.test(k)).map(Number).sort((a, b) => a - b);
    for (const i of idx) {
      const d = h5.child(vars, String(i));
      if (d?.kind === 'dataset') out.push({ name: `${vars.path}/${i}`, dataset: d });
    }
  }
  if (depth > 4) return out;
  const order = ['cell', 'layer', 'forward_layer', 'backward_layer'];
  const subs = h5.children(node).filter((k) => k !== 'vars' && k !== 'layers');
  subs.sort((a, b) => (order.includes(a) ? order.indexOf(a) : 99) - (order.includes(b) ? order.indexOf(b) : 99) || a.localeCompare(b));
  for (const s of subs) {
    const g = h5.group(node, s);
    if (g) out.push(...v3LayerWeights(h5, g, depth + 1));
  }
  return out;
}

function normName(n: string): string[] {
  return n.replace(/:\d+$/, '').split('/').filter((p) => p.length > 0);
}

function endsWith(parts: string[], suffix: string[]): boolean {
  return suffix.length <= parts.length && suffix.every((p, i) => parts[parts.length - suffix.length + i] === p);
}

/**
 * Pairs a layer's tfjs weights with the file's: by full name ("dense/kernel"
 * at the end of "dense/kernel:0" or "sequential/dense/kernel"), then by weight
 * name alone, then by position (a .keras file numbers them in the order Keras
 * created them, which is tfjs's order too). Counts and shapes must agree.
 */
function matchWeights(shown: string, layer: string, want: tf.LayerVariable[], have: FileWeight[], byName: boolean): [tf.LayerVariable, FileWeight][] {
  if (have.length !== want.length) {
    throw new EngineError(
      'bad-weights',
      `${shown}: layer "${clip(layer)}" has ${have.length} weight${have.length === 1 ? '' : 's'} in the file but the model needs ${want.length} (${clip(want.map(shortName).join(', '))}); the file does not match its config.`,
    );
  }
  const used = new Set<number>();
  const pairs: [tf.LayerVariable, FileWeight][] = [];
  want.forEach((w, i) => {
    let j = -1;
    if (byName) {
      const full = normName(w.originalName);
      const pick = (pred: (f: FileWeight) => boolean) => {
        const hits = have.map((f, k) => (used.has(k) || !pred(f) ? -1 : k)).filter((k) => k >= 0);
        return hits.length === 1 ? hits[0] : -1;
      };
      j = pick((f) => endsWith(normName(f.name), full));
      if (j < 0) j = pick((f) => normName(f.name).pop() === shortName(w));
    }
    if (j < 0 && !used.has(i)) j = i;
    if (j < 0) throw new EngineError('bad-weights', `${shown}: weight "${shortName(w)}" of layer "${clip(layer)}" cannot be told apart from the others in the file.`);
    used.add(j);
    pairs.push([w, have[j]]);
  });
  return pairs;
}

function checkAndRead(h5: Hdf5File, shown: string, layer: string, w: tf.LayerVariable, f: FileWeight, warnings: string[]): Float32Array {
  const need = w.shape as number[];
  const shape = f.dataset.shape;
  if (shape.join(',') !== need.join(',')) {
    throw new EngineError(
      'bad-weights',
      `${shown}: weight "${shortName(w)}" of layer "${clip(layer)}" has shape ${shapeText(shape)} in the file, but the model needs ${shapeText(need)}.`,
    );
  }
  // Integer weights are counters (Normalization's count, saved as int64), read as float32.
  if (f.dataset.type !== 'float32' && f.dataset.type !== 'float64' && !(w.dtype === 'int32' && /^u?int(8|16|32|64)$/.test(f.dataset.type))) {
    throw new EngineError('bad-weights', `${shown}: weight "${shortName(w)}" of layer "${clip(layer)}" is stored as ${f.dataset.type}, which Layer Lens cannot read (float32 or float64 only).`);
  }
  let values: Float32Array;
  try {
    values = h5.readFloats(f.dataset);
  } catch (e) {
    const why = e instanceof Hdf5ReadError ? e.reason : e instanceof Error ? e.message.split('\n')[0] : String(e);
    throw new EngineError('bad-weights', `${shown}: the values of weight "${shortName(w)}" of layer "${clip(layer)}" cannot be read (${clip(why, 200)}); the file is damaged. ${convertHint(shown)}`);
  }
  const { nan, inf } = countNonFinite(values);
  if (nan || inf) warnings.push(`weight "${w.originalName}" holds ${nan} NaN and ${inf} infinite values of ${values.length}`);
  return values;
}

/** The layers Keras saved under `layers/` for a container: a Sequential's list leaves out its InputLayer. */
function kerasLayers(model: tf.LayersModel): tf.layers.Layer[] {
  return model instanceof tf.Sequential ? model.layers.filter((l) => l.getClassName() !== 'InputLayer') : model.layers;
}

function kerasKeyBase(layer: tf.layers.Layer): string {
  if (isContainer(layer)) return layer instanceof tf.Sequential ? 'sequential' : 'functional';
  return snakeCase(layer.getClassName());
}

type Assignments = [tf.LayerVariable, FileWeight, string][];

function assignLegacy(h5: Hdf5File, model: tf.LayersModel, shown: string): Assignments {
  const root = h5.root();
  const mw = h5.group(root, 'model_weights') ?? root; // save_weights files keep the layers at the root
  const out: Assignments = [];
  for (const layer of model.layers) {
    if (layer.weights.length === 0) continue;
    const have = legacyLayerWeights(h5, mw, layer.name, shown);
    if (!have) {
      throw new EngineError('bad-weights', `${shown}: the weights of layer "${clip(layer.name)}" are missing (no group "${clip(`${mw.path ? `${mw.path}/` : ''}${layer.name}`)}" in the file).`);
    }
    for (const [w, f] of matchWeights(shown, layer.name, layer.weights, have, true)) out.push([w, f, layer.name]);
  }
  return out;
}

function assignV3(h5: Hdf5File, model: tf.LayersModel, node: Hdf5Node | undefined, where: string, shown: string, out: Assignments = []): Assignments {
  const counters = new Map<string, number>();
  for (const layer of kerasLayers(model)) {
    const base = kerasKeyBase(layer);
    const n = counters.get(base);
    const key = n === undefined ? base : `${base}_${n + 1}`;
    counters.set(base, n === undefined ? 0 : n + 1);
    const sub = node ? h5.group(node, key) : undefined;
    const subPath = `${where}/${key}`;
    if (isContainer(layer)) {
      assignV3(h5, layer, sub ? h5.group(sub, 'layers') : undefined, `${subPath}/layers`, shown, out);
      continue;
    }
    if (layer.weights.length === 0) continue;
    const have = sub ? v3LayerWeights(h5, sub) : [];
    if (!sub || (have.length === 0 && !h5.group(sub, 'vars'))) {
      throw new EngineError('bad-weights', `${shown}: the weights of layer "${clip(layer.name)}" are missing (no group "${clip(`${subPath}/vars`)}" in model.weights.h5).`);
    }
    for (const [w, f] of matchWeights(shown, layer.name, layer.weights, have, false)) out.push([w, f, layer.name]);
  }
  return out;
}

/** Float values stored under `node`, from dataset shapes alone (the budget for building). */
function storedValues(h5: Hdf5File, node: Hdf5Node, budget: { groups: number }, depth = 0): number {
  let n = 0;
  if (depth > 64) return 0;
  for (const k of h5.children(node)) {
    if (++budget.groups > kerasLimits.maxLayers * 4) return n;
    if (depth === 0 && (k === 'optimizer_weights' || k === 'optimizer' || k === 'metrics')) continue;
    const c = h5.child(node, k);
    if (c?.kind === 'dataset') n += c.shape.reduce((a, d) => a * d, 1);
    else if (c?.kind === 'group') n += storedValues(h5, c, budget, depth + 1);
  }
  return n;
}

/** The model built from the config, and every weight the build made (model.dispose() keeps those of a layer called more than once). */
async function buildModel(topology: Json, stored: number, shown: string): Promise<{ model: tf.LayersModel; created: tf.LayerVariable[] }> {
  // Under the build guard (buildGuard.ts): a config saying `units: 1e9` is refused before it is allocated.
  const hooks: BuildHooks = {
    allowed: stored + 2 ** 24,
    check: (layer, _name, shape) => {
      if (shape.every((d) => Number.isInteger(d) && d >= 0)) return;
      // A size that is no whole number (units: "x", a kernel_size of null) shows as "?".
      const dims = shape.map((d) => (typeof d === 'number' && !Number.isNaN(d) ? String(d) : typeof d === 'number' ? '?' : (JSON.stringify(d) ?? String(d))));
      throw new EngineError('not-a-model', `${shown}: layer "${clip(layer.name)}" asks for a weight of shape [${clip(dims.join(', '))}], which is not a shape; its config is damaged. Save the model again from Keras.`);
    },
    overBudget: (layer, shape, values) =>
      new EngineError(
        'bad-weights',
        `${shown}: layer "${clip(layer.name)}" asks for a weight of shape ${shapeText(shape)} (${values} values), far more than the ${stored} weight values the file holds; the config does not match its weights (refused before allocating).`,
      ),
  };
  try {
    const built = await buildGuarded(hooks, async () => {
      const m = await tf.models.modelFromJSON({ modelTopology: topology } as unknown as tf.io.ModelJSON);
      m.countParams(); // Sequential models build lazily; build here, inside the budget
      return m;
    });
    return { model: built.value, created: built.created };
  } catch (e) {
    if (e instanceof EngineError) throw e;
    // A TypeError from inside tfjs ("Cannot read properties of undefined") means a field it needs is missing or of the wrong type.
    const why = e instanceof TypeError ? 'the config is malformed: a field tfjs needs is missing or has the wrong type' : libraryReason(e);
    throw new EngineError('not-a-model', `${shown}: tfjs could not build the Keras model from its config (${why}). ${convertHint(shown)}`);
  }
}

// ---------------------------------------------------------------------------

/**
 * Reads a Keras .h5 or .keras file into the ModelFiles a model.json gives.
 * When the config names classes tfjs lacks (Lambda, custom layers), the
 * topology comes back without weights so that loadModel names them.
 */
export async function readKerasFiles(abs: string): Promise<ModelFiles> {
  const shown = rel(abs);
  const { bytes, folder } = await readBytes(abs, shown);
  const kind = startsWith(bytes, hdf5Signature) ? 'h5' : startsWith(bytes, [0x50, 0x4b, 0x03, 0x04]) || startsWith(bytes, [0x50, 0x4b, 0x05, 0x06]) ? 'keras' : undefined;
  const lfs = lfsPointerSize(bytes);
  if (!kind && lfs !== undefined) throw new EngineError('keras-file', lfsMessage(shown, lfs));
  if (!kind) {
    throw new EngineError(
      'keras-file',
      `${shown} is a Keras file; Layer Lens could not read it: it is neither HDF5 (.h5) nor a zip archive (.keras), so it may be damaged or another file renamed. ${convertHint(abs)}`,
    );
  }
  try {
    return await readKeras(kind === 'h5' ? await readH5(bytes, abs, shown) : await readKerasZip(bytes, abs, shown), abs, shown, folder);
  } catch (e) {
    // libhdf5 opened the file but a structure in it does not read (a damaged B-tree or object header, a looping or external link).
    if (e instanceof Hdf5ReadError) {
      throw new EngineError('keras-file', `${kind === 'h5' ? shown : `model.weights.h5 in ${shown}`} is damaged: ${e.message}. ${convertHint(abs)}`);
    }
    throw e;
  }
}

async function readKeras(source: KerasSource, abs: string, shown: string, folder: string): Promise<ModelFiles> {
  const h5 = source.weights;
  try {
    const c: Conversion = { shown, classes: new Set(), warnings: new Set(), layers: 0 };
    const topology = convertConfig(source.config, c);
    const layerClasses = [...c.classes];
    const warnings = [...c.warnings];
    const generatedBy = `Keras ${source.kerasVersion ?? '(unknown version)'}`;
    const known = registeredClasses();
    if (layerClasses.some((cls) => !known.has(cls))) {
      return { modelJsonPath: abs, folder, format: 'layers', artifacts: { modelTopology: topology, weightSpecs: [], weightData: new ArrayBuffer(0), generatedBy }, layerClasses, warnings };
    }
    // tfjs would loop for ever rebuilding a functional graph with a call whose input never exists.
    const unresolvable = findUnresolvableCall(topology);
    if (unresolvable) throw new EngineError('not-a-model', `${shown}: the model's graph cannot be rebuilt: ${unresolvable}. Its layer list is damaged; save the model again from Keras.`);
    // A shape is only a claim: a chunked dataset never written claims any size in a few bytes. Stored
    // values need storage, so count at most one per byte of the file (float32 takes four).
    const stored = Math.min(storedValues(h5, h5.root(), { groups: 0 }), h5.size);
    const { model, created } = await buildModel(topology, stored, shown);
    try {
      const pairs = source.kind === 'h5' ? assignLegacy(h5, model, shown) : assignV3(h5, model, topLayersNode(h5), topLayersPath(h5), shown);
      for (const [w, f, layer] of pairs) {
        const values = checkAndRead(h5, shown, layer, w, f, warnings);
        const t = tf.tensor(values, w.shape as number[], w.dtype === 'int32' ? 'int32' : 'float32');
        w.write(t);
        t.dispose();
      }
      const artifacts = await modelArtifacts(model);
      artifacts.generatedBy = generatedBy;
      artifacts.convertedBy = `Layer Lens (from ${source.kind === 'h5' ? 'a Keras .h5 file' : 'a .keras archive'})`;
      return { modelJsonPath: abs, folder, format: 'layers', artifacts, layerClasses, warnings };
    } finally {
      // A layer called twice counts two references, so model.dispose() leaves its weights: free every weight the build made.
      model.dispose();
      for (const w of created) {
        try {
          w.dispose();
        } catch {
          // already disposed with its layer
        }
      }
    }
  } finally {
    h5.close();
  }
}

/** Where a .keras weights file keeps the top model's layers ("_layer_checkpoint_dependencies" in Keras 2.13). */
function topLayersNode(h5: Hdf5File): Hdf5Node | undefined {
  return h5.group(h5.root(), 'layers') ?? h5.group(h5.root(), '_layer_checkpoint_dependencies');
}

function topLayersPath(h5: Hdf5File): string {
  return h5.group(h5.root(), 'layers') || !h5.group(h5.root(), '_layer_checkpoint_dependencies') ? 'layers' : '_layer_checkpoint_dependencies';
}
