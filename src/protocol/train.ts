/**
 * Fine-tuning as it travels from the engine (worker or CLI) to whoever shows
 * it: the progress stream, the final result, and the one formatter that turns
 * both into the Keras-like lines of the output channel and the terminal, so
 * that the two never drift apart. Plain data; no tfjs, no vscode, no DOM.
 */
import type { z } from 'zod';
import type { LayerMaps } from './inspect';
import type { Normalization } from './model';
import type { AugmentSettings, finetuneSchema } from './recipe';

/** Settings as a caller may write them (defaults filled in by the engine). */
export type FinetuneSettingsInput = z.input<typeof finetuneSchema>;

export type MonitorName = 'val_loss' | 'val_acc' | 'loss' | 'acc';

/**
 * Why a dataset file takes no part in training: not an image, unreadable,
 * a damaged image, lying next to the class folders, a second link to a file
 * or folder already read (each is read once), or a folder nested deeper than
 * the scan reads.
 */
export type SkipReason = 'not-an-image' | 'unreadable' | 'corrupt' | 'outside-class' | 'duplicate' | 'too-deep';

export interface SkippedFile {
  /** Path relative to the dataset folder. */
  file: string;
  reason: SkipReason;
  /** The cause, in words (the decoder's or the file system's message). */
  detail: string;
}

export interface ClassCount {
  name: string;
  /** Usable images in the class folder. */
  images: number;
  train: number;
  val: number;
}

export interface TrainStart {
  type: 'start';
  /** Which job (absent: a fine-tune). */
  job?: 'finetune' | 'pretext';
  modelPath: string;
  datasetDir: string;
  classes: ClassCount[];
  trainSize: number;
  valSize: number;
  validationFraction: number;
  seed: number;
  epochs: number;
  batchSize: number;
  batchesPerEpoch: number;
  optimizer: string;
  learningRate: number;
  imageSize: [number, number];
  normalization: Normalization;
  /** Where `normalization` came from, in words (the recipe, the model's metadata, its own Rescaling layer…). */
  normalizationFrom?: string;
  /** Files left out, with the reason for each. */
  skipped: SkippedFile[];
  /** Frozen layer paths (as the plan named them) and the parameters they hold. */
  frozen: { paths: string[]; params: number };
  trainableParams: number;
  totalParams: number;
  /** What happens to the classification head. */
  head: { replaced: boolean; cutLayer: string; units: number; reason: string };
  /** E.g. "flip+rotate(15)", or "none". */
  augment: string;
  /** True when the frozen backbone's outputs are computed once and reused. */
  embeddingCache: boolean;
  /** Threads computing each step, each on its share of the batch (absent: 1). */
  threads?: number;
  /** How a step computes its gradients and its memory ("Step: compiled …"; absent with a cached backbone). */
  step?: string;
  warnings: string[];
}

export interface TrainBatch {
  type: 'batch';
  /** 1-based, as printed. */
  epoch: number;
  epochs: number;
  /** 1-based, as printed. */
  batch: number;
  batches: number;
  /** Running means over the epoch so far. */
  loss: number;
  acc: number;
  imagesPerSec: number;
  /** Seconds until the whole run ends, estimated. */
  etaSec: number;
}

/** One row of metrics.json / metrics.csv. Keras's names for Keras's quantities. */
export interface EpochMetrics {
  /** 1-based. */
  epoch: number;
  loss: number;
  acc: number;
  val_loss?: number;
  val_acc?: number;
  /** Learning rate used during this epoch. */
  lr: number;
  imagesPerSec: number;
  seconds: number;
}

export interface TrainEpoch {
  type: 'epoch';
  epochs: number;
  batches: number;
  metrics: EpochMetrics;
  etaSec: number;
  /** The monitored quantity improved in this epoch. */
  improved: boolean;
}

export interface TrainWarning {
  type: 'warning';
  message: string;
}

export interface TrainEnd {
  type: 'end';
  epochsRun: number;
  stoppedEarly: boolean;
  monitor: MonitorName;
  bestEpoch: number;
  bestValue: number;
  /** The monitored value of the last epoch run (what the saved model would score had the last epoch been kept). */
  lastValue?: number;
  /** The best epoch's weights were written back before saving. */
  restored: boolean;
  outputPath: string;
  seconds: number;
  /** How the saved model does on the validation images, per class (absent without a validation set). */
  evaluation?: Evaluation;
}

/** One image's outcome under the saved model. */
export interface EvaluatedImage {
  path: string;
  /** Index into Evaluation.classes. */
  label: number;
  predicted: number;
  /** The predicted class's probability. */
  confidence: number;
}

/** Per-class results of a model on a set of labelled images (the fine-tune's validation split). */
export interface Evaluation {
  /** Which images: the seeded validation split, or every image of the dataset. */
  split: 'validation' | 'all';
  classes: string[];
  /** confusion[true][predicted]: image counts. */
  confusion: number[][];
  accuracy: number;
  perClass: { name: string; images: number; correct: number; accuracy: number }[];
  /** Every image, in the split's order; the misclassified are those with predicted ≠ label. */
  images: EvaluatedImage[];
}

/** Builds the evaluation from per-image outcomes. */
export function evaluationOf(split: Evaluation['split'], classes: string[], images: EvaluatedImage[]): Evaluation {
  const k = classes.length;
  const confusion = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  for (const im of images) if (im.label >= 0 && im.label < k && im.predicted >= 0 && im.predicted < k) confusion[im.label][im.predicted]++;
  const perClass = classes.map((name, c) => {
    const n = confusion[c].reduce((a, b) => a + b, 0);
    return { name, images: n, correct: confusion[c][c], accuracy: n > 0 ? confusion[c][c] / n : NaN };
  });
  const correct = perClass.reduce((a, p) => a + p.correct, 0);
  return { split, classes, confusion, accuracy: images.length > 0 ? correct / images.length : NaN, perClass, images };
}

/** The misclassified images, most confident first. */
export function misclassified(e: Evaluation): EvaluatedImage[] {
  return e.images.filter((im) => im.predicted !== im.label).sort((a, b) => b.confidence - a.confidence);
}

/** "Validation: 36/48 correct (0.750); per class: red 15/16, green 12/16, blue 9/16" and the most confident mistakes. */
export function formatEvaluationLines(e: Evaluation, showPath: (p: string) => string = (x) => x): string[] {
  const correct = e.perClass.reduce((a, p) => a + p.correct, 0);
  const what = e.split === 'validation' ? 'Validation' : 'All images';
  const lines = [`${what}: ${correct}/${e.images.length} correct (${num(e.accuracy)}); per class: ${nameList(e.perClass.map((p) => `${p.name} ${p.correct}/${p.images}`), 12)}`];
  const wrong = misclassified(e);
  if (wrong.length > 0) {
    const shown = wrong.slice(0, 3).map((im) => `${showPath(im.path)} (${e.classes[im.label]}) as ${e.classes[im.predicted]} ${im.confidence.toFixed(2)}`);
    lines.push(`Misclassified: ${wrong.length}; most confident: ${shown.join(', ')}${wrong.length > 3 ? ', …' : ''}`);
  }
  return lines;
}

/** The probe image's maps of the watched layer, before training (epoch 0) and after each epoch (live maps). */
export interface TrainProbe {
  type: 'probe';
  /** 0 before the first epoch, else the epoch just finished (1-based). */
  epoch: number;
  epochs: number;
  imagePath: string;
  layerPath: string;
  maps: LayerMaps;
  /** Time the probe took. */
  ms: number;
  /** Nothing before this layer trains (a frozen backbone): these maps stay as they are for the whole run. */
  unchanging?: boolean;
}

export type TrainProgress = TrainStart | TrainBatch | TrainEpoch | TrainWarning | TrainEnd | TrainProbe;

export interface FinetuneResult {
  outputPath: string;
  /** The saved model file inside outputPath when it is not model.json (an ONNX fine-tune saves one .onnx). */
  modelPath?: string;
  labels: string[];
  metrics: EpochMetrics[];
  epochsRun: number;
  stoppedEarly: boolean;
  monitor: MonitorName;
  bestEpoch: number;
  bestValue: number;
  restored: boolean;
  trainSize: number;
  valSize: number;
  skipped: SkippedFile[];
  embeddingCache: boolean;
  seconds: number;
  /** The saved model on the validation images (as TrainEnd.evaluation). */
  evaluation?: Evaluation;
}

/** 46 -> "0:46", 3725 -> "1:02:05"; unknown -> "?". */
export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec) || sec < 0) return '?';
  const s = Math.round(sec);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${r}` : `${m}:${r}`;
}

const num = (v: number) => (Number.isFinite(v) ? v.toFixed(3) : String(v));
const rate = (v: number) => `${v >= 100 ? Math.round(v) : v.toFixed(1)} img/s`;
const count = (n: number) => n.toLocaleString('en-US');

/** "Epoch 2/10  38/38  loss 0.588  acc 0.701  val_loss 0.552  val_acc 0.750  219 img/s  ETA 0:46" */
export function formatEpochLine(p: TrainEpoch): string {
  const m = p.metrics;
  const parts = [`Epoch ${m.epoch}/${p.epochs}`, `${p.batches}/${p.batches}`, `loss ${num(m.loss)}`, `acc ${num(m.acc)}`];
  if (m.val_loss !== undefined) parts.push(`val_loss ${num(m.val_loss)}`);
  if (m.val_acc !== undefined) parts.push(`val_acc ${num(m.val_acc)}`);
  parts.push(rate(m.imagesPerSec), `ETA ${formatDuration(p.etaSec)}`);
  return parts.join('  ');
}

/** The same line mid-epoch (a progress bar's text). */
export function formatBatchLine(p: TrainBatch): string {
  return [`Epoch ${p.epoch}/${p.epochs}`, `${p.batch}/${p.batches}`, `loss ${num(p.loss)}`, `acc ${num(p.acc)}`, rate(p.imagesPerSec), `ETA ${formatDuration(p.etaSec)}`].join('  ');
}

/** At most `max` names, then "and N more": MobileNet has 150 frozen layers. */
function nameList(names: string[], max = 6): string {
  if (names.length <= max) return names.join(', ');
  return `${names.slice(0, max).join(', ')} and ${names.length - max} more`;
}

function skippedSummary(skipped: SkippedFile[]): string[] {
  const lines: string[] = [];
  const by = (r: SkipReason) => skipped.filter((s) => s.reason === r);
  const corrupt = by('corrupt');
  const unreadable = by('unreadable');
  const other = by('not-an-image');
  const outside = by('outside-class');
  const duplicate = by('duplicate');
  const deep = by('too-deep');
  if (corrupt.length > 0) lines.push(`Skipped ${corrupt.length} corrupt image${corrupt.length > 1 ? 's' : ''}: ${nameList(corrupt.map((s) => `${s.file} ${s.detail}`), 10)}`);
  if (unreadable.length > 0) lines.push(`Skipped ${unreadable.length} unreadable file${unreadable.length > 1 ? 's' : ''}: ${nameList(unreadable.map((s) => `${s.file} ${s.detail}`), 10)}`);
  if (other.length > 0) lines.push(`Ignored ${other.length} file${other.length > 1 ? 's' : ''} that are not PNG or JPEG images: ${nameList(other.map((s) => s.file))}`);
  if (outside.length > 0) lines.push(`Ignored ${outside.length} file${outside.length > 1 ? 's' : ''} outside the class folders: ${nameList(outside.map((s) => s.file))}`);
  if (duplicate.length > 0) lines.push(`Read once ${duplicate.length} linked cop${duplicate.length > 1 ? 'ies' : 'y'} of files or folders already read: ${nameList(duplicate.map((s) => `${s.file} ${s.detail}`), 6)}`);
  if (deep.length > 0) lines.push(`Not read: ${deep.length} folder${deep.length > 1 ? 's' : ''} nested too deep: ${nameList(deep.map((s) => `${s.file} ${s.detail}`), 6)}`);
  return lines;
}

/** The lines that open a run, in the output channel's words. */
export function formatStartLines(p: TrainStart): string[] {
  const classes = `${p.classes.length} classes (${nameList(p.classes.map((c) => `${c.name} ${c.images}`), 12)} images)`;
  const val = p.valSize > 0 ? `val ${Math.round(p.validationFraction * 100)}% seeded ${p.seed}` : `no validation set, seed ${p.seed}`;
  const lines = [
    p.job === 'pretext' ? `Rotation pretext: ${p.trainSize / 4} unlabelled images, each turned 0/90/180/270 degrees, ${val}` : `Fine-tune: ${classes}, ${val}, augment ${p.augment}`,
    `Data: ${count(p.trainSize)} train / ${count(p.valSize)} val images at ${p.imageSize[0]}x${p.imageSize[1]} (${p.normalization}); ${p.epochs} epochs of ${p.batchesPerEpoch} batches of ${p.batchSize}; ${p.optimizer} lr ${p.learningRate}${(p.threads ?? 1) > 1 ? `; ${p.threads} threads` : ''}`,
  ];
  if (p.normalizationFrom) lines.push(`Pixels: ${p.normalization} from ${p.normalizationFrom}`);
  lines.push(
    p.head.replaced
      ? `Head: new Dense(${p.head.units}, softmax) after ${p.head.cutLayer} (${p.head.reason})`
      : `Head: kept (${p.head.reason})`,
  );
  const frozen = p.frozen.paths.length > 0 ? `Frozen: ${nameList(p.frozen.paths)} (${count(p.frozen.params)} params)` : 'Frozen: none';
  lines.push(`${frozen}; training ${count(p.trainableParams)} params${p.embeddingCache ? '; backbone outputs cached after epoch 1' : ''}`);
  if (p.step) lines.push(p.step);
  lines.push(...skippedSummary(p.skipped));
  lines.push(...p.warnings);
  return lines;
}

/** "Best val_acc 0.917 at epoch 7; saved its weights (epoch 10, the last, scored 0.850). Saved demo/shapes-cnn-finetuned-20261127-1842/" */
export function formatEndLine(p: TrainEnd, showPath: (p: string) => string = (x) => x): string {
  const stopped = p.stoppedEarly ? `Stopped early after epoch ${p.epochsRun}. ` : '';
  const last = p.lastValue !== undefined ? ` (epoch ${p.epochsRun}, the last, scored ${num(p.lastValue)})` : '';
  const kept = p.restored ? `; saved its weights${last}` : p.bestEpoch === p.epochsRun ? ' (the last)' : `; kept epoch ${p.epochsRun}'s weights as the recipe asks ("keep": "last")`;
  const out = showPath(p.outputPath);
  return `${stopped}Best ${p.monitor} ${num(p.bestValue)} at epoch ${p.bestEpoch}${kept}. Saved ${out.endsWith('/') ? out : out + '/'}`;
}

/** The message with its paths as a user reads them (workspace-relative), for a view that cannot shorten them itself. */
export function withShownPaths(p: TrainProgress, showPath: (p: string) => string): TrainProgress {
  if (p.type === 'start') return { ...p, modelPath: showPath(p.modelPath), datasetDir: showPath(p.datasetDir) };
  if (p.type === 'end') return { ...p, outputPath: showPath(p.outputPath) };
  return p;
}

/** Every line a progress message prints (batch messages print none: they drive a bar). */
export function formatProgress(p: TrainProgress, showPath?: (p: string) => string): string[] {
  switch (p.type) {
    case 'start':
      return formatStartLines(p);
    case 'batch':
    case 'probe':
      return [];
    case 'epoch':
      return [formatEpochLine(p)];
    case 'warning':
      return [p.message];
    case 'end':
      return [...(p.evaluation ? formatEvaluationLines(p.evaluation, showPath) : []), formatEndLine(p, showPath)];
  }
}

/** "flip+rotate(15)+zoom(0.1)", or "none". */
export function augmentSummary(a: AugmentSettings): string {
  const parts: string[] = [];
  if (a.flip.enabled) parts.push('flip');
  if (a.rotate.enabled) parts.push(`rotate(${a.rotate.degrees})`);
  if (a.zoom.enabled) parts.push(`zoom(${a.zoom.amount})`);
  if (a.brightness.enabled) parts.push(`brightness(${a.brightness.amount})`);
  if (a.contrast.enabled) parts.push(`contrast(${a.contrast.amount})`);
  return parts.length > 0 ? parts.join('+') : 'none';
}

/** metrics.csv: one row per epoch, empty cells where there was no validation set. */
export function metricsCsv(rows: EpochMetrics[]): string {
  const header = 'epoch,loss,acc,val_loss,val_acc,lr,images_per_sec,seconds';
  const cell = (v: number | undefined) => (v === undefined ? '' : String(v));
  const body = rows.map((r) => [r.epoch, r.loss, r.acc, r.val_loss, r.val_acc, r.lr, r.imagesPerSec, r.seconds].map(cell).join(','));
  return [header, ...body].join('\n') + '\n';
}
