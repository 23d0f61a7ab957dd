/**
 * Whether an inference fits in the wasm heap, decided from the layer shapes
 * before anything is allocated (see wasmTrap.ts for what happens otherwise).
 *
 * The inspector and Compare keep every layer's output for one image
 * (inspect/activations.ts): a model whose declared input is 4096x4096 needs
 * tens of gigabytes for that, and used to end in "Aborted()". Here each
 * layer's output shape is worked out from the input shape with the layers'
 * own computeOutputShape, summed, and set against the room left in the heap.
 */
import * as tf from '@tensorflow/tfjs';
import { EngineError } from './errors';
import { flatGraph } from './inspect/flatGraph';
import { WASM_HEAP_LIMIT } from './train/step/memory';

const GB = 1024 ** 3;
const size = (bytes: number) => (bytes >= GB ? `${(bytes / GB).toFixed(1)} GB` : `${Math.round(bytes / 1024 ** 2)} MB`);

/** Bytes of every layer output of `model` for one input of `inputShape` (batch included), or undefined if a shape is unknown. */
export function allOutputsBytes(model: tf.LayersModel, inputShape: number[]): number | undefined {
  const g = flatGraph(model);
  const shapes: (number[] | undefined)[] = new Array(g.slotCount);
  g.inputSlots.forEach((s) => (shapes[s] = inputShape));
  let floats = 0;
  for (const step of g.steps) {
    const ins = step.inputs.map((s) => shapes[s]);
    if (ins.some((s) => !s)) return undefined;
    let out: tf.Shape | tf.Shape[];
    try {
      out = step.layer.computeOutputShape(ins.length === 1 ? ins[0]! : (ins as number[][]));
    } catch {
      return undefined;
    }
    const outs = (Array.isArray(out[0]) || out.length === 0 ? out : [out]) as tf.Shape[];
    step.outputs.forEach((slot, i) => {
      const shape = outs[i]?.map((d, axis) => (d === null ? (axis === 0 ? inputShape[0] : NaN) : d));
      if (!shape || shape.some((d) => !Number.isFinite(d))) return;
      shapes[slot] = shape as number[];
      floats += (shape as number[]).reduce((a, b) => a * b, 1);
    });
  }
  return floats * 4;
}

/** Bytes the wasm heap can still take (tensors already held are counted; allocator slack allowed for). */
export function heapRoom(): number {
  return (WASM_HEAP_LIMIT - tf.memory().numBytes) / 1.3;
}

/**
 * Refuses, before allocating, an inference that keeps every layer's output
 * (`what`: "inspecting m") when it cannot fit, naming the input size that would.
 */
export function checkKeepAll(model: tf.LayersModel, inputShape: number[], what: string): void {
  if (tf.getBackend() !== 'wasm') return;
  const bytes = allOutputsBytes(model, inputShape);
  const room = heapRoom();
  if (bytes === undefined || bytes <= room) return;
  const [, h, w] = inputShape;
  const k = Math.sqrt(room / bytes);
  const fits = h && w ? ` An input of about ${Math.max(1, Math.floor(h * k))}x${Math.max(1, Math.floor(w * k))} would fit.` : '';
  throw new EngineError(
    'out-of-memory',
    `${what} keeps every layer's output for one image: at ${h}x${w} that is about ${size(bytes)}, more than the ${size(room)} the engine has (WebAssembly's heap holds at most 4 GB).${fits} Nothing was computed.`,
  );
}
