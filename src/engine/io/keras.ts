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
import { unzipSync, type UnzipFileInfo } from 'fflate';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EngineError } from '../errors';
import { Hdf5File, Hdf5ReadError, type Hdf5Dataset, type Hdf5Node } from './hdf5';
import { findUnresolvableCall, libraryReason } from './graphCheck';
import { clipText, parseJsonBounded, rel, type ModelFiles } from './files';
import { modelArtifacts } from './save';
import { buildGuarded, registeredClasses, type BuildHooks } from './buildGuard';

export const kerasLimits = {
  /** The whole file is read into memory (Node reads at most 2 GB at once). */
  maxFileBytes: 2 ** 31 - 1,
  /** config.json inside a .keras (same bound as a model.json). */
  maxConfigBytes: 64 * 1024 * 1024,
  maxMetadataBytes: 1024 * 1024,
  maxWeightsBytes: 2 ** 31 - 1,
  maxZipEntries: 100_000,
  /** Layers per model, and HDF5 groups visited while sizing the weights. */
  maxLayers: 100_000,
};

const hdf5Signature = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a];

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Text from the file as a message shows it: one line, control characters escaped, short (a name the config gives as a number or an object too). */
const clip = (text: unknown, max = 100): string => clipText(typeof text === 'string' ? text : (JSON.stringify(text) ?? String(text)), max);

function shapeText(shape: readonly (number | null)[]): string {
  return `[${clip(shape.join(', '))}]`;
}

function convertHint(abs: string): string {
  return `If Keras opens it, convert it with "tensorflowjs_converter --input_format keras ${path.basename(abs)} out/" and open out/model.json.`;
}

// ---------------------------------------------------------------------------
// Reading the file

interface KerasSource {
  kind: 'h5' | 'keras';
  config: unknown;
  kerasVersion?: string;
  /** HDF5 holding the weights: the file itself, or model.weights.h5 of the zip. */
  weights: Hdf5File;
}

async function readBytes(abs: string, shown: string): Promise<{ bytes: Uint8Array; folder: string }> {
  let real: string;
  let st: fs.Stats;
  try {
    real = await fs.promises.realpath(abs);
    st = await fs.promises.stat(real);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw new EngineError('unsafe-path', `${shown} is inside a symlink loop; fix the links that point back into the folder.`);
    throw new EngineError('not-found', `${shown} does not exist.`);
  }
  if (!st.isFile()) throw new EngineError('not-a-model', `${shown} is not a file.`);
  if (st.size === 0) throw new EngineError('keras-file', `${shown} is empty (0 bytes); the save may have been interrupted.`);
  if (st.size > kerasLimits.maxFileBytes) {
    throw new EngineError(
      'too-large',
      `${shown} is ${(st.size / 2 ** 30).toFixed(1)} GB; Layer Lens reads Keras files of up to 2 GB into memory. Convert it with "tensorflowjs_converter --input_format keras ${path.basename(abs)} out/" and open out/model.json.`,
    );
  }
  return { bytes: new Uint8Array(await fs.promises.readFile(real)), folder: path.dirname(real) };
}

function startsWith(bytes: Uint8Array, sig: number[]): boolean {
  return bytes.length >= sig.length && sig.every((b, i) => bytes[i] === b);
}


async function openHdf5(bytes: Uint8Array, abs: string, shown: string, inner?: string): Promise<Hdf5File> {
  try {
    return await Hdf5File.open(bytes);
  } catch (e) {
    if (e instanceof EngineError) throw e; // the reader itself could not start
    const why = e instanceof Error ? e.message : String(e);
    if (inner) throw new EngineError('keras-file', `${inner} in ${shown} is not a readable HDF5 file (${why}); the archive may be damaged. ${convertHint(abs)}`);
    throw new EngineError('keras-file', `${shown} is a Keras file; Layer Lens could not read it as HDF5 (${why}). ${convertHint(abs)}`);
  }
}

/** The legacy format: config in root attributes, weights under model_weights/. */
async function readH5(bytes: Uint8Array, abs: string, shown: string): Promise<KerasSource> {
  const h5 = await openHdf5(bytes, abs, shown);
  try {
    const root = h5.root();
    const config = h5.attr(root, 'model_config');
    if (typeof config !== 'string') {
      const stem = path.basename(abs).replace(/\.[^.]*$/, '');
      throw new EngineError(
        'not-a-model',
        `${shown} holds no model architecture (no "model_config" attribute): it was saved with save_weights, or is not a Keras model. Save the whole model with model.save("${stem}.keras") or model.save("${stem}.h5").`,
      );
    }
    if (config.length > kerasLimits.maxConfigBytes) throw new EngineError('too-large', `${shown}: its model_config is ${(config.length / 1048576).toFixed(0)} MB; no real model's is, so it was not parsed.`);
    const version = h5.attr(root, 'keras_version');
    return { kind: 'h5', config: parseJsonBounded(config, `the model_config of ${shown}`), kerasVersion: typeof version === 'string' ? version : undefined, weights: h5 };
  } catch (e) {
    h5.close();
    throw e;
  }
}

/**
 * The .keras zip, read in memory: only config.json, metadata.json and
 * model.weights.h5 at the root are inflated, each refused by its declared size
 * first (fflate inflates into a buffer of exactly that size, so a lying entry
 * is cut short, never larger).
 */
async function readKerasZip(bytes: Uint8Array, abs: string, shown: string): Promise<KerasSource> {
  const wanted: Record<string, number> = {
    'config.json': kerasLimits.maxConfigBytes,
    'metadata.json': kerasLimits.maxMetadataBytes,
    'model.weights.h5': kerasLimits.maxWeightsBytes,
  };
  const seen = new Set<string>();
  let entries = 0;
  let hasNpz = false;
  let files: Record<string, Uint8Array>;
  try {
    files = unzipSync(bytes, {
      filter: (f: UnzipFileInfo) => {
        if (++entries > kerasLimits.maxZipEntries) {
          throw new EngineError('too-large', `${shown} holds more than ${kerasLimits.maxZipEntries} entries; a Keras archive holds three or four, so it was not read.`);
        }
        if (f.name === 'model.weights.npz') hasNpz = true;
        if (!Object.prototype.hasOwnProperty.call(wanted, f.name)) return false;
        if (seen.has(f.name)) {
          throw new EngineError('keras-file', `${shown} holds two entries named ${f.name}; refused (different zip readers would disagree on which one counts).`);
        }
        seen.add(f.name);
        const limit = wanted[f.name];
        if (f.originalSize > limit || f.size > limit) {
          throw new EngineError(
            'too-large',
            `${shown}: ${f.name} claims ${(Math.max(f.originalSize, f.size) / 1048576).toFixed(0)} MB, more than the ${(limit / 1048576).toFixed(0)} MB Layer Lens accepts; refused before inflating (a zip bomb?).`,
          );
        }
        return true;
      },
    });
  } catch (e) {
    if (e instanceof EngineError) throw e;
    throw new EngineError('keras-file', `${shown} is not a readable zip archive (${e instanceof Error ? e.message : String(e)}); a .keras file is a zip of config.json, metadata.json and model.weights.h5. ${convertHint(abs)}`);
  }
  const configBytes = files['config.json'];
  if (!configBytes) {
    throw new EngineError('not-a-model', `${shown} is a zip without config.json at its root, so it is not a Keras model archive (a .keras file holds config.json, metadata.json and model.weights.h5).`);
  }
  const weightBytes = files['model.weights.h5'];
  if (!weightBytes) {
    throw new EngineError(
      'not-a-model',
      hasNpz
        ? `${shown} stores its weights as model.weights.npz, which Layer Lens does not read; save the model with the default weights format (HDF5).`
        : `${shown} has no model.weights.h5, so its weights are missing; save the model again with model.save("${path.basename(abs)}").`,
    );
  }
  const decoder = new TextDecoder('utf-8', { fatal: false });
  const config = parseJsonBounded(decoder.decode(configBytes), `config.json in ${shown}`);
  let kerasVersion: string | undefined;
  if (files['metadata.json']) {
    try {
      const meta = parseJsonBounded(decoder.decode(files['metadata.json']), `metadata.json in ${shown}`);
      if (isObject(meta) && typeof meta['keras_version'] === 'string') kerasVersion = meta['keras_version'];
    } catch {
      // metadata.json only says which Keras wrote the file.
    }
  }
  const weights = await openHdf5(weightBytes, abs, shown, 'model.weights.h5');
  return { kind: 'keras', config, kerasVersion, weights };
}

// ---------------------------------------------------------------------------
// Keras config → tfjs-layers topology

interface Conversion {
  shown: string;
  classes: Set<string>;
  warnings: Set<string>;
  layers: number;
}

const containerClasses = new Set(['Sequential', 'Functional', 'Model']);

/** Keras names whose tfjs class is spelled differently. */
const initializerNames: Record<string, string> = {
  OrthogonalInitializer: 'Orthogonal',
  IdentityInitializer: 'Identity',
  LecunNormal: 'LeCunNormal',
  LecunUniform: 'LeCunUniform',
};
const activationNames: Record<string, string> = { silu: 'swish' };

/** `table[key]` when the table itself has it: a name from the file such as "constructor" must not find Object's. */
function own(table: Record<string, string>, key: string): string | undefined {
  return Object.prototype.hasOwnProperty.call(table, key) ? table[key] : undefined;
}

function camel(s: string): string {
  return s.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** A Keras 3 object reference without its Python module and registration names. */
function stripped(v: Json): Json {
  const out: Json = {};
  for (const [k, x] of Object.entries(v)) {
    if (k === 'module' || k === 'registered_name' || k === 'build_config' || k === 'compile_config' || k === 'shared_object_id') continue;
    out[k] = x;
  }
  return out;
}

function convertDtype(v: unknown, c: Conversion): unknown {
  let name = v;
  // Keras 3: {"class_name": "DTypePolicy", "config": {"name": "float32"}}; Keras 2 mixed precision: {"class_name": "Policy", ...}.
  if (isObject(v) && isObject(v['config']) && typeof v['config']['name'] === 'string') name = v['config']['name'];
  if (typeof name !== 'string') return undefined;
  if (name === 'float32' || name === 'int32' || name === 'bool') return name;
  if (name.startsWith('mixed_') || name === 'float16' || name === 'bfloat16' || name === 'float64') {
    c.warnings.add(`the model computes in ${name}; Layer Lens computes in float32, so results may differ slightly from Keras`);
    return 'float32';
  }
  if (/^u?int\d+$/.test(name)) return 'int32';
  return 'float32';
}

function convertActivation(v: unknown, layer: string, c: Conversion): unknown {
  if (v === null || v === undefined) return v;
  const known = registeredClasses();
  if (typeof v === 'string') {
    const name = own(activationNames, v) ?? v;
    if (known.has(name) || known.has(camel(name))) return name;
    throw new EngineError('unsupported-layer', `${c.shown}: layer "${clip(layer)}" uses the activation "${clip(v, 60)}", which tfjs-layers does not provide; use a built-in activation (relu, sigmoid, softmax, tanh, …) before saving.`);
  }
  throw new EngineError('unsupported-layer', `${c.shown}: layer "${clip(layer)}" uses a custom activation function, which cannot be loaded outside Python; use a built-in activation before saving.`);
}

/** Initializers, regularizers and constraints: renamed where tfjs spells them differently, dropped (with a warning) where tfjs lacks them. */
function convertHelper(v: unknown, kind: 'initializer' | 'regularizer' | 'constraint', layer: string, c: Conversion): unknown {
  if (!isObject(v) || typeof v['class_name'] !== 'string') return v;
  const o = stripped(v);
  let cls = v['class_name'];
  let config = isObject(o['config']) ? { ...o['config'] } : {};
  if (kind === 'initializer') cls = own(initializerNames, cls) ?? cls;
  if (kind === 'regularizer' && (cls === 'L1' || cls === 'L2')) {
    config = { l1: cls === 'L1' ? (config['l1'] ?? 0.01) : 0, l2: cls === 'L2' ? (config['l2'] ?? 0.01) : 0 };
    cls = 'L1L2';
  }
  if (!registeredClasses().has(cls)) {
    c.warnings.add(`layer "${clip(layer)}": the ${kind} ${clip(cls, 60)} does not exist in tfjs and was left out (it only matters for training new weights)`);
    return null;
  }
  return { class_name: cls, config };
}

/** Keras 3 call arguments → Keras 2 inbound node data `[[layer, node, tensor, kwargs], …]`. */
function convertInboundNodes(nodes: unknown, c: Conversion): unknown {
  if (!Array.isArray(nodes)) return nodes;
  return nodes.map((node) => {
    if (!isObject(node)) return node; // Keras 2 already: a list of [layer, node, tensor, kwargs]
    const tensors: [string, number, number, Json][] = [];
    const visit = (a: unknown, depth: number): void => {
      if (depth > 50) return;
      if (Array.isArray(a)) a.forEach((x) => visit(x, depth + 1));
      else if (isObject(a) && a['class_name'] === '__keras_tensor__' && isObject(a['config'])) {
        const h = a['config']['keras_history'];
        if (Array.isArray(h) && typeof h[0] === 'string' && typeof h[1] === 'number' && typeof h[2] === 'number') tensors.push([h[0], h[1], h[2], {}]);
      } else if (isObject(a)) Object.values(a).forEach((x) => visit(x, depth + 1));
    };
    visit(node['args'], 0);
    // Plain keyword arguments (training=False) are kept; tensors passed by keyword (mask=…) are not.
    const kwargs: Json = {};
    if (isObject(node['kwargs'])) {
      for (const [k, x] of Object.entries(node['kwargs'])) if (x === null || ['boolean', 'number', 'string'].includes(typeof x)) kwargs[k] = x;
    }
    if (tensors.length === 0) throw new EngineError('not-a-model', `${c.shown}: a layer's inbound node names no input tensor; the config is malformed.`);
    for (const t of tensors) t[3] = kwargs;
    return tensors;
  });
}

/** input_layers / output_layers: Keras 3 writes a single tensor unnested, or a dict of them. */
function convertEndpoints(v: unknown): unknown {
  if (isObject(v)) return Object.values(v);
  if (Array.isArray(v) && typeof v[0] === 'string') return [v];
  return v;
}

function convertLayer(entry: unknown, c: Conversion, depth: number): Json {
  if (!isObject(entry) || typeof entry['class_name'] !== 'string' || !isObject(entry['config'])) {
    throw new EngineError('not-a-model', `${c.shown}: a layer in the model config is not of the form {"class_name", "config"}; the config is malformed.`);
  }
  if (depth > 100) throw new EngineError('too-deep', `${c.shown}: models nest more than 100 deep; no real model does.`);
  if (++c.layers > kerasLimits.maxLayers) throw new EngineError('too-large', `${c.shown} describes more than ${kerasLimits.maxLayers} layers; refused.`);
  const config = entry['config'];
  const name = typeof config['name'] === 'string' ? config['name'] : typeof entry['name'] === 'string' ? entry['name'] : '?';
  const module = typeof entry['module'] === 'string' ? entry['module'] : '';
  let cls = entry['class_name'];
  if (/^keras(\.src)?\.ops(\.|$)/.test(module)) {
    throw new EngineError(
      'unsupported-layer',
      `${c.shown}: "${clip(name)}" is the Keras operation ${clip(cls, 60)} (${clip(module, 60)}) applied directly in a functional model, not a layer; tfjs-layers cannot rebuild raw operations. Use the matching layer from keras.layers before saving.`,
    );
  }
  // A custom class is registered as "package>Class"; name it that way so it is reported as unknown, never taken for a built-in of the same name.
  const reg = entry['registered_name'];
  if (typeof reg === 'string' && reg.includes('>')) cls = reg;
  c.classes.add(cls);

  const out: Json = { class_name: cls, config: convertLayerConfig(cls, config, entry, name, c, depth) };
  if ('name' in entry) out['name'] = entry['name'];
  if ('inbound_nodes' in entry) out['inbound_nodes'] = convertInboundNodes(entry['inbound_nodes'], c);
  return out;
}

function convertLayerConfig(cls: string, config: Json, entry: Json, name: string, c: Conversion, depth: number): Json {
  const out: Json = {};
  for (const [k, v] of Object.entries(config)) {
    if (k === 'dtype') {
      const d = convertDtype(v, c);
      if (d !== undefined) out[k] = d;
    } else if (k === 'batch_shape') out['batch_input_shape'] = v;
    else if (k === 'layers' && Array.isArray(v)) out[k] = v.map((l) => convertLayer(l, c, depth + 1));
    else if ((k === 'layer' || k === 'forward_layer' || k === 'backward_layer' || k === 'cell') && isObject(v) && typeof v['class_name'] === 'string') {
      out[k] = convertLayer(v, c, depth + 1);
    } else if (k === 'activation' || k === 'recurrent_activation') out[k] = convertActivation(v, name, c);
    else if (k.endsWith('_initializer')) out[k] = convertHelper(v, 'initializer', name, c);
    else if (k.endsWith('_regularizer')) out[k] = convertHelper(v, 'regularizer', name, c);
    else if (k.endsWith('_constraint')) out[k] = convertHelper(v, 'constraint', name, c);
    else if (k === 'input_layers' || k === 'output_layers') out[k] = convertEndpoints(v);
    else out[k] = v;
  }
  if (typeof config['groups'] === 'number' && config['groups'] !== 1) {
    throw new EngineError('unsupported-layer', `${c.shown}: layer "${clip(name)}" (${cls}) is a grouped convolution (groups=${config['groups']}), which tfjs-layers does not implement.`);
  }
  if (cls === 'Sequential' && Array.isArray(out['layers'])) sequentialInput(out, entry);
  if ((cls === 'Functional' || cls === 'Model') && Array.isArray(out['layers'])) shiftNestedNodes(out);
  return out;
}

/**
 * Keras numbers a nested model's call nodes from 0 (Keras 2 skips the node
 * that links the nested model's own input to its output; Keras 3 has none),
 * while in tfjs that node exists and is node 0, so the first call is node 1.
 * Every reference to a nested model's node moves up by one.
 */
function shiftNestedNodes(config: Json): void {
  const layers = config['layers'] as Json[];
  const nested = new Set(layers.filter((l) => containerClasses.has(l['class_name'] as string)).map((l) => (typeof l['name'] === 'string' ? l['name'] : (l['config'] as Json)['name'])));
  if (nested.size === 0) return;
  const shift = (ref: unknown): unknown =>
    Array.isArray(ref) && typeof ref[0] === 'string' && nested.has(ref[0]) && typeof ref[1] === 'number' ? [ref[0], ref[1] + 1, ...ref.slice(2)] : ref;
  for (const l of layers) {
    if (Array.isArray(l['inbound_nodes'])) l['inbound_nodes'] = l['inbound_nodes'].map((node: unknown) => (Array.isArray(node) ? node.map(shift) : node));
  }
  if (Array.isArray(config['output_layers'])) config['output_layers'] = config['output_layers'].map(shift);
}

/**
 * Keras writes a Sequential's InputLayer as its first layer (and Keras's own
 * layer list leaves it out); tfjs expects the input shape on the first real
 * layer, as tfjs and older Keras write it. Move it there.
 */
function sequentialInput(config: Json, entry: Json): void {
  const layers = config['layers'] as Json[];
  const first = layers[0];
  const next = layers[1];
  let shape: unknown;
  let dtype: unknown;
  if (first?.['class_name'] === 'InputLayer') {
    if (!next || containerClasses.has(next['class_name'] as string)) return; // a nested model brings its own input
    const ic = first['config'] as Json;
    shape = ic['batch_input_shape'];
    dtype = ic['dtype'];
    layers.shift();
  } else {
    // No InputLayer: Keras 2 records the build shape on the model, Keras 3 in build_config.
    const bc = entry['build_config'];
    shape = config['build_input_shape'] ?? (isObject(bc) ? bc['input_shape'] : undefined);
  }
  const target = layers[0];
  if (!target || !Array.isArray(shape) || containerClasses.has(target['class_name'] as string)) return;
  const tc = target['config'] as Json;
  if (tc['batch_input_shape'] === undefined && tc['input_shape'] === undefined) tc['batch_input_shape'] = shape;
  if (tc['dtype'] === undefined && typeof dtype === 'string') tc['dtype'] = dtype;
}

function convertConfig(config: unknown, c: Conversion): Json {
  const topology = convertLayer(config, c, 0);
  if (!containerClasses.has(topology['class_name'] as string)) {
    throw new EngineError('not-a-model', `${c.shown}: the model config describes a single ${clip(String(topology['class_name']), 60)} layer, not a Sequential or functional model.`);
  }
  return topology;
}

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
  if (f.dataset.type !== 'float32' && f.dataset.type !== 'float64') {
    throw new EngineError('bad-weights', `${shown}: weight "${shortName(w)}" of layer "${clip(layer)}" is stored as ${f.dataset.type}, which Layer Lens cannot read (float32 or float64 only).`);
  }
  let values: Float32Array;
  try {
    values = h5.readFloats(f.dataset);
  } catch (e) {
    const why = e instanceof Hdf5ReadError ? e.reason : e instanceof Error ? e.message.split('\n')[0] : String(e);
    throw new EngineError('bad-weights', `${shown}: the values of weight "${shortName(w)}" of layer "${clip(layer)}" cannot be read (${clip(why, 200)}); the file is damaged. ${convertHint(shown)}`);
  }
  let nan = 0;
  let inf = 0;
  for (let i = 0; i < values.length; i++) {
    const x = values[i];
    if (x !== x) nan++;
    else if (x === Infinity || x === -Infinity) inf++;
  }
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
        const t = tf.tensor(values, w.shape as number[], 'float32');
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
