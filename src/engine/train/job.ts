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
import { evaluationOf, type ClassCount, type EpochMetrics, type Evaluation, type TrainProgress } from '../../protocol/train';
import { currentBackend } from '../backend';
import { CancelledError, EngineError } from '../errors';
import { writeFolderAtomic } from '../io/atomic';
import { fallbackRoot } from '../io/fallbackDir';
import { rel } from '../io/files';
import { errnoOf, fsCauseOrMessage, fsError, isUnwritable } from '../io/fsErrors';
import { freeBytes, mb, prepareResultFolder } from '../io/output';
import { modelArtifacts, weightBytes, writeArtifacts } from '../io/save';
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

/** Where a job saves: the folder it plans, and whether the user named it (--out) or Layer Lens did. */
export interface OutputPlan {
  path: string;
  explicit: boolean;
}

/**
 * Where the job saves: `outDir` when given, else `<name>-<suffix>-<stamp>`
 * next to the model. Everything about the place is checked before any
 * training (io/output.ts prepareResultFolder): a folder that exists (never
 * written over), a parent that does not exist, is a file, cannot be written,
 * a name too long, a disk without room for the model's weights.
 */
export async function outputFolder(o: { loaded: LoadedModel; outDir?: string; suffix: string; now?: () => Date; names: JobNames }): Promise<OutputPlan> {
  const target = o.outDir ? path.resolve(o.outDir) : siblingOutputPath(o.loaded.files.modelJsonPath, `${o.loaded.summary.name}-${o.suffix}`, o.now?.() ?? new Date());
  const data = o.loaded.files.artifacts.weightData;
  const bytes = (Array.isArray(data) ? data.reduce((n, b) => n + b.byteLength, 0) : (data?.byteLength ?? 0)) + 1024 * 1024;
  await prepareResultFolder(target, { made: `the ${o.names.made} model`, bytes });
  return { path: target, explicit: o.outDir !== undefined };
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
 * Saves the trained model and `files(folder)` as a new folder, atomically:
 * built under a temporary name and moved into place without replacing
 * anything (io/atomic.ts placeFolder), so that a cancel, an error or a kill
 * leaves nothing. The name is taken at this moment: if another run took the
 * planned one meanwhile, "-2", "-3"… is added (a finished run never fails on
 * its name). If the planned place cannot be written any more (the disk
 * filled up, it became read-only), the model goes to Layer Lens's fallback
 * folder and `warn` says where. The last cancel check comes right before the
 * move that commits it. Returns the folder written.
 */
export async function saveModelFolder(
  plan: OutputPlan,
  model: tf.LayersModel,
  files: (folder: string) => Record<string, string>,
  signal: AbortSignal | undefined,
  names: JobNames,
  warn: (message: string) => void,
): Promise<string> {
  checkCancel(signal, names);
  const artifacts = await modelArtifacts(model);
  const need = weightBytes(artifacts).byteLength + 1024 * 1024;
  return saveResultFolder(plan, (tmp, folder) => writeArtifacts(tmp, artifacts, { extraFiles: files(folder) }), need, signal, names, warn);
}

/**
 * saveModelFolder's rules for any result: `write(tmp, folder)` fills the
 * temporary folder `tmp` that becomes `folder`; `need` is about how many
 * bytes it writes (for the message when the disk is full).
 */
export async function saveResultFolder(
  plan: OutputPlan,
  write: (tmp: string, folder: string) => Promise<void>,
  need: number,
  signal: AbortSignal | undefined,
  names: JobNames,
  warn: (message: string) => void,
): Promise<string> {
  checkCancel(signal, names);
  const fill = (folder: string) => async (tmp: string) => {
    checkCancel(signal, names);
    await write(tmp, folder);
    // Last chance to cancel: the move that follows is the commit.
    checkCancel(signal, names);
  };
  let saved: string;
  try {
    saved = await writeFolderAtomic(plan.path, fill(plan.path), { suffix: true });
  } catch (e) {
    if (e instanceof CancelledError || !isUnwritable(e)) throw fsError(e, `Saving the ${names.made} model in ${rel(path.dirname(plan.path))}`);
    const free = await freeBytes(path.dirname(plan.path));
    const why = `${fsCauseOrMessage(e)}${errnoOf(e) === 'ENOSPC' || errnoOf(e) === 'EDQUOT' ? ` (it needs about ${mb(need)}; ${free === undefined ? 'the free space is unknown' : `${mb(free)} are free`})` : ''}`;
    const fallback = path.join(fallbackRoot(), 'results', path.basename(plan.path));
    try {
      await fs.promises.mkdir(path.dirname(fallback), { recursive: true });
      saved = await writeFolderAtomic(fallback, fill(fallback), { suffix: true });
    } catch (e2) {
      if (e2 instanceof CancelledError) throw e2;
      throw new EngineError('io', `Saving the ${names.made} model in ${rel(path.dirname(plan.path))} failed: ${why}; saving it in ${path.dirname(fallback)} instead failed too (${fsCauseOrMessage(e2)}). Free some space and run again.`);
    }
    warn(`The ${names.made} model could not be saved in ${rel(path.dirname(plan.path))}: ${why}. It was saved in ${saved} instead, so the run is not lost; move it where you want it.`);
    return saved;
  }
  if (saved !== plan.path && plan.explicit) warn(`${rel(plan.path)} appeared while training ran; the ${names.made} model was saved as ${rel(saved)} instead, and nothing was replaced.`);
  return saved;
}

/** Each class's images and how the split shares them, for the 'start' message. */
export function classCounts(scan: { classes: readonly string[]; counts: readonly number[] }, split: { perClass: readonly { train: number; val: number }[] }): ClassCount[] {
  return scan.classes.map((name, i) => ({ name, images: scan.counts[i], train: split.perClass[i].train, val: split.perClass[i].val }));
}

/** What a run's loop did, as metadata.json, the result and the 'end' message all report it. */
export function loopOutcome(loop: LoopResult): Pick<LoopResult, 'epochsRun' | 'stoppedEarly' | 'monitor' | 'bestEpoch' | 'bestValue' | 'restored'> {
  return { epochsRun: loop.epochsRun, stoppedEarly: loop.stoppedEarly, monitor: loop.monitor, bestEpoch: loop.bestEpoch, bestValue: loop.bestValue, restored: loop.restored };
}

/** The 'end' progress message of a finished run. */
export function endProgress(loop: LoopResult, outputPath: string, started: number, evaluation?: Evaluation): TrainProgress & { type: 'end' } {
  const seconds = (performance.now() - started) / 1000;
  return {
    type: 'end', ...loopOutcome(loop),
    ...(Number.isFinite(loop.lastValue) ? { lastValue: loop.lastValue } : {}), outputPath, seconds, ...(evaluation ? { evaluation } : {}),
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
