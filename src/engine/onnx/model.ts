/**
 * A loaded ONNX model: the decoded graph, its layer table (one row per node),
 * and ONNX Runtime sessions made from edited copies of it:
 *
 * - `plain`: the model as it is (predictions; every optimisation applies);
 * - `probe`: the same graph with every activation node's first output added
 *   as a graph output, so one run yields any node's output. Which outputs a
 *   run fetches is chosen per run, so memory holds only what a view needs;
 * - `cut(values)`: the graph pruned to what some values need (embeddings and
 *   a fine-tune's backbone), cached per value set.
 *
 * Inputs are images: the model's first input, NCHW (PyTorch's layout) or
 * NHWC (tf2onnx's), float32. Callers hand over NHWC batches in [n, h, w, c]
 * order, as the rest of the engine makes them; this class transposes.
 */
import * as path from 'node:path';
import { EngineError } from '../errors';
import { clipText as clip, rel } from '../io/files';
import type { OnnxFiles } from '../io/onnx';
import type { LayerRow, Shape } from '../../protocol/model';
import { analyseGraph, classifierInput, modelWithOutputs, realInputs, type GraphNode } from './graph';
import { dataTypeName, encodeModel, int, valueShape, type OnnxAttribute, type OnnxGraph, type OnnxNode } from './proto';
import { createSession, runtime, type OrtSession, type OrtTensor } from './runtime';

export type Layout = 'NCHW' | 'NHWC';

/** One fetched value: float32 data and its dims (batch first). */
export interface NodeValue {
  data: Float32Array;
  dims: number[];
}

/** Longest side used for models whose input size is not fixed. */
const FREE_SIZE = 224;
/** Outputs fetched per probe run when their sizes are not known yet. */
const PROBE_GROUP = 128;

function attrText(a: OnnxAttribute): string {
  const short = (xs: unknown[]) => (xs.length > 16 ? `[${xs.slice(0, 16).join(', ')}, …]` : `[${xs.join(', ')}]`);
  switch (a.type) {
    case 1: return String(Number(a.f?.toPrecision(6)));
    case 2: return String(int(a.i));
    case 3: return JSON.stringify(clip(Buffer.from(a.s ?? new Uint8Array()).toString('utf8'), 60));
    case 4: return `tensor [${(a.t?.dims ?? []).map((d) => int(d)).join(', ')}] ${dataTypeName(a.t?.dataType)}`;
    case 5: return `graph (${a.g?.node?.length ?? 0} nodes)`;
    case 6: return short((a.floats ?? []).map((f) => Number(f.toPrecision(6))));
    case 7: return short((a.ints ?? []).map((i) => int(i)));
    case 8: return short((a.strings ?? []).map((s) => JSON.stringify(clip(Buffer.from(s).toString('utf8'), 30))));
    case 10: return `${a.graphs?.length ?? 0} graphs`;
    default: return a.refAttrName ? `@${a.refAttrName}` : '?';
  }
}

/** Node attributes as "name=value" lines for the tooltip. */
export function attributesOf(node: OnnxNode): string[] {
  return (node.attribute ?? []).map((a) => `${clip(a.name ?? '?', 40)}=${attrText(a)}`);
}

function subgraphsOf(node: OnnxNode): { name: string; graph: OnnxGraph }[] {
  const out: { name: string; graph: OnnxGraph }[] = [];
  for (const a of node.attribute ?? []) {
    if (a.g) out.push({ name: a.name ?? 'graph', graph: a.g });
    (a.graphs ?? []).forEach((g, i) => out.push({ name: `${a.name ?? 'graphs'}[${i}]`, graph: g }));
  }
  return out;
}

export class OnnxModel {
  readonly nodes: GraphNode[];
  readonly byPath = new Map<string, GraphNode>();
  readonly constants: Set<string>;
  readonly inputName: string;
  /** The model's input dims as declared (null where not fixed). */
  readonly inputDims: (number | null)[];
  readonly layout: Layout;
  readonly outputName: string;
  readonly opset: number;
  readonly producer: string;
  readonly metadataProps: Record<string, string>;
  /** Dims of each activation value once a run has seen them (batch 1). */
  readonly shapes = new Map<string, number[]>();
  /** Element types of each activation value once a run has seen them. */
  readonly dtypes = new Map<string, string>();
  private probeSession?: Promise<OrtSession>;
  private readonly cuts = new Map<string, Promise<OrtSession>>();
  readonly shown: string;

  private constructor(
    readonly files: OnnxFiles,
    readonly plain: OrtSession,
  ) {
    const g = files.model.graph!;
    this.shown = rel(files.files.modelJsonPath);
    const analysis = analyseGraph(g);
    this.nodes = analysis.nodes;
    this.constants = analysis.constants;
    for (const n of this.nodes) this.byPath.set(n.path, n);
    const inputs = realInputs(g);
    if (inputs.length !== 1) {
      throw new EngineError('bad-input', `${this.shown} takes ${inputs.length} inputs (${inputs.map((i) => clip(i.name ?? '?', 30)).join(', ')}); Layer Lens inspects models with one image input.`);
    }
    const input = inputs[0];
    this.inputName = input.name ?? '';
    const elem = input.type?.tensorType?.elemType;
    if (elem !== 1) {
      throw new EngineError('bad-input', `${this.shown} takes ${dataTypeName(elem)} input "${clip(this.inputName, 40)}"; Layer Lens feeds float32 images (a quantised model with integer input is not supported yet).`);
    }
    const dims = valueShape(input);
    if (!dims || dims.length !== 4) {
      throw new EngineError('bad-input', `${this.shown} takes input "${clip(this.inputName, 40)}" of shape [${(dims ?? []).map((d) => d ?? '?').join(', ')}], not an image batch [n, c, h, w] or [n, h, w, c]; Layer Lens inspects image models.`);
    }
    this.inputDims = dims.map((d) => (typeof d === 'number' ? d : null));
    const [, d1, , d3] = this.inputDims;
    this.layout = (d3 === 1 || d3 === 3) && d1 !== 1 && d1 !== 3 ? 'NHWC' : 'NCHW';
    const channels = this.layout === 'NCHW' ? (d1 ?? 3) : (d3 ?? 3);
    if (channels !== 1 && channels !== 3) {
      throw new EngineError('bad-input', `${this.shown} expects ${channels} input channels; Layer Lens feeds RGB (3) or greyscale (1) images.`);
    }
    this.outputName = g.output?.[0]?.name ?? '';
    this.opset = int(files.model.opsetImport?.find((o) => !o.domain || o.domain === 'ai.onnx')?.version);
    this.producer = [files.model.producerName, files.model.producerVersion].filter(Boolean).join(' ');
    this.metadataProps = Object.fromEntries((files.model.metadataProps ?? []).filter((e) => e.key).map((e) => [e.key!, e.value ?? '']));
    for (const v of [...(g.valueInfo ?? []), ...(g.output ?? [])]) {
      const s = valueShape(v);
      if (v.name && s && s.every((d) => typeof d === 'number')) this.shapes.set(v.name, s as number[]);
    }
  }

  /** Loads sessions for decoded, checked files; probes every node's shape once when the input size is fixed. */
  static async create(files: OnnxFiles): Promise<OnnxModel> {
    const shown = rel(files.files.modelJsonPath);
    const bytes = files.inlined ? encodeModel(files.model) : files.bytes;
    const plain = await createSession(bytes, shown);
    const m = new OnnxModel(files, plain);
    if (m.fixedSize()) {
      try {
        await m.runValues(m.zeros(), m.activationValues(), { keep: false });
      } catch (e) {
        await plain.release();
        throw e;
      }
    }
    return m;
  }

  /** Height, width and channels of the input images. */
  geometry(): { height: number | null; width: number | null; channels: number } {
    const [, a, b, c] = this.inputDims;
    return this.layout === 'NCHW' ? { channels: a ?? 3, height: b, width: c } : { height: a, width: b, channels: c ?? 3 };
  }

  fixedSize(): boolean {
    const g = this.geometry();
    return g.height !== null && g.width !== null;
  }

  /** The input shape as the rest of the engine describes images: [n, h, w, c]. */
  imageShape(): Shape {
    const g = this.geometry();
    return [this.inputDims[0], g.height, g.width, g.channels];
  }

  /** Whether the batch dimension may be more than 1. */
  batched(): boolean {
    return this.inputDims[0] === null;
  }

  private zeros(): NodeValue {
    const g = this.geometry();
    const h = g.height ?? FREE_SIZE;
    const w = g.width ?? FREE_SIZE;
    return { data: new Float32Array(h * w * g.channels), dims: [1, h, w, g.channels] };
  }

  /** First outputs of the activation nodes (those that depend on the input), in graph order. */
  activationValues(): string[] {
    const out: string[] = [];
    const seen = new Set<string>();
    for (const n of this.nodes) {
      const o = n.node.output?.[0];
      if (n.dynamic && o && !seen.has(o)) {
        seen.add(o);
        out.push(o);
      }
    }
    return out;
  }

  /** The node's first output value name. */
  valueOf(nodePath: string): string {
    const n = this.byPath.get(nodePath);
    const o = n?.node.output?.[0];
    if (!n || !o) {
      const near = this.nodes.filter((x) => x.dynamic).slice(-4).map((x) => x.path).join(', ');
      throw new EngineError('bad-input', `"${clip(nodePath, 80)}" is not a node of ${this.shown}; pick one from the layer table (e.g. ${near}).`);
    }
    if (!n.dynamic) throw new EngineError('bad-input', `node "${clip(nodePath, 80)}" of ${this.shown} computes a constant (from weights alone), not an activation; pick a node that depends on the input.`);
    return o;
  }

  /** The node path whose first output is `value`. */
  pathOfValue(value: string): string | undefined {
    return this.nodes.find((n) => n.node.output?.[0] === value)?.path;
  }

  private probe(): Promise<OrtSession> {
    this.probeSession ??= createSession(encodeModel(modelWithOutputs(this.files.model, [this.outputName, ...this.activationValues()], { prune: false })), this.shown);
    return this.probeSession;
  }

  /** A session computing `values` only (the graph pruned to what they need). */
  cutSession(values: readonly string[]): Promise<OrtSession> {
    const key = values.join('\u0000');
    let s = this.cuts.get(key);
    if (!s) {
      s = createSession(encodeModel(modelWithOutputs(this.files.model, values)), this.shown);
      this.cuts.set(key, s);
    }
    return s;
  }

  /** NHWC batch → the model's input tensor. */
  toInput(x: NodeValue): OrtTensor {
    const ort = runtime();
    const [n, h, w, c] = x.dims;
    if (this.layout === 'NHWC') return new ort.Tensor('float32', x.data, [n, h, w, c]);
    const out = new Float32Array(x.data.length);
    const hw = h * w;
    for (let b = 0; b < n; b++) {
      const src = b * hw * c;
      for (let p = 0; p < hw; p++) for (let k = 0; k < c; k++) out[src + k * hw + p] = x.data[src + p * c + k];
    }
    return new ort.Tensor('float32', out, [n, c, h, w]);
  }

  private record(name: string, t: OrtTensor): void {
    this.dtypes.set(name, t.type);
    this.shapes.set(name, [1, ...t.dims.slice(1).map(Number)]);
  }

  /**
   * Runs the probe session on `input` (NHWC) fetching `values`, in groups of
   * at most `budgetBytes` of output (sizes from earlier runs; 128 values when
   * unknown). With keep, the float outputs are returned; `onGroup` sees each
   * group before it is dropped.
   */
  async runValues(
    input: NodeValue,
    values: readonly string[],
    o: { keep: boolean; budgetBytes?: number; onGroup?: (got: Map<string, NodeValue>) => void },
  ): Promise<Map<string, NodeValue>> {
    const session = await this.probe();
    const feed = { [this.inputName]: this.toInput(input) };
    const budget = o.budgetBytes ?? Infinity;
    const kept = new Map<string, NodeValue>();
    let k = 0;
    while (k < values.length) {
      const group: string[] = [];
      let bytes = 0;
      while (k < values.length) {
        const s = this.shapes.get(values[k]);
        const b = s ? s.reduce((a, d) => a * d, 1) * 4 * input.dims[0] : undefined;
        if (group.length > 0 && (b === undefined ? group.length >= PROBE_GROUP : bytes + b > budget)) break;
        bytes += b ?? 0;
        group.push(values[k++]);
      }
      let out: Record<string, OrtTensor>;
      try {
        out = await session.run(feed, group);
      } catch (e) {
        throw this.runFailed(e, input);
      }
      const got = new Map<string, NodeValue>();
      for (const name of group) {
        const t = out[name];
        if (!t) continue;
        this.record(name, t);
        if (t.type === 'float32') got.set(name, { data: t.data as Float32Array, dims: t.dims.map(Number) });
      }
      o.onGroup?.(got);
      if (o.keep) for (const [name, v] of got) kept.set(name, v);
    }
    return kept;
  }

  /** Runtime's refusal to run the model on an input of its own declared shape: the graph does not fit together. */
  private runFailed(e: unknown, input: NodeValue): EngineError {
    const why = clip((e instanceof Error ? e.message : String(e)).replace(/\s+/g, ' ').replace(/^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*/, ''), 200);
    const [n, h, w, c] = input.dims;
    return new EngineError('not-a-model', `${this.shown}: ONNX Runtime cannot run the model on a ${n}x${c}x${h}x${w} image batch, the input it declares (${why}); the graph or its input shape is damaged. Re-export the model.`);
  }

  /** The model's output for an NHWC batch (plain session: every optimisation). */
  async predict(input: NodeValue): Promise<NodeValue> {
    return (await this.runBatched(this.plain, input, [this.outputName]))[0];
  }

  /**
   * `values` for an NHWC batch, from a session pruned to them; one run per
   * image when the model's batch size is fixed at 1.
   */
  async values(input: NodeValue, values: readonly string[]): Promise<NodeValue[]> {
    return this.runBatched(await this.cutSession(values), input, values);
  }

  private async runBatched(session: OrtSession, input: NodeValue, names: readonly string[]): Promise<NodeValue[]> {
    const [n, h, w, c] = input.dims;
    const step = this.batched() ? n : Math.max(1, this.inputDims[0] ?? 1);
    const parts: NodeValue[][] = [];
    for (let b = 0; b < n; b += step) {
      const m = Math.min(step, n - b);
      const slice: NodeValue = { data: input.data.subarray(b * h * w * c, (b + m) * h * w * c), dims: [m, h, w, c] };
      let out: Record<string, OrtTensor>;
      try {
        out = await session.run({ [this.inputName]: this.toInput(slice) }, names as string[]);
      } catch (e) {
        throw this.runFailed(e, slice);
      }
      parts.push(
        names.map((name) => {
          const t = out[name];
          if (!t || t.type !== 'float32') throw new EngineError('bad-input', `${this.shown}: value "${clip(name, 60)}" is ${t ? t.type : 'missing'}, not float32; pick a node with a float output.`);
          this.record(name, t);
          return { data: t.data as Float32Array, dims: t.dims.map(Number) };
        }),
      );
    }
    if (parts.length === 1) return parts[0];
    return names.map((_, i) => {
      const dims = [n, ...parts[0][i].dims.slice(1)];
      const data = new Float32Array(dims.reduce((a, d) => a * d, 1));
      let off = 0;
      for (const p of parts) {
        data.set(p[i].data, off);
        off += p[i].data.length;
      }
      return { data, dims };
    });
  }

  /** The default cut for embeddings and a new head: the classifier's input, else the last activation before the output. */
  featureValue(): string {
    const c = classifierInput(this.files.model.graph!, this.constants);
    if (c) return c.value;
    const acts = this.activationValues().filter((v) => v !== this.outputName);
    if (acts.length === 0) throw new EngineError('bad-input', `${this.shown} has no activation node before its output to take features from.`);
    return acts[acts.length - 1];
  }

  /** The layer table: one row per node; subgraphs and local functions as nested rows. */
  rows(): LayerRow[] {
    const rows: LayerRow[] = [];
    const functions = new Map((this.files.model.functions ?? []).map((f) => [`${f.domain ?? ''}::${f.name ?? ''}`, f]));
    const shapeOf = (value: string | undefined): Shape => {
      const s = value ? this.shapes.get(value) : undefined;
      return s ? [null, ...s.slice(1)] : [];
    };
    const nested = (nodes: OnnxNode[], parent: string, depth: number) => {
      if (depth > 8) return;
      const taken = new Set<string>();
      nodes.forEach((node, i) => {
        let name = node.name || `${node.opType ?? 'Node'}_${i}`;
        for (let k = 2; taken.has(name); k++) name = `${node.name || node.opType}#${k}`;
        taken.add(name);
        const p = `${parent}/${name}`;
        const inner = this.innerOf(node, functions);
        rows.push({ path: p, name, className: node.opType ?? '?', outputShape: [], params: 0, trainableParams: 0, freezableParams: 0, trainable: false, depth, isContainer: inner.length > 0, parent, attributes: attributesOf(node), inspectable: false });
        for (const sub of inner) nested(sub, p, depth + 1);
      });
    };
    for (const n of this.nodes) {
      if (!n.dynamic) continue;
      const inner = this.innerOf(n.node, functions);
      rows.push({
        path: n.path,
        name: n.node.name || n.path,
        className: n.op,
        outputShape: shapeOf(n.node.output?.[0]),
        params: n.params,
        trainableParams: 0,
        freezableParams: 0,
        trainable: false,
        depth: 0,
        isContainer: inner.length > 0,
        attributes: attributesOf(n.node),
        inspectable: true,
      });
      for (const sub of inner) nested(sub, n.path, 1);
    }
    return rows;
  }

  private innerOf(node: OnnxNode, functions: Map<string, { node?: OnnxNode[] }>): OnnxNode[][] {
    const subs = subgraphsOf(node).map((s) => s.graph.node ?? []);
    const f = functions.get(`${node.domain ?? ''}::${node.opType ?? ''}`);
    if (f) subs.push(f.node ?? []);
    return subs;
  }

  /** Every graph output with its shape (batch free), in the model's order. */
  outputs(): { name: string; shape: Shape }[] {
    return (this.files.model.graph?.output ?? []).map((o) => {
      const name = o.name ?? '';
      const seen = this.shapes.get(name);
      const declared = valueShape(o)?.map((d) => (typeof d === 'number' ? d : null));
      return { name, shape: seen ? [null, ...seen.slice(1)] : [null, ...(declared?.slice(1) ?? [])] };
    });
  }

  /** Parameters: the values of every initializer. */
  totalParams(): number {
    return (this.files.model.graph?.initializer ?? []).reduce((n, t) => n + (t.dims ?? []).reduce<number>((a, d) => a * int(d), 1), 0);
  }

  /** Labels from the model's metadata_props: "labels" (JSON array or one per line) or "names" (ultralytics' {0: 'a', …}). */
  metadataLabels(): string[] | undefined {
    const labels = this.metadataProps['labels'] ?? this.metadataProps['classes'];
    if (labels !== undefined) {
      try {
        const v = JSON.parse(labels) as unknown;
        if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
      } catch {
        // One per line, or comma-separated.
      }
      const parts = labels.split(labels.includes('\n') ? /\r?\n/ : ',').map((s) => s.trim()).filter((s) => s.length > 0);
      return parts.length > 0 ? parts : undefined;
    }
    const names = this.metadataProps['names'];
    if (names !== undefined) {
      const found = [...names.matchAll(/(\d+)\s*:\s*['"]([^'"]*)['"]/g)];
      if (found.length > 0) {
        const out: string[] = [];
        for (const [, i, label] of found) out[Number(i)] = label;
        return Array.from(out, (l, i) => l ?? `class ${i}`);
      }
    }
    return undefined;
  }

  async release(): Promise<void> {
    const all = [Promise.resolve(this.plain), ...(this.probeSession ? [this.probeSession] : []), ...this.cuts.values()];
    this.cuts.clear();
    this.probeSession = undefined;
    for (const p of all) {
      try {
        await (await p).release();
      } catch {
        // A session that failed to build, or was released already.
      }
    }
  }

  get name(): string {
    return path.basename(this.files.files.modelJsonPath).replace(/\.onnx$/i, '');
  }
}
