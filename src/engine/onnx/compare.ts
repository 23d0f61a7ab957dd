/**
 * Compare on two ONNX models: every activation node's output in the engine's
 * layout (so the Comparer's maps, activation change and CKA apply as they
 * are), and the weight drift of matched nodes from their initializers.
 */
import * as tf from '@tensorflow/tfjs';
import type { Activations } from '../inspect/activations';
import type { WeightDrift } from '../compare/drift';
import type { OnnxModel } from './model';
import { toEngineLayout } from './inspect';
import { int, type OnnxTensor } from './proto';

/** Every activation node's output for `input` ([1, h, w, c]), as Activations the Comparer can read. */
export async function onnxActivations(model: OnnxModel, input: tf.Tensor): Promise<Activations> {
  const data = (await input.data()) as Float32Array;
  const names = model.activationValues();
  const values = await model.runValues({ data, dims: input.shape }, names, { keep: true });
  const byPath = new Map<string, tf.Tensor>();
  const owned: tf.Tensor[] = [];
  for (const n of model.nodes) {
    const v = n.dynamic ? values.get(n.node.output?.[0] ?? '') : undefined;
    if (!v) continue;
    const t = toEngineLayout(v);
    byPath.set(n.path, t);
    owned.push(t);
  }
  const out = values.get(model.outputName);
  const output = out ? tf.tensor(out.data, out.dims) : tf.zeros([1, 1]);
  owned.push(output);
  return { byPath, output, outputs: [output], owned };
}

/** A float initializer's values (raw little-endian data or float_data); undefined for other types. */
export function floatValues(t: OnnxTensor): Float32Array | undefined {
  if (t.dataType !== 1) return undefined;
  if (t.rawData && t.rawData.length > 0) {
    const copy = Uint8Array.from(t.rawData);
    return new Float32Array(copy.buffer, 0, copy.length / 4);
  }
  return Float32Array.from(t.floatData ?? []);
}

function initializers(model: OnnxModel): Map<string, OnnxTensor> {
  return new Map((model.files.model.graph?.initializer ?? []).filter((t) => t.name).map((t) => [t.name!, t]));
}

/** ||W_B − W_A|| / ||W_A|| over the float initializers each matched node reads, in input order. */
export function onnxWeightDrifts(a: OnnxModel, b: OnnxModel, pairs: readonly (readonly [string, string])[]): WeightDrift[] {
  const ia = initializers(a);
  const ib = initializers(b);
  return pairs.map(([pa, pb]) => {
    const wa = (a.byPath.get(pa)?.weights ?? []).map((n) => ia.get(n)).filter((t): t is OnnxTensor => t !== undefined && t.dataType === 1);
    const wb = (b.byPath.get(pb)?.weights ?? []).map((n) => ib.get(n)).filter((t): t is OnnxTensor => t !== undefined && t.dataType === 1);
    if (wa.length === 0 && wb.length === 0) return { drift: null, change: 0, norm: 0, note: 'no weights' };
    const dims = (ws: OnnxTensor[]) => ws.map((t) => (t.dims ?? []).map((d) => int(d)).join('x'));
    if (wa.length !== wb.length || dims(wa).join() !== dims(wb).join()) {
      return { drift: null, change: 0, norm: 0, note: `weights differ in shape ([${dims(wa).join(', ')}] in A, [${dims(wb).join(', ')}] in B)` };
    }
    let change = 0;
    let norm = 0;
    wa.forEach((t, k) => {
      const va = floatValues(t)!;
      const vb = floatValues(wb[k])!;
      for (let i = 0; i < va.length; i++) {
        const d = vb[i] - va[i];
        change += d * d;
        norm += va[i] * va[i];
      }
    });
    change = Math.sqrt(change);
    norm = Math.sqrt(norm);
    if (norm > 0) return { drift: change / norm, change, norm };
    return { drift: null, change, norm, note: change > 0 ? "A's weights are all zero (the relative change is unbounded)" : 'all weights are zero on both sides' };
  });
}
