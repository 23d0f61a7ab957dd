/**
 * Sets up a fine-tune's training step: the compiled step (./plan.ts,
 * ./executor.ts) when the backend has Layer Lens's SIMD kernels and the
 * model can be planned, with the micro-batch size that fits the memory
 * budget (./memory.ts); otherwise tfjs's own gradients. Says which, in one
 * line for the log.
 */
import * as tf from '@tensorflow/tfjs';
import { EngineError } from '../../errors';
import { simdKernels } from '../../kernels/simd';
import type { OptimizerName } from '../loop';
import { CompiledStep } from './executor';
import { microBatchFor, stepBytes, stepMemory, WASM_HEAP_LIMIT } from './memory';
import { planTrainingStep } from './plan';

export { CompiledStep } from './executor';

export interface TrainingStep {
  /** Absent: the step runs on tfjs's gradient tape. */
  compiled?: CompiledStep;
  /** Rows per micro-batch, when a batch does not fit in memory at once. */
  microBatch?: number;
  /** "Step: compiled (…); peak ≈ 0.9 GB at batch 32" — for the start of the log. */
  line: string;
}

export interface StepSettings {
  batchSize: number;
  optimizer: OptimizerName;
  /** The budget in MB (layerLens.memoryLimitMB); wasm's 4 GB at most. */
  memoryLimitMB?: number;
}

const MB = 1024 * 1024;
const mb = (bytes: number) => (bytes >= 1024 * MB ? `${(bytes / 1024 / MB).toFixed(1)} GB` : bytes >= MB ? `${Math.round(bytes / MB)} MB` : `${Math.max(1, Math.round(bytes / 1024))} KB`);

/**
 * The step for training every weight in `variables` of `model` (the whole
 * model's forward; a frozen backbone cut off in front trains a head with
 * tfjs as before, and does not come here). Throws EngineError
 * 'out-of-memory' when not even one image's step fits the budget.
 */
export function trainingStep(model: tf.LayersModel, variables: tf.Variable[], o: StepSettings): TrainingStep {
  if (!simdKernels()) return { line: `Step: tfjs gradients (${tf.getBackend()} backend without Layer Lens's SIMD kernels)` };
  const planned = planTrainingStep(model, variables);
  if ('reason' in planned) return { line: `Step: tfjs gradients (${planned.reason})` };
  const plan = planned.plan;
  const memory = stepMemory(plan, o.optimizer === 'adam' ? 2 : o.optimizer === 'rmsprop' ? 1 : 0);
  const limit = Math.min(WASM_HEAP_LIMIT, o.memoryLimitMB ? o.memoryLimitMB * MB : Infinity);
  const inputBytes = plan.shapes[plan.inputSlot].reduce((a, b) => a * b, 4);
  // Already held (weights, other models), and the batch itself with its augmented copy.
  const budget = limit - tf.memory().numBytes - 2 * o.batchSize * inputBytes;
  const rows = microBatchFor(memory, o.batchSize, budget);
  const where = o.memoryLimitMB && o.memoryLimitMB * MB < WASM_HEAP_LIMIT ? `layerLens.memoryLimitMB (${o.memoryLimitMB})` : "wasm's 4 GB heap";
  if (rows === 0) {
    throw new EngineError(
      'out-of-memory',
      `one image's training step needs about ${mb(stepBytes(memory, 1))} and ${mb(Math.max(0, budget))} is left under ${where}; freeze more layers (a frozen prefix keeps no activations) or raise layerLens.memoryLimitMB.`,
    );
  }
  const compiled = new CompiledStep(plan);
  const kinds = `compiled: ${plan.summary}`;
  if (rows < o.batchSize) {
    const parts = Math.ceil(o.batchSize / rows);
    return {
      compiled,
      microBatch: rows,
      line: `Step: ${kinds}. A batch of ${o.batchSize} needs about ${mb(stepBytes(memory, o.batchSize))}, more than the ${mb(budget)} left under ${where}: each step runs as ${parts} micro-batches of up to ${rows} with the gradients summed, so the update is the whole batch's${plan.nodes.some((n) => n.kind === 'bn' && n.training) ? `; BatchNormalization layers that train normalise each micro-batch with its own statistics (their moving averages still follow the whole batch)` : ''}`,
    };
  }
  return { compiled, line: `Step: ${kinds}; peak about ${mb(stepBytes(memory, o.batchSize))} at batch ${o.batchSize}` };
}
