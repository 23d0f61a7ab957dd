/**
 * What a graph model's input takes, made to take what the rest of the engine
 * feeds: [n, h, w, c] image batches of any n.
 *
 * Graph models converted from PyTorch through ONNX (onnx-tf, then
 * tensorflowjs_converter) keep PyTorch's channels-first input, e.g.
 * [1, 3, 32, 32], and transpose it to TensorFlow's layout inside the graph;
 * read as [batch, height, width, channels] that is a 3-pixel-high image of
 * 32 channels, and every image was refused as "32-channel input". The same
 * exports usually fix the batch at 1 (torch.onnx.export's dummy input), which
 * tfjs enforces, so a batch of 32 (evaluate, embed) failed on the shape. Both
 * are handled here, once, where the graph is loaded: the model's execute
 * transposes the batch to its layout and runs a fixed batch of 1 one image at
 * a time, and the summary shows the input as images are fed (ONNX models do
 * the same, src/engine/onnx/model.ts).
 */
import * as tf from '@tensorflow/tfjs';
import type { Shape } from '../protocol/model';

/**
 * Whether a 4-d input is channels-first: [n, c, h, w] with c 1 or 3 and a
 * last axis that is not (the same rule as for ONNX models, read the other way
 * round, since TensorFlow's own layout is channels-last).
 */
export function isChannelsFirst(shape: Shape): boolean {
  if (shape.length !== 4) return false;
  const [, c, , w] = shape;
  return (c === 1 || c === 3) && w !== 1 && w !== 3;
}

/** [n, c, h, w] → [n, h, w, c]. */
export function channelsLast(shape: Shape): Shape {
  return [shape[0], shape[2], shape[3], shape[1]];
}

/**
 * Makes `graph.execute` and `graph.executeAsync` (and so `predict`) take
 * [n, h, w, c] batches of any n for its first input. Returns what was changed,
 * in words, or undefined when the graph takes such batches already.
 */
export function adaptGraphInput(graph: tf.GraphModel): string | undefined {
  const input = graph.inputs[0];
  if (graph.inputs.length !== 1 || !input?.shape) return undefined;
  const declared = input.shape;
  const nchw = isChannelsFirst(declared);
  const batchOne = declared[0] === 1;
  if (!nchw && !batchOne) return undefined;
  const name = input.name;
  const execute = graph.execute.bind(graph);
  const executeAsync = graph.executeAsync.bind(graph);
  const named = (inputs: tf.Tensor | tf.Tensor[] | tf.NamedTensorMap): tf.NamedTensorMap | undefined => {
    if (inputs instanceof tf.Tensor) return { [name]: inputs };
    if (Array.isArray(inputs)) return inputs.length === 1 ? { [name]: inputs[0] } : undefined;
    return inputs;
  };
  const toModel = (x: tf.Tensor): tf.Tensor => (nchw && x.rank === 4 ? tf.transpose(x, [0, 3, 1, 2]) : x);
  /** The batch in pieces the graph takes: one image each when its batch is fixed at 1. */
  const pieces = (x: tf.Tensor): tf.Tensor[] => (batchOne && x.rank > 0 && x.shape[0] > 1 ? tf.split(x, x.shape[0], 0) : [x]);
  const join = (runs: (tf.Tensor | tf.Tensor[])[]): tf.Tensor | tf.Tensor[] => {
    if (runs.length === 1) return runs[0];
    const first = runs[0];
    if (!Array.isArray(first)) return tf.concat(runs as tf.Tensor[], 0);
    return first.map((_, k) => tf.concat(runs.map((r) => (r as tf.Tensor[])[k]), 0));
  };

  graph.execute = (inputs, outputs) => {
    const map = named(inputs);
    const x = map?.[name];
    if (!map || !x) return execute(inputs, outputs);
    // tidy frees the transposed and split copies; what execute returns is kept.
    return tf.tidy(() => join(pieces(toModel(x)).map((p) => execute({ ...map, [name]: p }, outputs))));
  };
  graph.executeAsync = async (inputs, outputs) => {
    const map = named(inputs);
    const x = map?.[name];
    if (!map || !x) return executeAsync(inputs, outputs);
    const fed = toModel(x);
    const parts = pieces(fed);
    const runs: (tf.Tensor | tf.Tensor[])[] = [];
    try {
      for (const p of parts) runs.push(await executeAsync({ ...map, [name]: p }, outputs));
      return runs.length === 1 ? runs[0] : join(runs);
    } finally {
      const kept = new Set(runs.length === 1 ? [runs[0]].flat() : []);
      for (const t of [fed, ...parts, ...(runs.length > 1 ? runs.flat() : [])]) if (t !== x && !kept.has(t) && !t.isDisposed) t.dispose();
    }
  };
  const what = [
    nchw ? 'channels-first (as converted from PyTorch through ONNX); images are transposed to it' : '',
    batchOne ? 'batch size fixed at 1; batches run one image at a time' : '',
  ].filter(Boolean);
  return `${what.join('; ')}.`;
}

/** Ops whose output keeps the layout of their first input (elementwise and unary ops). */
const KEEPS_LAYOUT = new Set([
  'Abs', 'Add', 'AddV2', 'BiasAdd', 'ClipByValue', 'Elu', 'Exp', 'Identity', 'LeakyRelu', 'Maximum', 'Minimum', 'Mul', 'Neg',
  'Prelu', 'RealDiv', 'Relu', 'Relu6', 'Rsqrt', 'Selu', 'Sigmoid', 'Softplus', 'Sqrt', 'Square', 'Sub', 'Tanh',
]);

/**
 * The nodes of a graph with a channels-first input whose outputs are
 * channels-first too: onnx-tf transposes to NHWC around each convolution and
 * pool and back to NCHW after it, and the activations between (Selu, Relu,
 * bias adds) run on NCHW tensors. Read as [h, w, c] their maps are strips
 * (a [1, 3, 30, 30] map showed as 30 channels of 3x30), so the inspector and
 * embeddings transpose these. Followed from the input through Transposes
 * (by their perm) and the ops in KEEPS_LAYOUT; any other op is taken to be
 * channels-last, TensorFlow's layout, unless its data_format says NCHW.
 */
export function channelsFirstNodes(graph: tf.GraphModel, topology: Record<string, unknown>): Set<string> {
  const out = new Set<string>();
  const input = graph.inputs[0];
  if (graph.inputs.length !== 1 || !input?.shape || !isChannelsFirst(input.shape)) return out;
  const nodes = Array.isArray(topology['node']) ? (topology['node'] as Record<string, unknown>[]) : [];
  const byName = new Map<string, Record<string, unknown>>();
  for (const n of nodes) if (typeof n['name'] === 'string') byName.set(n['name'], n);
  const inputNode = input.name.replace(/:\d+$/, '');
  const nodeOf = (ref: unknown) => (typeof ref === 'string' ? ref.replace(/^\^/, '').split(':')[0] : '');
  const perm = (name: string): string => {
    const w = graph.weights[name]?.[0];
    return w && w.dtype === 'int32' && w.size === 4 ? Array.from(w.dataSync()).join(',') : '';
  };
  const attrs = (n: Record<string, unknown>) => (n['attr'] ?? {}) as Record<string, { s?: string } | undefined>;
  /** The node whose layout a node's output takes, or the layout itself. */
  const rule = (name: string): boolean | string => {
    const n = byName.get(name);
    if (!n) return false;
    const op = typeof n['op'] === 'string' ? n['op'] : '';
    const refs = Array.isArray(n['input']) ? (n['input'] as unknown[]).map(nodeOf) : [];
    if (op === 'Transpose') return perm(refs[1] ?? '') === '0,3,1,2';
    const format = attrs(n)['data_format']?.s;
    if (typeof format === 'string') return Buffer.from(format, 'base64').toString() === 'NCHW';
    const first = refs.find((r) => r && byName.get(r)?.['op'] !== 'Const');
    return KEEPS_LAYOUT.has(op) && first ? first : false;
  };
  // Followed with a stack of its own, not recursion: a converted graph can be thousands of ops deep.
  const memo = new Map<string, boolean>([[inputNode, true]]);
  const layout = (start: string): boolean => {
    const chain: string[] = [];
    let at: string = start;
    let found: boolean | undefined;
    const seen = new Set<string>();
    for (;;) {
      found = memo.get(at);
      if (found !== undefined) break;
      if (seen.has(at)) {
        found = false; // A cycle (none in a converted graph) reads as channels-last.
        break;
      }
      seen.add(at);
      chain.push(at);
      const r = rule(at);
      if (typeof r === 'boolean') {
        found = r;
        chain.pop();
        memo.set(at, r);
        break;
      }
      at = r;
    }
    for (const c of chain) memo.set(c, found);
    return found;
  };
  for (const name of byName.keys()) if (name !== inputNode && layout(name)) out.add(name);
  return out;
}
