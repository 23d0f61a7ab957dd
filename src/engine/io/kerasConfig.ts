/**
 * A Keras config (Keras 2 or 3) turned into the topology tfjs-layers reads:
 * `batch_shape`, dtype policies, `__keras_tensor__` call arguments,
 * registered names and the few classes, initializers and activations tfjs
 * spells differently. Used by keras.ts before it builds the model.
 */
import { EngineError } from '../errors';
import { registeredClasses } from './buildGuard';
import { clip, isObject, kerasLimits, type Json } from './kerasFile';


export interface Conversion {
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

export function convertConfig(config: unknown, c: Conversion): Json {
  const topology = convertLayer(config, c, 0);
  if (!containerClasses.has(topology['class_name'] as string)) {
    throw new EngineError('not-a-model', `${c.shown}: the model config describes a single ${clip(String(topology['class_name']), 60)} layer, not a Sequential or functional model.`);
  }
  return topology;
}
