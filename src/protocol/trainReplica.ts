/**
 * The channel between the engine's training loop and a helper thread that
 * holds a replica of the model being trained (data-parallel training,
 * src/engine/train/parallel.ts). Served over the rpc helper: `init` once,
 * then one `step` per training batch. Tensors travel as Float32Arrays with
 * their shapes, never as JSON arrays of numbers.
 */

export interface TensorData {
  data: Float32Array;
  shape: number[];
}

/** One weight of tfjs's weight manifest (as model.save() writes it). */
export interface ReplicaWeightSpec {
  name: string;
  shape: number[];
  dtype: 'float32' | 'int32' | 'bool' | 'string' | 'complex64';
}

export interface ReplicaInit {
  /** The backend the engine runs on, and where the wasm binaries are. */
  backend: 'tensorflow' | 'wasm' | 'cpu';
  wasmDir?: string;
  /** The model being trained, as model.save() serialises it. */
  modelTopology: object;
  weightSpecs: ReplicaWeightSpec[];
  /** Shared by every helper: one copy in the process, each replica reads it once into its own heap. */
  weightData: SharedArrayBuffer;
  /** Layer paths the freeze plan holds fixed. */
  frozen: string[];
  /**
   * Set when the backbone is wholly frozen: the replica runs the layers up
   * to this top-level layer in inference mode, outside the gradient tape,
   * and trains the layers after it (as the engine does).
   */
  cutLayer?: string;
  outputKind: 'probabilities' | 'logits';
}

/** A weight as both sides list it, to check that they agree. */
export interface ReplicaWeight {
  /** The layer-given name (tfjs's originalName, without uniqueness suffixes). */
  name: string;
  shape: number[];
}

/** What the replica trains (in optimizer order) and the statistics a step changes. */
export interface ReplicaLayout {
  variables: ReplicaWeight[];
  statistics: ReplicaWeight[];
}

export interface ReplicaStep {
  /** The current values of the layout's variables, then of its statistics. */
  variables: Float32Array[];
  statistics: Float32Array[];
  /** This thread's rows of the batch: inputs (or features) and one-hot labels. */
  xs: TensorData;
  ys: TensorData;
  /** Seeds tfjs's unseeded random ops (Dropout) for this step. */
  seed: number;
}

export interface ReplicaStepResult {
  /** Mean loss over this thread's rows (regularization included). */
  loss: number;
  /** Rows whose largest output is the label. */
  correct: number;
  /** Gradients of `loss`, one per layout variable, in layout order. */
  grads: Float32Array[];
  /** The statistics after this step's forward pass (BatchNormalization's moving mean and variance). */
  statistics: Float32Array[];
}

export interface ReplicaApi {
  init: { params: ReplicaInit; result: ReplicaLayout; progress: never };
  step: { params: ReplicaStep; result: ReplicaStepResult; progress: never };
}
