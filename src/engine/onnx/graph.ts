/**
 * The ONNX graph as the inspector sees it: which values are constant (weights
 * and what is computed from weights alone, such as PyTorch's Identity copies
 * of shared weights), which nodes compute activations, each node's parameter
 * count, stable unique node paths, and edited copies of the model: the same
 * graph with more outputs (intermediate values), or pruned to what some
 * values need (a backbone up to a cut).
 *
 * Edits never touch the decoded model: they copy the model and graph objects
 * and share the (read-only) tensors.
 */
import { int, type OnnxGraph, type OnnxModelProto, type OnnxNode, type OnnxTensor, type OnnxValueInfo } from './proto';

export interface GraphNode {
  /** Unique path: the node's name, or `<OpType>_<index>` when it has none; duplicates get "#2", "#3"… */
  path: string;
  node: OnnxNode;
  index: number;
  /** op type, prefixed with its domain when not the default one ("com.microsoft::FusedConv"). */
  op: string;
  /** True when the node's outputs depend on the model's inputs (an activation), false for constant folding. */
  dynamic: boolean;
  /** Values of its constant inputs (weights). */
  params: number;
  /** Names of its constant inputs. */
  weights: string[];
}

export function tensorSize(t: OnnxTensor): number {
  return (t.dims ?? []).reduce<number>((a, d) => a * int(d), 1);
}

/** Graph inputs that are not initializers: what a caller feeds. */
export function realInputs(g: OnnxGraph): OnnxValueInfo[] {
  const inits = new Set((g.initializer ?? []).map((t) => t.name));
  return (g.input ?? []).filter((i) => !inits.has(i.name));
}

/** The nodes of a graph in order, with paths, constant analysis and parameter counts. */
export function analyseGraph(g: OnnxGraph): { nodes: GraphNode[]; constants: Set<string>; constSize: Map<string, number> } {
  const constSize = new Map<string, number>();
  for (const t of g.initializer ?? []) if (t.name) constSize.set(t.name, tensorSize(t));
  const inputs = new Set(realInputs(g).map((i) => i.name));
  const constants = new Set<string>(constSize.keys());
  const taken = new Map<string, number>();
  const nodes: GraphNode[] = [];
  (g.node ?? []).forEach((node, index) => {
    const ins = (node.input ?? []).filter((i) => i !== '');
    const op = node.domain && node.domain !== 'ai.onnx' ? `${node.domain}::${node.opType ?? '?'}` : (node.opType ?? '?');
    // A Constant, or a node fed by constants only, computes a constant (Identity of a shared weight, Shape chains of a fixed size).
    const dynamic = node.opType === 'Constant' ? false : ins.length === 0 ? true : ins.some((i) => !constants.has(i) || inputs.has(i));
    const weights = ins.filter((i) => constants.has(i));
    const params = weights.reduce((n, w) => n + (constSize.get(w) ?? 0), 0);
    if (!dynamic) {
      let size = 0;
      const value = node.attribute?.find((a) => a.name === 'value')?.t;
      if (node.opType === 'Constant' && value) size = tensorSize(value);
      else if (node.opType === 'Identity' && ins[0]) size = constSize.get(ins[0]) ?? 0;
      for (const o of node.output ?? []) {
        if (!o) continue;
        constants.add(o);
        constSize.set(o, size);
      }
    }
    const base = node.name || `${node.opType ?? 'Node'}_${index}`;
    const seen = taken.get(base) ?? 0;
    taken.set(base, seen + 1);
    nodes.push({ path: seen === 0 ? base : `${base}#${seen + 1}`, node, index, op, dynamic, params, weights });
  });
  return { nodes, constants, constSize };
}

/** Indices of the nodes that the values `targets` depend on, in graph order. */
export function nodesFor(g: OnnxGraph, targets: readonly string[]): number[] {
  const producer = new Map<string, number>();
  (g.node ?? []).forEach((n, i) => (n.output ?? []).forEach((o) => o && producer.set(o, i)));
  const need = new Set<number>();
  const stack = [...targets];
  const seen = new Set<string>();
  while (stack.length > 0) {
    const v = stack.pop()!;
    if (seen.has(v)) continue;
    seen.add(v);
    const p = producer.get(v);
    if (p === undefined || need.has(p)) continue;
    need.add(p);
    const node = g.node![p];
    for (const i of node.input ?? []) if (i) stack.push(i);
    // Values a subgraph reads from the outer scope are inputs of its node too.
    for (const name of outerNames(node)) stack.push(name);
  }
  return [...need].sort((a, b) => a - b);
}

/** Names an If/Loop/Scan body reads from the enclosing graph. */
function outerNames(node: OnnxNode): string[] {
  const out: string[] = [];
  const visit = (g: OnnxGraph, depth: number) => {
    if (depth > 32) return;
    const local = new Set<string>([...(g.input ?? []).map((i) => i.name ?? ''), ...(g.initializer ?? []).map((t) => t.name ?? '')]);
    for (const n of g.node ?? []) for (const o of n.output ?? []) local.add(o);
    for (const n of g.node ?? []) {
      for (const i of n.input ?? []) if (i && !local.has(i)) out.push(i);
      for (const a of n.attribute ?? []) {
        if (a.g) visit(a.g, depth + 1);
        for (const sg of a.graphs ?? []) visit(sg, depth + 1);
      }
    }
  };
  for (const a of node.attribute ?? []) {
    if (a.g) visit(a.g, 0);
    for (const sg of a.graphs ?? []) visit(sg, 0);
  }
  return out;
}

/**
 * A copy of `model` whose graph computes `outputs` (value names) and only
 * what they need: nodes, initializers and inputs pruned. Value info is kept
 * for the remaining values; the outputs carry their known types, or none
 * (ONNX Runtime infers them).
 */
export function modelWithOutputs(model: OnnxModelProto, outputs: readonly string[], options: { prune?: boolean } = {}): OnnxModelProto {
  const g = model.graph!;
  const prune = options.prune ?? true;
  const keep = prune ? nodesFor(g, outputs) : (g.node ?? []).map((_, i) => i);
  const nodes = keep.map((i) => g.node![i]);
  const used = new Set<string>(outputs);
  for (const n of nodes) {
    for (const i of n.input ?? []) used.add(i);
    for (const name of outerNames(n)) used.add(name);
  }
  const known = new Map<string, OnnxValueInfo>();
  for (const v of [...(g.valueInfo ?? []), ...(g.output ?? []), ...(g.input ?? [])]) if (v.name) known.set(v.name, v);
  const graph: OnnxGraph = {
    ...g,
    node: nodes,
    initializer: prune ? (g.initializer ?? []).filter((t) => used.has(t.name ?? '')) : g.initializer,
    sparseInitializer: prune ? (g.sparseInitializer ?? []).filter((t) => used.has(t.values?.name ?? '')) : g.sparseInitializer,
    input: prune ? (g.input ?? []).filter((i) => used.has(i.name ?? '') || realInputs(g).some((r) => r.name === i.name)) : g.input,
    output: outputs.map((name) => known.get(name) ?? { name }),
    valueInfo: (g.valueInfo ?? []).filter((v) => used.has(v.name ?? '')),
  };
  return { ...model, graph };
}

/**
 * Where a classifier's features end: the data input of the last Gemm or
 * MatMul on the chain from the first output back through Softmax, Add (a
 * MatMul's bias), Dropout, Identity, Flatten and Reshape. Undefined when the
 * model does not end in such a classifier.
 */
export function classifierInput(g: OnnxGraph, constants: Set<string>): { value: string; classifier: string } | undefined {
  const producer = new Map<string, OnnxNode>();
  for (const n of g.node ?? []) for (const o of n.output ?? []) if (o) producer.set(o, n);
  let v = g.output?.[0]?.name;
  for (let steps = 0; v && steps < 16; steps++) {
    const n = producer.get(v);
    if (!n) return undefined;
    const dyn = (n.input ?? []).filter((i) => i && !constants.has(i));
    if (n.opType === 'Gemm' || n.opType === 'MatMul') {
      return dyn.length === 1 ? { value: dyn[0], classifier: n.name || n.opType } : undefined;
    }
    if (!['Softmax', 'LogSoftmax', 'Add', 'Dropout', 'Identity', 'Flatten', 'Reshape', 'Sigmoid'].includes(n.opType ?? '') || dyn.length !== 1) return undefined;
    v = dyn[0];
  }
  return undefined;
}
