/**
 * Applies a freeze plan to a tfjs model the way Keras would, which takes three
 * things tfjs does not do by itself:
 *
 * 1. Every layer's flag is set, nested ones included. tfjs's Container setter
 *    only reaches the weights of its direct children, and leaves their own
 *    `trainable` flag alone, so a BatchNormalization two models deep would not
 *    know it is frozen. Here frozen(path) = the path or any enclosing model's
 *    path is in the plan (src/protocol/freezePlan.ts).
 * 2. The model is compiled again. `compile()` snapshots the trainable weights
 *    (`collectedTrainableWeights`), and `fit` updates that snapshot minus the
 *    variables whose own flag is off: a layer unfrozen after compile stays
 *    fixed, and a nested model frozen after compile keeps training the layers
 *    its setter did not reach, until the next compile. That compile gets a
 *    fresh optimizer (freshOptimizer says why).
 * 3. A frozen BatchNormalization runs in inference mode during `fit`. tfjs's
 *    BatchNormalization.call only looks at `kwargs.training`: with `training`
 *    true (as `fit` passes) it normalises with the batch's statistics and
 *    writes new moving mean and variance, whatever `trainable` says. Keras
 *    (TF 2) instead runs a frozen BN with its moving statistics and leaves
 *    them alone, which is what fine-tuning a pretrained backbone needs. Each BN
 *    instance gets a `call` that passes `training: false` while the layer is
 *    frozen; gradients still flow through it to trainable layers before it.
 */
import * as tf from '@tensorflow/tfjs';
import { layerRows, walkLayers } from '../model';
import { EngineError } from '../errors';
import { frozenPaths, unknownPaths } from '../../protocol/freezePlan';

export {
  containerState,
  freezeAllBatchNorm,
  freezeStates,
  freezeUpTo,
  frozenPaths,
  isFrozen,
  normalizePlan,
  setFrozen,
  toggle,
  trainableCounts,
  unknownPaths,
  type FreezeState,
} from '../../protocol/freezePlan';

export interface FreezeResult {
  /** Plan entries that name no layer of the model (for a diagnostic; ignored). */
  unknown: string[];
  /** Params that the plan holds fixed (weights of frozen layers that training would otherwise update). */
  frozenParams: number;
  /** Params that training updates, as the compiled model will see them. */
  trainableParams: number;
  /** Every param, BatchNormalization's moving statistics included. */
  totalParams: number;
}

type CallArgs = Parameters<tf.layers.Layer['call']>;

/** BN layers whose `call` already honours `trainable`; patching twice would nest the wrappers. */
const patchedBatchNorms = new WeakSet<tf.layers.Layer>();

function isBatchNormLayer(layer: tf.layers.Layer): boolean {
  return layer.getClassName() === 'BatchNormalization';
}

/**
 * Makes one BatchNormalization layer behave as in Keras: in inference mode
 * (moving statistics used, not updated) whenever `layer.trainable` is false.
 * The flag is read at call time, so unfreezing later needs no new patch.
 * Idempotent. Returns false for any other layer class.
 */
export function keepFrozenBatchNormInInference(layer: tf.layers.Layer): boolean {
  if (!isBatchNormLayer(layer)) return false;
  if (patchedBatchNorms.has(layer)) return true;
  const original = layer.call.bind(layer);
  // An own property shadows the prototype's method; tfjs reaches `call`
  // through `this.call` in Layer.apply and Container.runInternalGraph.
  layer.call = (inputs: CallArgs[0], kwargs: CallArgs[1]) => original(inputs, layer.trainable ? kwargs : { ...kwargs, training: false });
  patchedBatchNorms.add(layer);
  return true;
}

/** Whether a layer has the Keras-like BatchNormalization behaviour (for tests and diagnostics). */
export function hasFrozenBatchNormFix(layer: tf.layers.Layer): boolean {
  return patchedBatchNorms.has(layer);
}

/**
 * A new optimizer of the same class and settings, with no state. tfjs's
 * stateful optimizers (Adam, Adamax, RMSProp, Momentum, Adagrad, Adadelta)
 * keep their moments in an array indexed by the position of each variable in
 * the list they are handed, not by variable: after the trainable list changes,
 * the old moments would be applied to other weights (a broadcast error when
 * the shapes differ, silently wrong updates when they agree).
 */
export function freshOptimizer(optimizer: tf.Optimizer): tf.Optimizer {
  const entry = tf.serialization.SerializationMap.getMap().classNameMap[optimizer.getClassName()];
  if (!entry) {
    throw new EngineError(
      'internal',
      `optimizer ${optimizer.getClassName()} is not registered with tfjs, so it cannot be rebuilt after a freeze change; use adam, sgd or rmsprop.`,
    );
  }
  const [cls, fromConfig] = entry;
  return fromConfig(cls, optimizer.getConfig()) as tf.Optimizer;
}

/**
 * Compiles the model again so that changed `trainable` flags take effect
 * (`compile` snapshots the trainable weights that `fit` updates). Without
 * `args` it reuses the loss and metrics of the last compile and a fresh
 * optimizer with the same settings (see freshOptimizer: an optimizer's state
 * is tied to the old weight list). The same goes when `args.optimizer` is the
 * instance the model already uses. The replaced optimizer is disposed; the new
 * one is not owned by the model, so whoever disposes the model after training
 * disposes `model.optimizer` too.
 */
export function recompile(model: tf.LayersModel, args?: tf.ModelCompileArgs): void {
  const current = model.optimizer as tf.Optimizer | undefined;
  if (args && args.optimizer !== current) {
    model.compile(args);
    return;
  }
  if (!current) {
    throw new EngineError(
      'internal',
      `model "${model.name}" has not been compiled, so there is nothing to compile again; pass the optimizer and loss to recompile() or applyFreezePlan().`,
    );
  }
  const optimizer = freshOptimizer(current);
  model.compile({ loss: model.loss, metrics: model.metrics, ...args, optimizer });
  current.dispose();
}

function isCompiled(model: tf.LayersModel): boolean {
  return model.optimizer != null;
}

/**
 * Sets `trainable` on every layer from the plan (nested layers included),
 * patches every BatchNormalization so that a frozen one runs in inference
 * mode, and compiles the model again so that `fit` sees the change: with
 * `compileArgs` if given, else with the model's own loss and metrics and a
 * fresh copy of its optimizer if it was compiled before (an uncompiled model
 * is left for the caller's first compile, which picks the flags up). A
 * caller running its own optimizer loop must create its optimizer after this
 * call, for the reason given at freshOptimizer. Unknown paths are
 * returned, not thrown: the caller shows them as a diagnostic. The plan is the
 * whole truth: layers it does not cover become trainable.
 */
export function applyFreezePlan(model: tf.LayersModel, frozen: readonly string[], compileArgs?: tf.ModelCompileArgs): FreezeResult {
  const rows = layerRows(model);
  const unknown = unknownPaths(rows, frozen);
  const fz = frozenPaths(rows, frozen);
  // Pre-order: a nested model's setter touches its direct children's weights,
  // and the children's own setters, which come after it, have the last word.
  model.trainable = true;
  for (const { path, layer } of walkLayers(model)) {
    layer.trainable = !fz.has(path);
    keepFrozenBatchNormInInference(layer);
  }
  if (compileArgs) recompile(model, compileArgs);
  else if (isCompiled(model)) recompile(model);

  // Counted from tfjs's own weight lists, i.e. what `fit` will update; the
  // host's trainableCounts() computes the same number from the layer table
  // (test/unit/freeze.test.ts checks that they agree).
  const trainableParams = model.trainableWeights.reduce((n, w) => n + w.shape.reduce((a: number, b) => a * (b ?? 1), 1), 0);
  const freezable = rows.reduce((n, r) => n + (r.isContainer ? 0 : (r.freezableParams ?? 0)), 0);
  return { unknown, frozenParams: freezable - trainableParams, trainableParams, totalParams: model.countParams() };
}

/** Unfreezes every layer (BatchNormalization back to training mode) and recompiles if compiled. */
export function unfreezeAll(model: tf.LayersModel, compileArgs?: tf.ModelCompileArgs): FreezeResult {
  return applyFreezePlan(model, [], compileArgs);
}
