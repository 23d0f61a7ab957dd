/**
 * Plain data describing a loaded model, shared by the engine, the extension
 * host, the webview and the CLI. No tfjs, no vscode, no DOM.
 */
export type Shape = (number | null)[];

export interface LayerRow {
  /** Unique path through nested models, e.g. "sequential_5/model2/Conv1". */
  path: string;
  name: string;
  className: string;
  /** One shape, or several for multi-output layers. */
  outputShape: Shape | Shape[];
  params: number;
  trainableParams: number;
  /**
   * Params that training updates unless the layer is frozen, whatever its
   * trainable flag says now (BatchNormalization's moving statistics are not
   * among them). Lets the host count "N of M trainable" for any freeze plan.
   */
  freezableParams?: number;
  trainable: boolean;
  /** 0 for top-level layers, 1 inside a nested model, and so on. */
  depth: number;
  /** True for a nested model (its layers follow it with depth + 1). */
  isContainer: boolean;
  /** Path of the enclosing nested model, absent at top level. */
  parent?: string;
  /** Set on the layer (or graph node) that makes the model's output number `output` (0-based). */
  output?: number;
  /** ONNX nodes: attributes as "name=value" lines (the tooltip). */
  attributes?: string[];
  /** False for rows whose output cannot be shown (nodes inside an ONNX subgraph or function); absent means true. */
  inspectable?: boolean;
}

/** The input preprocessings, listed once: everything else (schemas, menus, the CLI) derives from this. */
export const normalizations = ['zeroOne', 'minusOneOne', 'imagenet', 'raw'] as const;
export type Normalization = (typeof normalizations)[number];

/** How the UI names each preprocessing. */
export const normalizationLabels: Record<Normalization, string> = {
  zeroOne: '[0, 1]',
  minusOneOne: '[-1, 1]',
  imagenet: 'ImageNet mean/std',
  raw: 'raw 0-255',
};

export function isNormalization(v: unknown): v is Normalization {
  return typeof v === 'string' && (normalizations as readonly string[]).includes(v);
}

/** One output of a model: the layer (or graph node) that makes it, and its shape. */
export interface ModelOutput {
  name: string;
  shape: Shape;
}

/** A preprocessing layer at the model's input (Rescaling, Normalization): the model scales its pixels itself. */
export interface InputPreprocessing {
  /** Layer path, as in the layer table. */
  layer: string;
  className: string;
  /** What it does, e.g. "x * 0.00392 + 0" or "(x - mean) / std". */
  description: string;
}

export interface ModelSummary {
  modelPath: string;
  name: string;
  format: 'layers' | 'graph' | 'onnx';
  /**
   * The input as images are fed: [batch, height, width, channels] for every
   * format (an ONNX model's own input layout is in `onnx.inputShape`).
   */
  inputShape: Shape;
  /** The first output's shape (see `outputs` for every one). */
  outputShape: Shape;
  /** Every output, in the model's order. */
  outputs: ModelOutput[];
  layers: LayerRow[];
  totalParams: number;
  trainableParams: number;
  /** Class labels from metadata.json (Teachable Machine) or labels.txt. */
  labels?: string[];
  /** Preprocessing the model's own metadata asks for, if it says, or raw pixels when it scales its input itself. */
  normalization?: Normalization;
  /** Where `normalization` comes from, in words ("the model's metadata.json", "the model's own Rescaling layer ..."). */
  normalizationFrom?: string;
  /** The model's own preprocessing layer at its input, if it has one. */
  preprocessing?: InputPreprocessing;
  /** Who made it, when its metadata says: a Teachable Machine export fine-tunes its head by default. */
  origin?: 'teachable-machine';
  warnings: string[];
  loadMs: number;
  /** ONNX models: what the file says about itself. */
  onnx?: OnnxInfo;
  /**
   * Graph models whose input is not [batch, height, width, channels] of any
   * batch: the input as declared and how images are fed to it, in words.
   */
  graphInput?: { shape: Shape; note: string };
}

export interface OnnxInfo {
  opset: number;
  irVersion: number;
  /** producer_name and producer_version, e.g. "pytorch 1.13.1". */
  producer: string;
  /** Layout of the image input. */
  layout: 'NCHW' | 'NHWC';
  /** The input's own shape, as declared (null where free). */
  inputShape: Shape;
  inputName: string;
  outputName: string;
  /** Nodes that compute constants only (weight copies, shape arithmetic): not in the layer table. */
  constantNodes: number;
  /** onnxruntime-node's version. */
  runtime: string;
}

export function formatShape(shape: Shape | Shape[]): string {
  const one = (s: Shape) => `[${s.map((d) => (d === null ? '?' : String(d))).join(', ')}]`;
  return Array.isArray(shape[0]) ? (shape as Shape[]).map(one).join(' ') : one(shape as Shape);
}

/** The model's outputs in words: "[?, 6]" for one, "2 outputs: topic [?, 6], mood [?, 13]" for several. */
export function formatOutputs(s: Pick<ModelSummary, 'outputShape' | 'outputs'>): string {
  const outputs = s.outputs ?? [];
  if (outputs.length <= 1) return formatShape(outputs[0]?.shape ?? s.outputShape);
  return `${outputs.length} outputs: ${outputs.map((o) => `${o.name} ${formatShape(o.shape)}`).join(', ')}`;
}

export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

/**
 * `text` shortened to at most `max` characters by cutting its middle
 * ("block_1_depthwise_expanded_conv_BN" → "block_1_…anded_conv_BN"), so that
 * the ends stay visible: the end tells a depthwise layer from its
 * BatchNormalization, a run's folder from its sibling's (its time), so it
 * keeps three fifths.
 */
export function middleEllipsis(text: string, max: number): string {
  if (text.length <= max) return text;
  if (max <= 1) return '…';
  const keep = max - 1;
  const tail = Math.ceil(keep * 0.6);
  return `${text.slice(0, keep - tail)}…${text.slice(text.length - tail)}`;
}
