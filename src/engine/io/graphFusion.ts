/**
 * Fused ops of a graph model made runnable on every backend.
 *
 * Current converters (tfjs-converter 4.x on graphs from Keras 3 / TF 2.19)
 * fuse a convolution or a matrix product with the bias add after it into
 * FusedConv2D, FusedDepthwiseConv2dNative or _FusedMatMul. Keras 3 adds a
 * convolution's bias reshaped to [1, 1, 1, C], so the fused bias has rank 4;
 * the cpu backend broadcasts it, the wasm backend refuses anything but a
 * rank-1 bias of exactly C values ("FusedConv2D only supports rank-1 bias but
 * got rank 4"), and neither runs a fused activation it does not know (tanh).
 *
 * So, before tfjs reads the graph:
 * - a bias that is a constant of C values with only 1s before its last axis,
 *   read only by fused ops, is reshaped to [C] (same bytes, same broadcast);
 * - any other fused op whose bias or activation a backend may refuse is split
 *   back into its parts (Conv2D / DepthwiseConv2dNative / MatMul, AddV2, the
 *   activation), which every backend runs and which compute the same values.
 *
 * The node keeps its name (now on its last part), so outputs and inspection
 * names do not change.
 */
import type * as tfTypes from '@tensorflow/tfjs';

type Json = Record<string, unknown>;
interface GraphNode {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, Json>;
}

const FUSED: Record<string, string> = {
  FusedConv2D: 'Conv2D',
  _FusedConv2D: 'Conv2D',
  FusedDepthwiseConv2dNative: 'DepthwiseConv2dNative',
  _FusedMatMul: 'MatMul',
};

/** Activations the wasm backend fuses (FusableActivation), as fused_ops spells them. */
const WASM_ACTIVATIONS = new Set(['relu', 'relu6', 'elu', 'sigmoid', 'leakyrelu', 'prelu']);
/** The graph op for each fused activation. */
const ACTIVATION_OPS: Record<string, string> = { relu: 'Relu', relu6: 'Relu6', elu: 'Elu', sigmoid: 'Sigmoid', tanh: 'Tanh', leakyrelu: 'LeakyRelu', prelu: 'Prelu' };

export interface FusionReport {
  /** Biases reshaped to rank 1, by weight name. */
  reshaped: string[];
  /** Fused nodes split into their parts, by node name. */
  split: string[];
}

const decode = (s: unknown): string => (typeof s === 'string' ? Buffer.from(s, 'base64').toString('latin1') : '');
const nodeName = (input: string): string => input.replace(/^\^/, '').split(':')[0];

function fusedOps(node: GraphNode): string[] {
  const list = (node.attr?.['fused_ops'] as { list?: { s?: unknown[] } } | undefined)?.list?.s;
  return Array.isArray(list) ? list.map(decode) : [];
}

function constShape(node: GraphNode | undefined, specs: Map<string, tfTypes.io.WeightsManifestEntry>): number[] | undefined {
  if (!node || node.op !== 'Const') return undefined;
  const spec = specs.get(node.name);
  if (spec) return spec.shape;
  const dims = ((node.attr?.['value'] as { tensor?: { tensorShape?: { dim?: { size?: string | number }[] } } } | undefined)?.tensor?.tensorShape?.dim ?? []) as { size?: string | number }[];
  return dims.map((d) => Number(d.size ?? 0));
}

/** Output channels of a fused op, from its constant filter (undefined when the filter is not a constant). */
function outChannels(node: GraphNode, filter: number[] | undefined): number | undefined {
  if (!filter) return undefined;
  const core = FUSED[node.op];
  if (core === 'Conv2D' && filter.length === 4) return filter[3];
  if (core === 'DepthwiseConv2dNative' && filter.length === 4) return filter[2] * filter[3];
  if (core === 'MatMul' && filter.length === 2) return (node.attr?.['transpose_b'] as { b?: boolean } | undefined)?.b ? filter[0] : filter[1];
  return undefined;
}

/**
 * The topology and weight specs with every fused op made runnable on every
 * backend (see the file comment). Returns the inputs unchanged when there is
 * nothing to do; never changes the weight bytes.
 */
export function normalizeFusedOps(artifacts: tfTypes.io.ModelArtifacts): { artifacts: tfTypes.io.ModelArtifacts; report: FusionReport } {
  const report: FusionReport = { reshaped: [], split: [] };
  const topology = artifacts.modelTopology as Json | undefined;
  const nodes = Array.isArray(topology?.['node']) ? (topology['node'] as GraphNode[]) : undefined;
  if (!topology || !nodes || !nodes.some((n) => typeof n?.op === 'string' && FUSED[n.op] && Object.prototype.hasOwnProperty.call(FUSED, n.op))) return { artifacts, report };

  const specs = new Map((artifacts.weightSpecs ?? []).map((s) => [s.name, s]));
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const readers = new Map<string, GraphNode[]>();
  for (const n of nodes) for (const i of n.input ?? []) readers.set(nodeName(i), [...(readers.get(nodeName(i)) ?? []), n]);

  const newShapes = new Map<string, number[]>();
  const out: GraphNode[] = [];
  for (const node of nodes) {
    if (!Object.prototype.hasOwnProperty.call(FUSED, node.op)) {
      out.push(node);
      continue;
    }
    const ops = fusedOps(node).map((s) => s.toLowerCase());
    const hasBias = ops[0] === 'biasadd';
    const activation = ops[hasBias ? 1 : 0];
    const data = (node.input ?? []).filter((i) => !i.startsWith('^'));
    if (!hasBias && ops.length > 0 && !ACTIVATION_OPS[ops[0]]) {
      out.push(node); // FusedBatchNorm and the like: tfjs says what it cannot do.
      continue;
    }
    const biasNode = hasBias ? byName.get(nodeName(data[2] ?? '')) : undefined;
    const biasShape = constShape(biasNode, specs);
    const channels = outChannels(node, constShape(byName.get(nodeName(data[1] ?? '')), specs));
    const biasSize = biasShape?.reduce((a, b) => a * b, 1);
    const activationOk = activation === undefined || WASM_ACTIVATIONS.has(activation);
    const biasOk = !hasBias || (biasShape !== undefined && biasShape.length === 1 && biasSize === channels);
    if (activationOk && biasOk) {
      out.push(node);
      continue;
    }
    const reshapable =
      biasNode !== undefined &&
      biasShape !== undefined &&
      channels !== undefined &&
      biasSize === channels &&
      biasShape.slice(0, -1).every((d) => d === 1) &&
      (readers.get(biasNode.name) ?? []).every((r) => Object.prototype.hasOwnProperty.call(FUSED, r.op));
    if (activationOk && reshapable) {
      newShapes.set(biasNode.name, [channels]);
      out.push(node);
      continue;
    }
    if (activation !== undefined && !ACTIVATION_OPS[activation]) {
      out.push(node);
      continue;
    }
    out.push(...splitFused(node, data, hasBias, activation));
    report.split.push(node.name);
  }

  if (newShapes.size === 0 && report.split.length === 0) return { artifacts, report };
  const weightSpecs = (artifacts.weightSpecs ?? []).map((s) => (newShapes.has(s.name) ? { ...s, shape: newShapes.get(s.name)! } : s));
  const reshapedNodes = out.map((n) => (newShapes.has(n.name) ? withConstShape(n, newShapes.get(n.name)!) : n));
  report.reshaped.push(...newShapes.keys());
  return { artifacts: { ...artifacts, modelTopology: { ...topology, node: reshapedNodes }, weightSpecs }, report };
}

function withConstShape(node: GraphNode, shape: number[]): GraphNode {
  const value = node.attr?.['value'] as { tensor?: Json } | undefined;
  if (!value?.tensor) return node;
  return { ...node, attr: { ...node.attr, value: { ...value, tensor: { ...value.tensor, tensorShape: { dim: shape.map((d) => ({ size: String(d) })) } } } } };
}

/** A fused node as its parts: the core op, AddV2 with the bias, the activation (or Identity) under the node's own name. */
function splitFused(node: GraphNode, data: string[], hasBias: boolean, activation: string | undefined): GraphNode[] {
  const control = (node.input ?? []).filter((i) => i.startsWith('^'));
  const attr = { ...(node.attr ?? {}) };
  for (const k of ['fused_ops', 'num_args', 'epsilon', 'leakyrelu_alpha', 'filter_format']) delete attr[k];
  const parts: GraphNode[] = [];
  const core = `${node.name}/layerlens_${FUSED[node.op]}`;
  parts.push({ name: core, op: FUSED[node.op], input: [data[0], data[1], ...control], attr });
  let last = core;
  if (hasBias) {
    const biased = `${node.name}/layerlens_BiasAdd`;
    parts.push({ name: biased, op: 'AddV2', input: [last, data[2]], attr: { T: attr['T'] ?? { type: 'DT_FLOAT' } } });
    last = biased;
  }
  const extra = data[hasBias ? 3 : 2];
  const t = { T: attr['T'] ?? { type: 'DT_FLOAT' } };
  if (activation === undefined) parts.push({ name: node.name, op: 'Identity', input: [last], attr: t });
  else if (activation === 'prelu') parts.push({ name: node.name, op: 'Prelu', input: [last, extra], attr: t });
  else if (activation === 'leakyrelu') parts.push({ name: node.name, op: 'LeakyRelu', input: [last], attr: { ...t, alpha: node.attr?.['leakyrelu_alpha'] ?? { f: 0.2 } } });
  else parts.push({ name: node.name, op: ACTIVATION_OPS[activation], input: [last], attr: t });
  return parts;
}
