/**
 * The layer table of a graph model (tensorflowjs_converter's graph format):
 * one row per op node, its output shape found by running the graph once on a
 * zero input of the signature's shape (the topology does not record shapes),
 * and its params counting only weights (float constants of rank 1 or more;
 * the int32 shape constants of a Reshape or a StridedSlice are not params).
 */
import * as tf from '@tensorflow/tfjs';
import type { LayerRow, ModelOutput, Shape } from '../protocol/model';

/** A weight a graph node reads counts as params when it is a float tensor, not a shape or index constant. */
export function isWeight(t: tf.Tensor): boolean {
  return t.dtype === 'float32' && t.rank >= 1;
}

export function graphParams(model: tf.GraphModel): number {
  return Object.values(model.weights).reduce((a, ts) => a + ts.filter(isWeight).reduce((b, t) => b + t.size, 0), 0);
}

/** Graph models write unknown sizes as -1; the protocol writes them as null. */
export function graphShape(shape: readonly number[] | undefined): Shape {
  return (shape ?? []).map((d) => (d === -1 || d === null || d === undefined ? null : d));
}

/**
 * Output shapes of every named node for one zero input (batch 1), or an
 * empty map when the input's size is not fixed (a graph that takes any image
 * size) or the run fails: the table then shows no shapes rather than wrong ones.
 */
function inferShapes(model: tf.GraphModel, names: string[]): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  const input = model.inputs[0];
  if (model.inputs.length !== 1 || !input?.shape) return shapes;
  const dims = input.shape.map((d, i) => (i === 0 && (d === -1 || d === null) ? 1 : d));
  if (dims.some((d) => d === null || d === undefined || d < 0) || dims.reduce((a, b) => a * b, 1) > 4096 * 4096 * 4) return shapes;
  const dtype = (input.dtype ?? 'float32') as tf.DataType;
  tf.tidy(() => {
    try {
      const outs = model.execute({ [input.name]: tf.zeros(dims, dtype) }, names) as tf.Tensor | tf.Tensor[];
      (Array.isArray(outs) ? outs : [outs]).forEach((t, i) => shapes.set(names[i], t.shape.slice()));
    } catch {
      // Shapes stay unknown; loading does not fail for a table column.
    }
  });
  return shapes;
}

/** The batch dimension of an inferred shape, unknown like the signature's. */
const withBatch = (shape: number[] | undefined): Shape => (shape && shape.length > 0 ? [null, ...shape.slice(1)] : (shape ?? []));

export function graphRows(model: tf.GraphModel, topology: Record<string, unknown>): LayerRow[] {
  const weights = model.weights;
  const nodes = Array.isArray(topology['node']) ? (topology['node'] as Record<string, unknown>[]) : [];
  const ops = nodes.filter((n) => n['op'] !== 'Const' && n['op'] !== 'NoOp' && typeof n['name'] === 'string');
  const inputName = model.inputs[0]?.name;
  const shapes = inferShapes(
    model,
    ops.map((n) => n['name'] as string).filter((n) => n !== inputName),
  );
  const rows: LayerRow[] = [];
  for (const n of ops) {
    const op = typeof n['op'] === 'string' ? n['op'] : '?';
    const name = n['name'] as string;
    const inputs = Array.isArray(n['input']) ? (n['input'] as string[]) : [];
    let params = 0;
    for (const i of inputs) {
      const w = typeof i === 'string' ? weights[i.replace(/^\^/, '').split(':')[0]] : undefined;
      if (w) for (const t of w) if (isWeight(t)) params += t.size;
    }
    const shape = name === inputName ? graphShape(model.inputs[0]?.shape) : withBatch(shapes.get(name));
    rows.push({ path: name, name, className: op, outputShape: shape, params, trainableParams: 0, trainable: false, depth: 0, isContainer: false });
  }
  return rows;
}

/** Every output of the graph, with the shape its signature gives or, failing that, the shape the zero run produced. */
export function graphOutputs(model: tf.GraphModel, rows: LayerRow[]): ModelOutput[] {
  return model.outputs.map((o) => {
    const node = o.name.split(':')[0];
    const declared = graphShape(o.shape);
    const inferred = rows.find((r) => r.path === node)?.outputShape as Shape | undefined;
    return { name: node, shape: declared.length > 0 ? declared : (inferred ?? []) };
  });
}
