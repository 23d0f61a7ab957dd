/**
 * How much memory a compiled training step (./plan.ts) needs, from the layer
 * shapes alone, and the largest micro-batch that fits a budget.
 *
 * The step is walked as the executor runs it (./executor.ts): forward, each
 * output allocated while its inputs are alive, every tensor freed after its
 * last reader unless a node keeps it for the backward (`keeps`, the same
 * function the forward asks); backward in reverse, each node's input
 * gradients allocated while its output gradient and every still-kept tensor
 * are alive. Everything there scales with the rows of the micro-batch, so
 * the walk counts floats per image; the weights, the optimizer's moments and
 * the gradient totals are the fixed part.
 */
import type * as tf from '@tensorflow/tfjs';
import { keeps } from './ops';
import type { PlanNode, StepPlan } from './plan';

/** wasm32's ceiling: tfjs-backend-wasm's heap cannot grow past 4 GB minus a page. */
export const WASM_HEAP_LIMIT = 4294901760;

/**
 * Room left for the allocator: the heap is one malloc arena, whose free
 * blocks do not always fit the next tensor (measured on MobileNetV2 at batch
 * 32: heap 872 MB for 690 MB of tensors at the peak).
 */
const FRAGMENTATION = 1.3;

export interface StepMemory {
  /** Peak bytes per image of the micro-batch (activations, their gradients, temporaries). */
  perImage: number;
  /** Bytes that do not depend on the batch: gradients in f64 and f32, optimizer moments. */
  fixed: number;
}

const elements = (shape: number[] | undefined) => (shape ? shape.reduce((a, b) => a * b, 1) : 0);

/** Floats a node allocates for temporaries beyond its output (per image), by kind. */
function temporaries(node: PlanNode, plan: StepPlan, phase: 'forward' | 'backward'): number {
  const inSize = elements(plan.shapes[node.inputs[0]]);
  if (phase === 'forward') return node.kind === 'generic' || node.kind === 'activation' ? elements(plan.shapes[node.output]) : 0;
  switch (node.kind) {
    // A strided convolution's input gradient works on a zero-dilated dy or on per-phase parts, about dx in size.
    case 'conv':
      return inSize;
    case 'generic':
    case 'activation':
      // tfjs's tape recomputes the forward: its intermediates, about one output, and one input gradient.
      return elements(plan.shapes[node.output]) + inSize;
    default:
      return 0;
  }
}

/** The step's memory for `optimizerSlots` moments per trained weight (Adam 2, RMSProp 1, SGD 0). */
export function stepMemory(plan: StepPlan, optimizerSlots = 2): StepMemory {
  const { nodes, requiresGrad, shapes } = plan;
  const isTrained = (v: tf.LayerVariable | undefined) => !!v && plan.variableIndex.has(v.read() as tf.Variable);
  const kept = nodes.map((n) => keeps(n, requiresGrad, isTrained));
  // Slots a backward holds, with the earliest node that holds each (the last to release it).
  const keptBy = new Map<number, number>();
  nodes.forEach((n, i) => {
    const slots = kept[i].inputs ? n.inputs : [...(kept[i].input ? [n.inputs[0]] : []), ...(kept[i].output ? [n.output] : [])];
    for (const s of slots) if (!keptBy.has(s) || keptBy.get(s)! > i) keptBy.set(s, i);
  });
  const readers = new Array<number>(plan.slotCount).fill(0);
  for (const n of nodes) for (const s of n.inputs) readers[s]++;
  readers[plan.outputSlot]++;

  let live = elements(shapes[plan.inputSlot]);
  let peak = live;
  const alive = new Set<number>([plan.inputSlot]);
  const drop = (s: number) => {
    if (alive.delete(s)) live -= elements(shapes[s]);
  };
  for (const n of nodes) {
    live += elements(shapes[n.output]);
    alive.add(n.output);
    peak = Math.max(peak, live + temporaries(n, plan, 'forward'));
    for (const s of n.inputs) {
      readers[s]--;
      if (readers[s] === 0 && !keptBy.has(s) && s !== plan.inputSlot) drop(s);
    }
    if (readers[n.output] === 0 && !keptBy.has(n.output)) drop(n.output);
  }
  // The loss reads the output; then only kept tensors remain.
  for (const s of [...alive]) if (!keptBy.has(s) && s !== plan.inputSlot) drop(s);
  const grads = new Map<number, number>([[plan.outputSlot, elements(shapes[plan.outputSlot])]]);
  let gradLive = elements(shapes[plan.outputSlot]);
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i];
    const dy = grads.get(n.output);
    if (dy !== undefined) {
      const dxs = n.inputs.filter((s) => requiresGrad[s]).map((s) => elements(shapes[s]));
      const created = n.kind === 'add' ? 0 : dxs.reduce((a, b) => a + b, 0);
      peak = Math.max(peak, live + gradLive + created + temporaries(n, plan, 'backward'));
      grads.delete(n.output);
      gradLive -= dy;
      n.inputs.forEach((s) => {
        if (!requiresGrad[s]) return;
        const size = n.kind === 'add' ? dy : elements(shapes[s]);
        if (grads.has(s)) {
          // A sum of two gradients: both alive while the sum is made, then one.
          peak = Math.max(peak, live + gradLive + size + elements(shapes[s]));
          return;
        }
        grads.set(s, size);
        gradLive += size;
      });
    }
    for (const [s, at] of keptBy) if (at === i) drop(s);
  }
  const trained = plan.variables.reduce((a, v) => a + v.size, 0);
  return { perImage: peak * 4, fixed: trained * (8 + 4 + 4 * optimizerSlots) };
}

/** Bytes the step's peak takes at `rows` per micro-batch, allowance for the allocator included. */
export function stepBytes(m: StepMemory, rows: number): number {
  return Math.ceil((m.perImage * rows + m.fixed) * FRAGMENTATION);
}

/**
 * The largest number of rows per micro-batch whose step fits in `budget`
 * bytes, at most `batch`; 0 when not even one image fits.
 */
export function microBatchFor(m: StepMemory, batch: number, budget: number): number {
  const rows = Math.floor((budget / FRAGMENTATION - m.fixed) / Math.max(1, m.perImage));
  return Math.max(0, Math.min(batch, rows));
}
