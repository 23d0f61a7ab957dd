/**
 * Building a tfjs model from a user's file, under guard. tfjs allocates
 * every weight the topology describes (as zeros) before it reads a single
 * stored value, so a config that says `filters: 10000000` makes it allocate
 * gigabytes (wasm memory never shrinks back) and then fail. While a loader
 * builds under `buildGuarded`, each weight is checked before it is allocated
 * (the loader's `check`, then the budget: no more values than the file
 * holds, plus slack), checked again once made (`made`), and recorded, so
 * that a failed build frees every weight it made.
 *
 * The guard is one patch of `tf.layers.Layer.prototype.addWeight`, installed
 * once, that does nothing outside a guarded build; each build has its own
 * hooks (the model.json and Keras loaders word their refusals differently).
 */
import * as tf from '@tensorflow/tfjs';
import { AsyncLocalStorage } from 'node:async_hooks';
import { limits } from './files';

export interface BuildHooks {
  /** Values the build may allocate in all (what the file stores, plus slack). */
  allowed: number;
  /** Refuses a weight before anything is counted or allocated (a shape that is not one, a name tfjs cannot use). */
  check?(layer: tf.layers.Layer, name: string, shape: number[]): void;
  /** The error for a weight over the budget (or larger than one tensor may be). */
  overBudget(layer: tf.layers.Layer, shape: number[], values: number): Error;
  /** Checks a weight once made (against the file's manifest). */
  made?(layer: tf.layers.Layer, weight: tf.LayerVariable): void;
}

interface Build {
  hooks: BuildHooks;
  used: number;
  created: tf.LayerVariable[];
}

const building = new AsyncLocalStorage<Build>();
let installed = false;

function install(): void {
  if (installed) return;
  installed = true;
  type AddWeight = (this: tf.layers.Layer, name: string, shape: number[], ...rest: unknown[]) => tf.LayerVariable;
  const proto = tf.layers.Layer.prototype as unknown as { addWeight: AddWeight };
  const original = proto.addWeight;
  proto.addWeight = function (this: tf.layers.Layer, name, shape, ...rest) {
    const b = building.getStore();
    if (!b) return original.call(this, name, shape, ...rest);
    b.hooks.check?.(this, name, shape);
    const values = shape.reduce((a, d) => a * d, 1);
    b.used += values;
    if (!(values <= limits.maxTensorElements) || !(b.used <= b.hooks.allowed)) throw b.hooks.overBudget(this, shape, values);
    // In a scope: when tfjs throws after making the initial value (a name that is not a valid tensor name), that tensor is freed too.
    let w: tf.LayerVariable | undefined;
    tf.tidy(() => {
      w = original.call(this, name, shape, ...rest);
    });
    b.created.push(w!);
    b.hooks.made?.(this, w!);
    return w!;
  };
  // When the weight names do not match, tfjs throws from loadWeights and never frees the weight values it decoded.
  type LoadWeights = (this: tf.LayersModel, weights: tf.NamedTensorMap, strict?: boolean) => void;
  const model = tf.LayersModel.prototype as unknown as { loadWeights: LoadWeights };
  const loadWeights = model.loadWeights;
  model.loadWeights = function (this: tf.LayersModel, weights, strict) {
    try {
      loadWeights.call(this, weights, strict);
    } catch (e) {
      if (building.getStore()) tf.dispose(Object.values(weights));
      throw e;
    }
  };
}

/** Disposes weights, each once, whichever are already gone. */
export function disposeCreated(created: tf.LayerVariable[]): void {
  for (const w of created) {
    try {
      w.dispose();
    } catch {
      // Already disposed.
    }
  }
}

/**
 * Runs `build` with every weight it makes checked by `hooks`; gives its
 * result and the weights made. On failure the weights made are freed and the
 * error is thrown on.
 */
export async function buildGuarded<T>(hooks: BuildHooks, build: () => Promise<T>): Promise<{ value: T; created: tf.LayerVariable[] }> {
  install();
  const b: Build = { hooks, used: 0, created: [] };
  try {
    return { value: await building.run(b, build), created: b.created };
  } catch (e) {
    disposeCreated(b.created);
    throw e;
  }
}

/** The layer classes tfjs-layers can build (its serialization registry, custom registrations included). */
export function registeredClasses(): Set<string> {
  return new Set(Object.keys(tf.serialization.SerializationMap.getMap().classNameMap));
}
