/**
 * A layers model as one flat list of layer calls, nested models opened up.
 *
 * Why not `tf.model({inputs, outputs: [every layer's output]})`: the layers of
 * a nested model (a Teachable Machine export is a Sequential wrapping a
 * Sequential wrapping a functional MobileNet) have symbolic outputs only in
 * their own model's graph, so the outer model cannot name them. Re-applying the
 * inner layers symbolically would make a graph that reaches them, but it adds
 * an inbound node to every layer of the user's model, after which
 * `layer.output` throws ("multiple inbound nodes") for everyone else holding
 * that model (the training pipeline, the tree view).
 *
 * So this module reads the graph (each SymbolicTensor's source layer and node)
 * once, turns it into steps over numbered slots, and runs the steps eagerly:
 * `layer.apply` on concrete tensors calls the layer directly and adds no node.
 * That is what `model.predict` does internally too, so the values are the same
 * and the cost is the same, but every intermediate tensor is ours to keep.
 * The plan also splits cleanly at any layer, which Grad-CAM needs.
 */
import * as tf from '@tensorflow/tfjs';
import { EngineError } from '../errors';
import { walkLayers } from '../model';

type Kwargs = Record<string, unknown>;

export interface Step {
  /** Path of the layer, as in the layer table ("features/backbone/Conv1"). */
  path: string;
  layer: tf.layers.Layer;
  inputs: number[];
  outputs: number[];
  kwargs: Kwargs;
}

export interface FlatGraph {
  /** Slots fed with the model's inputs. */
  inputSlots: number[];
  /** Slots holding the model's outputs. */
  outputSlots: number[];
  /** Layer calls in an order that computes every input before its use. */
  steps: Step[];
  slotCount: number;
  /**
   * Output slots of every layer by path: a nested model's are its inner
   * outputs' slots, an InputLayer's the slot it is fed through.
   */
  layerSlots: Map<string, number[]>;
  /** Index of the step that writes each slot (-1 for model inputs). */
  producer: number[];
}

function isContainer(layer: tf.layers.Layer): layer is tf.LayersModel {
  return layer instanceof tf.LayersModel;
}

class Builder {
  readonly steps: Step[] = [];
  readonly layerSlots = new Map<string, number[]>();
  readonly producer: number[] = [];
  /** Every symbolic tensor's slot, first assignment wins (see pathSlots). */
  readonly tensorSlot = new Map<number, number>();
  slotCount = 0;

  constructor(private readonly pathOf: Map<tf.layers.Layer, string>) {}

  newSlot(producer: number): number {
    this.producer.push(producer);
    return this.slotCount++;
  }

  private path(layer: tf.layers.Layer): string {
    return this.pathOf.get(layer) ?? layer.name;
  }

  /** Adds the steps of `model` reading `inputs`; returns its output slots. */
  addModel(model: tf.LayersModel, inputs: number[]): number[] {
    if (model.inputs.length !== inputs.length) {
      throw new EngineError('internal', `nested model ${this.path(model)} takes ${model.inputs.length} inputs but is called with ${inputs.length}.`);
    }
    const slotOf = new Map<number, number>();
    const assign = (t: tf.SymbolicTensor, slot: number) => {
      slotOf.set(t.id, slot);
      if (!this.tensorSlot.has(t.id)) this.tensorSlot.set(t.id, slot);
    };
    model.inputs.forEach((t, i) => assign(t, inputs[i]));
    // Depth-first from the outputs with an explicit stack: models reach
    // hundreds of layers and a recursive walk would be as deep.
    const visit = (root: tf.SymbolicTensor) => {
      const stack: { t: tf.SymbolicTensor; expanded: boolean }[] = [{ t: root, expanded: false }];
      while (stack.length > 0) {
        const top = stack[stack.length - 1];
        if (slotOf.has(top.t.id)) {
          stack.pop();
          continue;
        }
        const layer = top.t.sourceLayer;
        const node = layer.inboundNodes[top.t.nodeIndex];
        if (!node) throw new EngineError('internal', `layer ${this.path(layer)} has no inbound node ${top.t.nodeIndex}.`);
        if (!top.expanded) {
          top.expanded = true;
          if (node.inputTensors.length === 0) {
            throw new EngineError('bad-input', `layer ${this.path(layer)} is not connected to the inputs of ${this.path(model)}; Layer Lens cannot run it.`);
          }
          for (const input of node.inputTensors) if (!slotOf.has(input.id)) stack.push({ t: input, expanded: false });
          continue;
        }
        stack.pop();
        const inSlots = node.inputTensors.map((t) => slotOf.get(t.id)!);
        let outSlots: number[];
        if (isContainer(layer)) {
          outSlots = this.addModel(layer, inSlots);
        } else {
          const index = this.steps.length;
          outSlots = node.outputTensors.map(() => this.newSlot(index));
          const { mask: _mask, ...kwargs } = (node.callArgs ?? {}) as Kwargs;
          void _mask;
          this.steps.push({ path: this.path(layer), layer, inputs: inSlots, outputs: outSlots, kwargs });
          this.layerSlots.set(this.path(layer), outSlots);
        }
        node.outputTensors.forEach((t, i) => assign(t, outSlots[i]));
      }
    };
    for (const out of model.outputs) visit(out);
    return model.outputs.map((t) => slotOf.get(t.id)!);
  }

  /**
   * Slots of the layers that no step names: nested models and InputLayers.
   * A nested model is not always a node of its parent's graph: tfjs builds a
   * Sequential whose first layer is a model directly on that model's own
   * graph, so the walk passes straight into its layers. Its output tensors
   * are still the ones its layers produced, which the walk has placed.
   */
  fillContainers(): void {
    for (const [layer, p] of this.pathOf) {
      if (this.layerSlots.has(p)) continue;
      const outs = isContainer(layer) ? layer.outputs : (layer.inboundNodes[0]?.outputTensors ?? []);
      const slots = outs.map((t) => this.tensorSlot.get(t.id));
      if (slots.length > 0 && slots.every((s) => s !== undefined)) this.layerSlots.set(p, slots as number[]);
    }
  }
}

const cache = new WeakMap<tf.LayersModel, FlatGraph>();

/** The flat plan of `model`, built once per model object. */
export function flatGraph(model: tf.LayersModel): FlatGraph {
  const hit = cache.get(model);
  if (hit) return hit;
  const pathOf = new Map<tf.layers.Layer, string>();
  for (const { path, layer } of walkLayers(model)) if (!pathOf.has(layer)) pathOf.set(layer, path);
  const b = new Builder(pathOf);
  const inputSlots = model.inputs.map(() => b.newSlot(-1));
  const outputSlots = b.addModel(model, inputSlots);
  b.fillContainers();
  const g: FlatGraph = { inputSlots, outputSlots, steps: b.steps, slotCount: b.slotCount, layerSlots: b.layerSlots, producer: b.producer };
  cache.set(model, g);
  return g;
}

function applyStep(step: Step, values: (tf.Tensor | undefined)[]): void {
  const xs = step.inputs.map((s) => values[s]!);
  const y = step.layer.apply(xs.length === 1 ? xs[0] : xs, step.kwargs) as tf.Tensor | tf.Tensor[];
  const ys = Array.isArray(y) ? y : [y];
  step.outputs.forEach((s, i) => (values[s] = ys[i]));
}

/**
 * Runs every step; returns all slot values. Call inside tf.tidy and keep what
 * you need: tensors made inside layers (pre-activation sums...) are freed there.
 */
export function runAll(g: FlatGraph, inputs: tf.Tensor[]): tf.Tensor[] {
  const values: (tf.Tensor | undefined)[] = new Array(g.slotCount);
  g.inputSlots.forEach((s, i) => (values[s] = inputs[i]));
  for (const step of g.steps) applyStep(step, values);
  return values as tf.Tensor[];
}

/** Indices of the steps that depend, directly or not, on slot `from`. */
export function stepsAfter(g: FlatGraph, from: number): number[] {
  const dirty = new Set<number>([from]);
  const out: number[] = [];
  g.steps.forEach((step, i) => {
    if (step.inputs.some((s) => dirty.has(s))) {
      out.push(i);
      for (const s of step.outputs) dirty.add(s);
    }
  });
  return out;
}

/**
 * Re-runs only the steps that depend on slot `from`, with `value` in it and
 * every other slot taken from `values`; returns every slot's value. This is
 * the model split at a layer, the function Grad-CAM differentiates.
 */
export function runFrom(g: FlatGraph, values: tf.Tensor[], from: number, value: tf.Tensor, steps = stepsAfter(g, from)): tf.Tensor[] {
  const local: (tf.Tensor | undefined)[] = values.slice();
  local[from] = value;
  for (const i of steps) applyStep(g.steps[i], local);
  return local as tf.Tensor[];
}
