/**
 * The plan of a compiled training step: a layers model turned into a flat
 * list of nodes whose forward and backward passes Layer Lens runs itself
 * (./executor.ts), instead of tfjs's gradient tape.
 *
 * Why: on the real transfer-learning model (Teachable Machine's MobileNetV2,
 * 224x224) tfjs's tape made a training step ten times slower than PyTorch and
 * four times its memory. It keeps every intermediate tensor of the forward
 * pass until the forward ends and every saved one until the backward ends;
 * BatchNormalization's gradient broadcasts per-channel vectors with Tile to
 * full activation size (38% of a step); ReLU6's gradient is four kernels with
 * a boolean tensor each. Here each node says what its backward needs, the
 * rest is freed as soon as its last reader ran, and the hot layers have
 * fused kernels (src/engine/kernels/assembly):
 *
 * - Conv2D and DepthwiseConv2D: forward on XNNPACK (a ZeroPadding2D in front
 *   is folded into the convolution's own padding), filter gradients by SIMD
 *   kernels (a depthwise one does one tap per channel, not a full
 *   convolution of transposed tensors), input gradients on XNNPACK or fused
 *   with the depthwise filter gradient.
 * - BatchNormalization with the ReLU/ReLU6 after it: one statistics pass and
 *   one normalise-and-clamp pass forward, one reduction and one apply pass
 *   backward. A frozen one runs in inference mode (Keras semantics, as
 *   src/engine/train/freeze.ts makes tfjs do) and has no statistics to keep.
 * - ReLU, ReLU6, Add, max and average pooling, GlobalAveragePooling2D and
 *   Dense natively too.
 * - Any other layer is a "generic" node: run by tfjs forward, and its
 *   gradient taken by tfjs on a recomputation from the saved input (under
 *   the same seeded randomness, so Dropout draws the same mask twice).
 *
 * A model that cannot be planned (several outputs, a BatchNormalization on
 * an axis other than the last, a layer with several outputs) trains through
 * tfjs's tape as before; `planTrainingStep` says why.
 */
import * as tf from '@tensorflow/tfjs';
import { flatGraph } from '../../inspect/flatGraph';

type LayerVariable = tf.LayerVariable;

/** A clamp after the node: ReLU is [0, +Inf), ReLU6 is [0, 6]. */
export interface Clamp {
  lo: number;
  hi: number;
}

interface Base {
  /** Layer path as in the layer table (for the profile and errors). */
  path: string;
  inputs: number[];
  output: number;
}

export interface ConvNode extends Base {
  kind: 'conv' | 'depthwise';
  kernel: LayerVariable;
  bias?: LayerVariable;
  strides: [number, number];
  dilations: [number, number];
  padding: 'same' | 'valid';
  /** Padding of a folded ZeroPadding2D: top, bottom, left, right. */
  extraPad: [number, number, number, number];
  /** Depthwise only: the channel multiplier. */
  multiplier: number;
}

export interface BatchNormNode extends Base {
  kind: 'bn';
  gamma?: LayerVariable;
  beta?: LayerVariable;
  movingMean: LayerVariable;
  movingVariance: LayerVariable;
  epsilon: number;
  momentum: number;
  /** Batch statistics (a trainable layer); false: moving statistics, as Keras runs a frozen one. */
  training: boolean;
  clamp?: Clamp;
}

export interface ClampNode extends Base {
  kind: 'clamp';
  clamp: Clamp;
}

export interface DenseNode extends Base {
  kind: 'dense';
  kernel: LayerVariable;
  bias?: LayerVariable;
}

/** MaxPooling2D / AveragePooling2D: forward on XNNPACK, gradient by tfjs-backend-wasm's kernels (ours for MaxPoolGrad). */
export interface PoolNode extends Base {
  kind: 'pool';
  op: 'max' | 'avg';
  poolSize: [number, number];
  strides: [number, number];
  padding: 'same' | 'valid';
}

export interface SimpleNode extends Base {
  kind: 'add' | 'gap';
  /** The layer, run generically if the shapes turn out to broadcast. */
  layer: tf.layers.Layer;
  kwargs: Record<string, unknown>;
}

/** A tfjs activation function (softmax, sigmoid...): gradient by recomputation. */
export interface ActivationNode extends Base {
  kind: 'activation';
  name: string;
  apply: (x: tf.Tensor) => tf.Tensor;
}

export interface GenericNode extends Base {
  kind: 'generic';
  layer: tf.layers.Layer;
  kwargs: Record<string, unknown>;
}

export type PlanNode = ConvNode | BatchNormNode | ClampNode | DenseNode | PoolNode | SimpleNode | ActivationNode | GenericNode;

export interface StepPlan {
  nodes: PlanNode[];
  inputSlot: number;
  outputSlot: number;
  slotCount: number;
  /** Whether the gradient reaches back to each slot (it depends on a trained weight). */
  requiresGrad: boolean[];
  /** Each node's output shape for one image (batch axis dropped). */
  shapes: number[][];
  /** The trained variables, in the order the step returns their gradients. */
  variables: tf.Variable[];
  /** Index in `variables` of every trained variable, by identity. */
  variableIndex: Map<tf.Variable, number>;
  /** Native nodes by kind and the generic ones by layer class (for the log). */
  summary: string;
}

export type PlanResult = { plan: StepPlan } | { reason: string };

interface LayerInternals {
  kernel?: LayerVariable;
  bias?: LayerVariable | null;
  depthwiseKernel?: LayerVariable;
  gamma?: LayerVariable | null;
  beta?: LayerVariable | null;
  movingMean?: LayerVariable;
  movingVariance?: LayerVariable;
  activation?: { apply(x: tf.Tensor): tf.Tensor; getClassName?(): string };
}

const pair = (v: unknown): [number, number] => (Array.isArray(v) ? [Number(v[0]), Number(v[v.length > 1 ? 1 : 0])] : [Number(v), Number(v)]);

function activationName(layer: tf.layers.Layer): string {
  const a = (layer.getConfig() as { activation?: unknown }).activation;
  return typeof a === 'string' ? a : 'linear';
}

function clampOf(name: string): Clamp | undefined {
  if (name === 'relu') return { lo: 0, hi: Infinity };
  if (name === 'relu6') return { lo: 0, hi: 6 };
  return undefined;
}

/**
 * Plans the compiled step of `model` (one input, one output) training
 * `variables` (tfjs variables of its weights; every other weight is held
 * fixed). Returns why not when the model has something the plan cannot take.
 */
export function planTrainingStep(model: tf.LayersModel, variables: tf.Variable[]): PlanResult {
  if (model.inputs.length !== 1 || model.outputs.length !== 1) {
    return { reason: `the model has ${model.inputs.length} inputs and ${model.outputs.length} outputs (the compiled step takes one of each)` };
  }
  const g = flatGraph(model);
  let slotCount = g.slotCount;
  const nodes: PlanNode[] = [];
  const variableIndex = new Map<tf.Variable, number>();
  variables.forEach((v, i) => variableIndex.set(v, i));

  for (const step of g.steps) {
    const layer = step.layer;
    const cls = layer.getClassName();
    const internals = layer as unknown as LayerInternals;
    const config = layer.getConfig() as Record<string, unknown>;
    const base = { path: step.path, inputs: step.inputs, output: step.outputs[0] };
    if (step.outputs.length !== 1) return { reason: `layer ${step.path} (${cls}) has ${step.outputs.length} outputs` };
    // The node's own activation, split off into a node of its own.
    const withActivation = (main: PlanNode, name: string): void => {
      if (name === 'linear') {
        nodes.push(main);
        return;
      }
      const mid = slotCount++;
      nodes.push({ ...main, output: mid } as PlanNode);
      const clamp = clampOf(name);
      if (clamp) nodes.push({ kind: 'clamp', path: `${step.path} (${name})`, inputs: [mid], output: base.output, clamp });
      else if (internals.activation) nodes.push({ kind: 'activation', path: `${step.path} (${name})`, inputs: [mid], output: base.output, name, apply: (x) => internals.activation!.apply(x) });
      else nodes.push({ kind: 'generic', path: step.path, inputs: step.inputs, output: base.output, layer, kwargs: step.kwargs });
    };
    const channelsLast = config.dataFormat === undefined || config.dataFormat === 'channelsLast';

    if ((cls === 'Conv2D' || cls === 'DepthwiseConv2D') && channelsLast && (config.padding === 'same' || config.padding === 'valid')) {
      const kernel = cls === 'Conv2D' ? internals.kernel : internals.depthwiseKernel;
      if (!kernel) return { reason: `layer ${step.path} has no kernel` };
      const node: ConvNode = {
        ...base,
        kind: cls === 'Conv2D' ? 'conv' : 'depthwise',
        kernel,
        ...(internals.bias ? { bias: internals.bias } : {}),
        strides: pair(config.strides),
        dilations: pair(config.dilationRate ?? 1),
        padding: config.padding,
        extraPad: [0, 0, 0, 0],
        multiplier: Number(config.depthMultiplier ?? 1),
      };
      withActivation(node, activationName(layer));
    } else if (cls === 'BatchNormalization') {
      const axis = Number(config.axis ?? -1);
      const rank = (layer.inboundNodes[0]?.inputTensors[0]?.shape.length) ?? 4;
      if (axis !== -1 && axis !== rank - 1) return { reason: `BatchNormalization ${step.path} normalises axis ${axis}, not the last` };
      if (!internals.movingMean || !internals.movingVariance) return { reason: `BatchNormalization ${step.path} has no moving statistics` };
      nodes.push({
        ...base,
        kind: 'bn',
        ...(internals.gamma ? { gamma: internals.gamma } : {}),
        ...(internals.beta ? { beta: internals.beta } : {}),
        movingMean: internals.movingMean,
        movingVariance: internals.movingVariance,
        epsilon: Number(config.epsilon ?? 1e-3),
        momentum: Number(config.momentum ?? 0.99),
        training: layer.trainable,
      });
    } else if (cls === 'ReLU' && (config.maxValue == null || Number.isFinite(Number(config.maxValue)))) {
      nodes.push({ ...base, kind: 'clamp', clamp: { lo: 0, hi: config.maxValue == null ? Infinity : Number(config.maxValue) } });
    } else if (cls === 'Activation' && clampOf(String(config.activation))) {
      nodes.push({ ...base, kind: 'clamp', clamp: clampOf(String(config.activation))! });
    } else if (cls === 'Activation' && internals.activation) {
      nodes.push({ ...base, kind: 'activation', name: String(config.activation), apply: (x) => internals.activation!.apply(x) });
    } else if (cls === 'Add' && step.inputs.length >= 2) {
      nodes.push({ ...base, kind: 'add', layer, kwargs: step.kwargs });
    } else if ((cls === 'MaxPooling2D' || cls === 'AveragePooling2D') && channelsLast && (config.padding === 'same' || config.padding === 'valid')) {
      const poolSize = pair(config.poolSize);
      nodes.push({ ...base, kind: 'pool', op: cls === 'MaxPooling2D' ? 'max' : 'avg', poolSize, strides: config.strides == null ? poolSize : pair(config.strides), padding: config.padding });
    } else if (cls === 'GlobalAveragePooling2D' && channelsLast) {
      nodes.push({ ...base, kind: 'gap', layer, kwargs: step.kwargs });
    } else if (cls === 'Dense' && internals.kernel) {
      withActivation({ ...base, kind: 'dense', kernel: internals.kernel, ...(internals.bias ? { bias: internals.bias } : {}) }, activationName(layer));
    } else {
      nodes.push({ ...base, kind: 'generic', layer, kwargs: step.kwargs });
    }
  }

  fuse(nodes, g.outputSlots[0]);
  const inputSlot = g.inputSlots[0];
  const outputSlot = g.outputSlots[0];
  const requiresGrad = new Array<boolean>(slotCount).fill(false);
  for (const node of nodes) {
    requiresGrad[node.output] = trainedWeights(node).some((w) => variableIndex.has(w.read() as tf.Variable)) || node.inputs.some((s) => requiresGrad[s]);
  }
  const shapes = probeShapes(model, nodes, inputSlot, slotCount);
  // Add natively only without broadcasting (its gradient is then dy for every input).
  nodes.forEach((n, i) => {
    if (n.kind === 'add' && n.inputs.some((s) => shapes[s].join() !== shapes[n.output].join())) {
      nodes[i] = { kind: 'generic', path: n.path, inputs: n.inputs, output: n.output, layer: n.layer, kwargs: n.kwargs };
    }
    if (n.kind === 'gap' && shapes[n.inputs[0]].length !== 3) {
      nodes[i] = { kind: 'generic', path: n.path, inputs: n.inputs, output: n.output, layer: n.layer, kwargs: n.kwargs };
    }
  });
  const kinds = new Map<string, number>();
  for (const n of nodes) {
    const key = n.kind === 'generic' ? `generic ${n.layer.getClassName()}` : n.kind === 'bn' && n.clamp ? 'bn+clamp' : n.kind;
    kinds.set(key, (kinds.get(key) ?? 0) + 1);
  }
  const summary = [...kinds].map(([k, n]) => `${n} ${k}`).join(', ');
  return { plan: { nodes, inputSlot, outputSlot, slotCount, requiresGrad, shapes, variables, variableIndex, summary } };
}

/** The weights a node's backward may produce gradients for. */
export function trainedWeights(node: PlanNode): LayerVariable[] {
  switch (node.kind) {
    case 'conv':
    case 'depthwise':
    case 'dense':
      return node.bias ? [node.kernel, node.bias] : [node.kernel];
    case 'bn':
      return [node.gamma, node.beta].filter((w): w is LayerVariable => !!w);
    case 'generic':
      return node.layer.trainableWeights;
    default:
      return [];
  }
}

/**
 * Fusions, in place: a BatchNormalization whose only reader is a clamp takes
 * the clamp; a ZeroPadding2D whose only reader is a 'valid' convolution
 * becomes that convolution's padding.
 */
function fuse(nodes: PlanNode[], outputSlot: number): void {
  const readers = (slot: number) => nodes.filter((n) => n.inputs.includes(slot));
  for (let i = 0; i < nodes.length; i++) {
    const node = nodes[i];
    if (node.kind === 'bn' && !node.clamp && node.output !== outputSlot) {
      const r = readers(node.output);
      const next = r[0];
      if (r.length === 1 && next.kind === 'clamp' && next.inputs.length === 1) {
        node.clamp = next.clamp;
        node.output = next.output;
        nodes.splice(nodes.indexOf(next), 1);
      }
    }
    if (node.kind === 'generic' && node.layer.getClassName() === 'ZeroPadding2D' && node.output !== outputSlot) {
      const config = node.layer.getConfig() as { padding?: unknown; dataFormat?: string };
      const r = readers(node.output);
      const next = r[0];
      const p = config.padding as [[number, number], [number, number]] | undefined;
      if (r.length === 1 && (next.kind === 'conv' || next.kind === 'depthwise') && next.padding === 'valid' && next.inputs.length === 1
        && (config.dataFormat === undefined || config.dataFormat === 'channelsLast') && Array.isArray(p) && p.length === 2) {
        next.extraPad = [p[0][0], p[0][1], p[1][0], p[1][1]];
        next.inputs = node.inputs.slice();
        nodes.splice(i, 1);
        i--;
      }
    }
  }
}

/** Output shapes of every slot for one image, from one inference-mode pass at batch 1. */
function probeShapes(model: tf.LayersModel, nodes: PlanNode[], inputSlot: number, slotCount: number): number[][] {
  const shapes: number[][] = new Array(slotCount);
  const inShape = model.inputs[0].shape.slice(1).map((d) => d ?? 1);
  shapes[inputSlot] = inShape;
  tf.tidy(() => {
    const values: tf.Tensor[] = new Array(slotCount);
    values[inputSlot] = tf.zeros([1, ...inShape]);
    for (const node of nodes) values[node.output] = inferenceForward(node, node.inputs.map((s) => values[s]));
    for (let s = 0; s < slotCount; s++) if (values[s]) shapes[s] = values[s].shape.slice(1);
  });
  return shapes;
}

/** A node's forward in inference mode through tfjs ops (the shape probe). */
function inferenceForward(node: PlanNode, xs: tf.Tensor[]): tf.Tensor {
  const x = xs[0];
  switch (node.kind) {
    case 'conv':
    case 'depthwise': {
      const [t, b, l, r] = node.extraPad;
      const padded = t || b || l || r ? tf.pad(x, [[0, 0], [t, b], [l, r], [0, 0]]) : x;
      const w = node.kernel.read();
      let y = node.kind === 'conv'
        ? tf.conv2d(padded as tf.Tensor4D, w as tf.Tensor4D, node.strides, node.padding, 'NHWC', node.dilations)
        : tf.depthwiseConv2d(padded as tf.Tensor4D, w as tf.Tensor4D, node.strides, node.padding, 'NHWC', node.dilations);
      if (node.bias) y = tf.add(y, node.bias.read());
      return y;
    }
    case 'bn': {
      const y = tf.batchNorm(x, node.movingMean.read(), node.movingVariance.read(), node.beta?.read(), node.gamma?.read(), node.epsilon);
      return node.clamp ? tf.clipByValue(y, node.clamp.lo, node.clamp.hi) : y;
    }
    case 'clamp':
      return tf.clipByValue(x, node.clamp.lo, node.clamp.hi);
    case 'dense': {
      const k = node.kernel.read();
      const rows = tf.reshape(x, [-1, k.shape[0]]);
      let y = tf.matMul(rows, k);
      if (node.bias) y = tf.add(y, node.bias.read());
      return tf.reshape(y, [...x.shape.slice(0, -1), k.shape[1] as number]);
    }
    case 'add':
      return xs.length === 2 ? tf.add(xs[0], xs[1]) : tf.addN(xs);
    case 'gap':
      return tf.mean(x, [1, 2]);
    case 'pool':
      return node.op === 'max'
        ? tf.maxPool(x as tf.Tensor4D, node.poolSize, node.strides, node.padding)
        : tf.avgPool(x as tf.Tensor4D, node.poolSize, node.strides, node.padding);
    case 'activation':
      return node.apply(x);
    case 'generic':
      return node.layer.apply(xs.length === 1 ? x : xs, { ...node.kwargs, training: false }) as tf.Tensor;
  }
}
