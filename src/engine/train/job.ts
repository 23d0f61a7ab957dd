/**
 * The skeleton every training job shares (fine-tune, rotation pretext):
 * open the image model (graph models refused), choose the output folder next
 * to the model and check it can be written, train with progress (the loop
 * with an optimizer and Keras-like callbacks), save the result atomically
 * with its metadata, say 'end', and free every weight and tensor whatever
 * happens. Each job supplies what is its own: the data, the head, the
 * metadata.
 */
import * as tf from '@tensorflow/tfjs';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Normalization } from '../../protocol/model';
import { evaluationOf, type EpochMetrics, type Evaluation, type TrainProgress } from '../../protocol/train';
import { currentBackend } from '../backend';
import { CancelledError, EngineError } from '../errors';
import { writeFolderAtomic } from '../io/atomic';
import { rel } from '../io/files';
import { modelArtifacts, writeArtifacts } from '../io/save';
import { loadModel, type LoadedModel } from '../model';
import { createOptimizer, progressCallbacks, trainLoop, type LoopOptions, type LoopResult, type OptimizerName, type Trainable, type TrainData } from './loop';

/** What a job calls itself in messages ("Fine-tuning was cancelled"), and what it makes ("the fine-tuned model"). */
export interface JobNames {
  /** "Fine-tuning", "Pretraining": the subject of CancelledError's message. */
  doing: string;
  /** "fine-tuned", "pretrained". */
  made: string;
}

export function checkCancel(signal: AbortSignal | undefined, names: JobNames): void {
  if (signal?.aborted) throw new CancelledError(names.doing);
}

/** The model as a job trains it: a layers model, with its name as messages show it. */
export interface OpenedModel {
  loaded: LoadedModel;
  source: tf.LayersModel;
  modelName: string;
}

/** Loads the model; a graph model (inference only) is refused with `graphMessage`. The caller disposes it (disposeJob). */
export async function openLayersModel(modelJsonPath: string, graphMessage: (modelName: string) => string): Promise<OpenedModel> {
  const loaded = await loadModel(modelJsonPath);
  const modelName = rel(loaded.files.modelJsonPath);
  if (!loaded.layers) {
    const onnx = loaded.onnx !== undefined;
    disposeJob({ loaded });
    // ONNX fine-tunes go to engine/onnx/finetune.ts; anything else would train the backbone, which ONNX Runtime cannot.
    if (onnx) throw new EngineError('bad-input', `${modelName} is an ONNX model: its backbone runs in ONNX Runtime, which cannot train it; Layer Lens trains only a new head on an ONNX model (Fine-Tune).`);
    throw new EngineError('bad-input', graphMessage(modelName));
  }
  return { loaded, source: loaded.layers, modelName };
}

/**
 * The preprocessing to train with and where it comes from: the recipe's,
 * else the model's (its metadata, or its own Rescaling/Normalization layer),
 * else [0, 1] with `warn` told why.
 */
export function trainingNormalization(chosen: Normalization | undefined, loaded: LoadedModel, warn: () => void): { normalization: Normalization; from?: string } {
  if (chosen) return { normalization: chosen, from: 'the recipe (layerlens.json)' };
  const n = loaded.summary.normalization;
  if (n) return { normalization: n, from: loaded.summary.normalizationFrom };
  warn();
  return { normalization: 'zeroOne' };
}

const pad2 = (n: number) => String(n).padStart(2, '0');

/** `<prefix>-YYYYMMDD-HHMM` beside the model's folder, made unique with "-2", "-3"…; shared by every job that saves a new model. */
export function siblingOutputPath(modelJsonPath: string, prefix: string, now: Date): string {
  const abs = path.resolve(modelJsonPath);
  const folder = path.dirname(abs);
  // model.json names its folder; other .json files are models inside a folder of their own.
  const parent = path.basename(abs) === 'model.json' ? path.dirname(folder) : folder;
  const stamp = `${now.getFullYear()}${pad2(now.getMonth() + 1)}${pad2(now.getDate())}-${pad2(now.getHours())}${pad2(now.getMinutes())}`;
  const base = path.join(parent, `${prefix}-${stamp}`);
  let candidate = base;
  for (let k = 2; fs.existsSync(candidate); k++) candidate = `${base}-${k}`;
  return candidate;
}

/**
 * Where the job saves: `outDir` when given, else `<name>-<suffix>-<stamp>`
 * next to the model. Refuses a folder that exists (never written over) and
 * a parent that does not exist or cannot be written, before any training.
 */
export async function outputFolder(o: { loaded: LoadedModel; outDir?: string; suffix: string; now?: () => Date; names: JobNames }): Promise<string> {
  const target = o.outDir ? path.resolve(o.outDir) : siblingOutputPath(o.loaded.files.modelJsonPath, `${o.loaded.summary.name}-${o.suffix}`, o.now?.() ?? new Date());
  if (fs.existsSync(target)) {
    throw new EngineError('bad-input', `${rel(target)} already exists; Layer Lens never writes over a folder. Choose another output folder.`);
  }
  const parent = path.dirname(target);
  try {
    await fs.promises.access(parent, fs.constants.W_OK);
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).code === 'ENOENT';
    throw new EngineError(
      'bad-input',
      missing
        ? `the folder ${rel(parent)}, where the ${o.names.made} model would go, does not exist; create it or choose another output folder.`
        : `cannot write into ${rel(parent)}, where the ${o.names.made} model would go (permission denied); choose another output folder.`,
    );
  }
  return target;
}

export interface TrainOptions extends Omit<LoopOptions, 'optimizer' | 'callbacks'> {
  optimizerName: OptimizerName;
  batchesPerEpoch: number;
  /** Least time between two batch progress messages. */
  throttleMs: number;
  onProgress: (p: TrainProgress) => void;
  /** After each epoch's progress (live maps). */
  afterEpoch?: (epoch: number) => Promise<void>;
}

/**
 * The loop with a fresh optimizer and progress callbacks. The optimizer is
 * handed back through `own` as soon as it exists, so that the job's finally
 * disposes it even when training throws.
 */
export async function trainWithProgress(net: Trainable, data: TrainData, o: TrainOptions, own: (optimizer: tf.Optimizer) => void): Promise<{ loop: LoopResult; metrics: EpochMetrics[] }> {
  const { optimizerName, batchesPerEpoch, throttleMs, onProgress, afterEpoch, ...loopOptions } = o;
  const optimizer = createOptimizer(optimizerName, o.learningRate);
  own(optimizer);
  const { callbacks, metrics } = progressCallbacks({ epochs: o.epochs, batchesPerEpoch, throttleMs, onProgress, afterEpoch });
  const loop = await trainLoop(net, data, { ...loopOptions, optimizer, callbacks });
  return { loop, metrics };
}

/** The metadata every saved model carries: labels, preprocessing, size, where it came from, the backend it trained on. */
export function jobMetadata(o: { outputPath: string; loaded: LoadedModel; labels: string[]; normalization: Normalization; imageSize: [number, number] }): Record<string, unknown> {
  return {
    labels: o.labels,
    normalization: o.normalization,
    imageSize: o.imageSize,
    createdBy: 'Layer Lens',
    created: new Date().toISOString(),
    sourceModel: relativeTo(o.outputPath, o.loaded.files.modelJsonPath),
  };
}

/** `p` relative to the output folder, with forward slashes (as metadata.json stores paths). */
export function relativeTo(outputPath: string, p: string): string {
  return path.relative(outputPath, p).split(path.sep).join('/');
}

export function backendName(): string {
  return currentBackend()?.name ?? tf.getBackend();
}

/**
 * Saves the trained model and `files` as a new folder, atomically: built
 * under a temporary name and renamed into place, so that a cancel, an error
 * or a kill leaves nothing. The last cancel check comes right before the
 * rename that commits it.
 */
export async function saveModelFolder(outputPath: string, model: tf.LayersModel, files: Record<string, string>, signal: AbortSignal | undefined, names: JobNames): Promise<void> {
  checkCancel(signal, names);
  const artifacts = await modelArtifacts(model);
  await writeFolderAtomic(outputPath, async (tmp) => {
    checkCancel(signal, names);
    await writeArtifacts(tmp, artifacts, { extraFiles: files });
    checkCancel(signal, names);
  });
}

/** The 'end' progress message of a finished run. */
export function endProgress(loop: LoopResult, outputPath: string, started: number, evaluation?: Evaluation): TrainProgress & { type: 'end' } {
  const seconds = (performance.now() - started) / 1000;
  return {
    type: 'end', epochsRun: loop.epochsRun, stoppedEarly: loop.stoppedEarly, monitor: loop.monitor, bestEpoch: loop.bestEpoch, bestValue: loop.bestValue,
    ...(Number.isFinite(loop.lastValue) ? { lastValue: loop.lastValue } : {}), restored: loop.restored, outputPath, seconds, ...(evaluation ? { evaluation } : {}),
  };
}

/** The validation images' outcomes under the saved weights, per class (from the loop's last validation pass of those weights). */
export function validationEvaluation(loop: LoopResult, classes: string[], pathOf: (index: number) => string): Evaluation | undefined {
  if (!loop.predictions || loop.predictions.length === 0) return undefined;
  return evaluationOf('validation', classes, loop.predictions.map((r) => ({ path: pathOf(r.index), label: r.label, predicted: r.predicted, confidence: r.confidence })));
}

/** Disposes every weight once, whichever models share it (tfjs's refcounts do not survive re-wiring a model). */
export function disposeWeights(models: (tf.LayersModel | undefined)[], extra: tf.layers.Layer[]): void {
  const seen = new Set<tf.LayerVariable>();
  for (const m of models) if (m) for (const w of m.weights) seen.add(w);
  for (const l of extra) for (const w of l.weights) seen.add(w);
  for (const w of seen) {
    try {
      w.dispose();
    } catch {
      // Already disposed through another owner.
    }
  }
}

/** Frees what a job held: the optimizer, the source model and the model it trained (with the layers it made). */
export function disposeJob(o: { loaded: LoadedModel; trained?: tf.LayersModel; created?: tf.layers.Layer[]; optimizer?: tf.Optimizer }): void {
  o.optimizer?.dispose();
  disposeWeights([o.loaded.layers, o.trained], o.created ?? []);
  o.loaded.graph?.dispose();
  void o.loaded.onnx?.release();
}
