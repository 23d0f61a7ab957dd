/**
 * How a classifier does on a folder-per-class dataset, per class: accuracy,
 * the confusion matrix and every image's outcome (layer-lens evaluate). By
 * default on the same seeded validation split a fine-tune used: a model
 * Layer Lens fine-tuned says its split in its metadata.json (validation
 * fraction and seed), so evaluating it on its dataset scores exactly the
 * images it never trained on. The class folders are matched to the model's
 * labels by name.
 */
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { EngineError } from '../errors';
import { rel } from '../io/files';
import { inputGeometry } from '../inputGeometry';
import { disposeModel, loadModel, readSmallFile } from '../model';
import type { Normalization } from '../../protocol/model';
import { evaluationOf, type EvaluatedImage, type Evaluation, type SkippedFile } from '../../protocol/train';
import { ImageSource, InputCache, scanDataset, splitDataset } from './dataset';
import { rowPredictions } from './loop';
import { looseList, matchClasses } from './classNames';

export interface EvaluateOptions {
  modelJsonPath: string;
  datasetDir: string;
  /** 'validation' (default): the seeded validation split; 'all': every image. */
  split?: Evaluation['split'];
  /** The split's settings; default: the model's own (a Layer Lens fine-tune), else 0.2 and seed 7. */
  validationFraction?: number;
  seed?: number;
  batchSize?: number;
  signal?: AbortSignal;
}

export interface EvaluateResult {
  evaluation: Evaluation;
  /** Where the split's settings came from, in words. */
  splitFrom: string;
  /** Class folders matched to labels loosely (case, spaces, _ and -), in words, if any were. */
  matched?: string;
  validationFraction: number;
  seed: number;
  normalization: Normalization;
  skipped: SkippedFile[];
}

interface FinetuneMetadata {
  settings?: { validationFraction?: unknown; seed?: unknown; imageSize?: unknown };
}

/** Rows of outputs that are probabilities (non-negative, summing to 1) rather than logits. */
function looksLikeProbabilities(out: tf.Tensor): boolean {
  const v = out.dataSync();
  const k = out.shape[out.shape.length - 1] ?? 1;
  for (let r = 0; r * k < v.length; r++) {
    let sum = 0;
    for (let c = 0; c < k; c++) {
      if (v[r * k + c] < 0) return false;
      sum += v[r * k + c];
    }
    if (Math.abs(sum - 1) > 1e-3) return false;
  }
  return true;
}

export async function evaluateModel(o: EvaluateOptions): Promise<EvaluateResult> {
  const loaded = await loadModel(o.modelJsonPath);
  try {
    const name = rel(loaded.files.modelJsonPath);
    const labels = loaded.summary.labels;
    if (!labels || labels.length === 0) {
      throw new EngineError('bad-input', `${name} has no class labels (a metadata.json or labels.txt next to it), so its outputs cannot be matched to the dataset's class folders.`);
    }
    const metaText = await readSmallFile(loaded.files.folder, 'metadata.json');
    let meta: FinetuneMetadata = {};
    try {
      meta = metaText ? (JSON.parse(metaText) as FinetuneMetadata) : {};
    } catch {
      meta = {};
    }
    const own = meta.settings;
    const ownFraction = typeof own?.validationFraction === 'number' && own.validationFraction >= 0 && own.validationFraction < 1 ? own.validationFraction : undefined;
    const ownSeed = typeof own?.seed === 'number' && Number.isInteger(own.seed) ? own.seed : undefined;
    const validationFraction = o.validationFraction ?? ownFraction ?? 0.2;
    const seed = o.seed ?? ownSeed ?? 7;
    const split = o.split ?? 'validation';
    const splitFrom =
      split === 'all'
        ? 'every image'
        : o.validationFraction !== undefined || o.seed !== undefined
          ? `the split given (validation ${validationFraction}, seed ${seed})`
          : ownFraction !== undefined
            ? `the fine-tune's own split (validation ${validationFraction}, seed ${seed}, from its metadata.json)`
            : `the default split (validation ${validationFraction}, seed ${seed}; the model's metadata.json does not name one)`;

    const scan = await scanDataset(o.datasetDir, { signal: o.signal });
    const { map, loose } = matchClasses(scan.classes, labels);
    const unknown = scan.classes.filter((_, i) => map[i] < 0);
    if (unknown.length > 0) {
      throw new EngineError(
        'bad-dataset',
        `the class folder${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} of ${rel(scan.dir)} ${unknown.length > 1 ? 'are' : 'is'} not among ${name}'s labels (${labels.join(', ')}); evaluate on a dataset with the classes the model was trained on.`,
      );
    }
    const chosen = split === 'all' ? scan.images : splitDataset(scan, validationFraction, seed).val;
    if (chosen.length === 0) throw new EngineError('bad-dataset', `${split === 'all' ? rel(scan.dir) : `the validation split (${validationFraction}) of ${rel(scan.dir)}`} holds no image to evaluate.`);
    const images = chosen.map((im) => ({ ...im, label: map[im.label] }));

    const imageSize = Array.isArray(own?.imageSize) && own.imageSize.length === 2 ? (own.imageSize as [number, number]) : undefined;
    const geometry = inputGeometry(name, loaded.summary.inputShape, { purpose: 'finetune', imageSize });
    const normalization = loaded.summary.normalization ?? 'zeroOne';
    const skipped: SkippedFile[] = [];
    const source = new ImageSource(images, { ...geometry, normalization, classCount: labels.length, cache: new InputCache(64 * 1024 * 1024), onBadImage: (s) => skipped.push(s) });
    const predict = (xs: tf.Tensor) => (loaded.layers ? (loaded.layers.predict(xs) as tf.Tensor) : (loaded.graph!.predict(xs) as tf.Tensor));
    const onnx = loaded.onnx;
    const outcomes: EvaluatedImage[] = [];
    const order = images.map((_, i) => i);
    for await (const b of source.batches(order, o.batchSize ?? 32, o.signal)) {
      try {
        // An ONNX model runs in ONNX Runtime (asynchronous), before the tidy scope.
        const ran = onnx ? await onnx.predict({ data: (await b.xs.data()) as Float32Array, dims: b.xs.shape }) : undefined;
        tf.tidy(() => {
          const out = ran ? tf.tensor(ran.data, ran.dims) : predict(geometry.rank === 3 ? tf.squeeze(b.xs, [3]) : b.xs);
          if (out.shape[out.shape.length - 1] !== labels.length) {
            throw new EngineError('bad-input', `${name} has ${out.shape[out.shape.length - 1]} outputs but ${labels.length} labels; its labels do not describe its outputs.`);
          }
          const kind = looksLikeProbabilities(out) ? 'probabilities' : 'logits';
          for (const r of rowPredictions(out, b.ys, kind, b.indices, 0)) outcomes.push({ path: images[r.index].file, label: r.label, predicted: r.predicted, confidence: r.confidence });
        });
      } finally {
        b.xs.dispose();
        b.ys.dispose();
      }
    }
    const matched = loose.length > 0 ? `class folders matched to labels ignoring case, spaces, _ and -: ${looseList(loose)}` : undefined;
    return { evaluation: evaluationOf(split, labels, outcomes), splitFrom, ...(matched ? { matched } : {}), validationFraction, seed, normalization, skipped };
  } finally {
    disposeModel(loaded);
  }
}

/** The evaluation as a terminal shows it: per-class accuracy, the confusion matrix, the misclassified images. */
export function formatEvaluationTable(e: Evaluation, showPath: (p: string) => string = (p) => path.relative(process.cwd(), p) || p): string[] {
  const w = Math.max(5, ...e.classes.map((c) => c.length));
  const cell = Math.max(5, ...e.confusion.flat().map((n) => String(n).length + 1));
  const lines = ['Per class:', `  ${'class'.padEnd(w)}  images  correct  accuracy`];
  for (const p of e.perClass) lines.push(`  ${p.name.padEnd(w)}  ${String(p.images).padStart(6)}  ${String(p.correct).padStart(7)}  ${Number.isFinite(p.accuracy) ? p.accuracy.toFixed(3).padStart(8) : '       -'}`);
  const correct = e.perClass.reduce((a, p) => a + p.correct, 0);
  lines.push(`  ${'all'.padEnd(w)}  ${String(e.images.length).padStart(6)}  ${String(correct).padStart(7)}  ${e.accuracy.toFixed(3).padStart(8)}`);
  lines.push('', 'Confusion matrix (rows: true class, columns: predicted):');
  lines.push(`  ${''.padEnd(w)}${e.classes.map((_, i) => String(i + 1).padStart(cell)).join('')}`);
  e.confusion.forEach((row, i) => lines.push(`  ${`${i + 1} ${e.classes[i]}`.slice(0, w + 2).padEnd(w)}${row.map((n) => String(n).padStart(cell)).join('')}`));
  const wrong = e.images.filter((im) => im.predicted !== im.label).sort((a, b) => b.confidence - a.confidence);
  lines.push('', wrong.length === 0 ? 'No image misclassified.' : `Misclassified (${wrong.length}, most confident first):`);
  for (const im of wrong.slice(0, 50)) lines.push(`  ${showPath(im.path)}  ${e.classes[im.label]} -> ${e.classes[im.predicted]} ${im.confidence.toFixed(3)}`);
  if (wrong.length > 50) lines.push(`  … and ${wrong.length - 50} more (--json lists them all)`);
  return lines;
}
