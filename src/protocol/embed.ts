/**
 * Embeddings, the latent-space map and the freeze-or-fine-tune advisor as
 * they travel between the engine (worker or CLI), the host and the webview.
 * Plain data and pure formatting; no tfjs, no Node, no vscode, no DOM.
 */
import type { Normalization } from './model';

export type ProjectionMethod = 'pca' | 'umap';

/** Progress of an embedding job: files scanned, then images embedded, then the projection. */
export type EmbedProgress =
  | { type: 'scan'; files: number }
  | { type: 'embed'; done: number; total: number; reused: number }
  | { type: 'project'; method: ProjectionMethod; done: number; total: number }
  | { type: 'probe'; message: string };

/** What an embedding request names: a model, a folder of images, and optionally the layer and preprocessing. */
export interface EmbedParams {
  modelPath: string;
  datasetDir: string;
  /** Layer path; default: the last feature layer. */
  layer?: string;
  /** Default: the model's metadata, else [0, 1]. */
  normalization?: Normalization;
}

/** What identifies one set of embeddings (the cache key and what the manifest records). */
export interface EmbeddingKey {
  /** Layer path as in the layer table. */
  layer: string;
  normalization: Normalization;
  /** [height, width] the images were resized to. */
  imageSize: [number, number];
  /** How a feature map was turned into a vector: kept whole, or averaged over space (large maps). */
  pooling: 'none' | 'mean';
}

/** Summary of a computed (or reused) set of embeddings. */
export interface EmbeddingSummary extends EmbeddingKey {
  /** Worker-side handle for follow-up requests (neighbours, thumbnails, export). */
  setId: string;
  modelPath: string;
  datasetDir: string;
  /** The on-disk cache folder. */
  cacheDir: string;
  /** Values per embedding. */
  dim: number;
  /** One embedding's shape as the layer outputs it (before pooling). */
  featureShape: number[];
  count: number;
  /** Class names for folder-per-class datasets; null for a flat folder. */
  classes: string[] | null;
  /** Images per class (same order as classes). */
  counts: number[];
  computed: number;
  reused: number;
  dropped: number;
  /** Images that could not be decoded, relative paths with the reason. */
  skipped: { file: string; detail: string }[];
  seconds: number;
}

/** The 2-D map of a set: positions, labels and paths, index-aligned. */
export interface LatentMap {
  summary: EmbeddingSummary;
  method: ProjectionMethod;
  /** x0, y0, x1, y1, … (n * 2). */
  xy: Float32Array;
  /** Class index per point; -1 for a flat folder. */
  labels: Int32Array;
  /** Paths relative to the dataset folder, "/"-separated. */
  paths: string[];
  /** PCA: the fraction of variance each axis explains. */
  explained?: [number, number];
  projectionMs: number;
}

export interface Neighbor {
  index: number;
  path: string;
  label: number;
  /** Cosine similarity in the original embedding space. */
  similarity: number;
}

export interface Thumbnail {
  index: number;
  path: string;
  /** Absolute path (for openImage). */
  absPath: string;
  /** data:image/png;base64,… */
  dataUrl: string;
}

export interface TsvExport {
  vectors: string;
  metadata: string;
  rows: number;
}

// ---------------------------------------------------------------------------
// Advisor

export type Recommendation = 'freeze-all' | 'freeze-early' | 'fine-tune-all';

/**
 * The advisor's thresholds. Images per class is the smallest class (the one
 * that overfits first); similarity is the linear probe's accuracy on the
 * frozen embeddings, corrected for chance: (acc - 1/k) / (1 - 1/k), 0 for
 * chance, 1 for perfect. See adviseFreeze for the rule.
 */
export const advisorThresholds = {
  /** Below this many images in the smallest class, the dataset is small. */
  smallPerClass: 100,
  /** From this many images in the smallest class on, the dataset is large. */
  largePerClass: 1000,
  /** From this chance-corrected probe accuracy on, the data is similar to what the backbone knows. */
  similar: 0.8,
  /** Below this, the data is different. */
  different: 0.5,
} as const;

export type SizeClass = 'small' | 'medium' | 'large';
export type SimilarityClass = 'similar' | 'somewhat' | 'different';

export interface Advice {
  recommendation: Recommendation;
  size: SizeClass;
  similarity: SimilarityClass;
  /** Learning rate factor to apply to the recipe's rate (1 = unchanged). */
  learningRateFactor: number;
  reasons: string[];
}

export function sizeClass(imagesPerClass: number): SizeClass {
  if (imagesPerClass < advisorThresholds.smallPerClass) return 'small';
  if (imagesPerClass < advisorThresholds.largePerClass) return 'medium';
  return 'large';
}

export function similarityClass(similarity: number): SimilarityClass {
  if (similarity >= advisorThresholds.similar) return 'similar';
  if (similarity >= advisorThresholds.different) return 'somewhat';
  return 'different';
}

/**
 * The rule, a pure function of the smallest class's size and the
 * chance-corrected probe accuracy (the classic transfer-learning table):
 *
 * | size \ similarity | similar (≥ 0.8)      | somewhat (0.5–0.8) | different (< 0.5)        |
 * |-------------------|----------------------|--------------------|--------------------------|
 * | small (< 100)     | freeze all, new head | freeze all         | freeze early blocks      |
 * | medium (< 1000)   | freeze all           | freeze early       | freeze early blocks      |
 * | large (≥ 1000)    | fine-tune all, lr/10 | fine-tune all, lr/10 | fine-tune all, lr/10   |
 *
 * Few images cannot retrain millions of weights without overfitting, so a
 * small dataset keeps the backbone; when its features do not separate the
 * classes (different data), the later, task-specific blocks must adapt, so
 * only the early, generic blocks stay frozen. A large dataset can afford to
 * adapt everything; a lower learning rate keeps the pretrained features from
 * being wiped out in the first epochs.
 */
export function adviseFreeze(imagesPerClass: number, similarity: number): Advice {
  const size = sizeClass(imagesPerClass);
  const sim = similarityClass(similarity);
  const t = advisorThresholds;
  const pct = (x: number) => `${Math.round(x * 100)}%`;
  const sizeText =
    size === 'small'
      ? `the smallest class has ${imagesPerClass} images (< ${t.smallPerClass}): too few to retrain the backbone without overfitting`
      : size === 'medium'
        ? `the smallest class has ${imagesPerClass} images (${t.smallPerClass}–${t.largePerClass - 1}): enough to adapt some layers, not all`
        : `the smallest class has ${imagesPerClass} images (≥ ${t.largePerClass}): enough to adapt every layer`;
  const simText =
    sim === 'similar'
      ? `a linear probe on the frozen features reaches ${pct(similarity)} of the way from chance to perfect (≥ ${pct(t.similar)}): the backbone already separates these classes`
      : sim === 'somewhat'
        ? `a linear probe on the frozen features reaches ${pct(similarity)} of the way from chance to perfect (${pct(t.different)}–${pct(t.similar)}): the features help but do not separate the classes`
        : `a linear probe on the frozen features reaches only ${pct(similarity)} of the way from chance to perfect (< ${pct(t.different)}): this data is unlike what the backbone learned`;
  let recommendation: Recommendation;
  let why: string;
  if (size === 'large') {
    recommendation = 'fine-tune-all';
    why = 'fine-tune every layer with a learning rate 10x lower than for a new head, so that the pretrained features are refined rather than wiped out';
  } else if (sim === 'similar' || (size === 'small' && sim === 'somewhat')) {
    recommendation = 'freeze-all';
    why = 'freeze the whole backbone and train only the new head (and the embeddings can be cached: each epoch then costs the head alone)';
  } else {
    recommendation = 'freeze-early';
    why = 'freeze the early blocks (generic edges and textures) and train the later blocks and the head, so that the task-specific features can adapt';
  }
  return { recommendation, size, similarity: sim, learningRateFactor: recommendation === 'fine-tune-all' ? 0.1 : 1, reasons: [sizeText, simText, why] };
}

export interface ClassSize {
  name: string;
  images: number;
}

export interface AdvisorReport {
  modelPath: string;
  datasetDir: string;
  /** The layer whose outputs were probed (the last feature layer). */
  layer: string;
  classes: ClassSize[];
  /** Probe accuracy on the held-out part, and chance (1 / classes). */
  probe: { accuracy: number; chance: number; trainSize: number; testSize: number; seed: number };
  /** (acc - chance) / (1 - chance), clamped to [0, 1]. */
  similarity: number;
  /** Mean silhouette (cosine) of the classes in the embedding space, on a seeded sample. */
  silhouette: number;
  /** Between-class over within-class variance (Fisher's ratio, trace form). */
  varianceRatio: number;
  advice: Advice;
  /** The freeze plan that carries the recommendation out (layer paths), and where it stops. */
  plan: string[];
  planUpTo: string | null;
  /** The learning rate to use, from the recipe's rate and the advice. */
  learningRate: { recipe: number; suggested: number };
  embeddings: { computed: number; reused: number; cacheDir: string };
}

const labelOf: Record<Recommendation, string> = {
  'freeze-all': 'Freeze the backbone, train a new head',
  'freeze-early': 'Freeze the early blocks, train the rest',
  'fine-tune-all': 'Fine-tune every layer with a lower learning rate',
};

export function recommendationLabel(r: Recommendation): string {
  return labelOf[r];
}

/** The report as Markdown (the host's preview and the CLI print the same text). */
export function formatAdvisorReport(r: AdvisorReport, show: (p: string) => string = (p) => p): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const lines = [
    `# Freeze or fine-tune? ${show(r.modelPath)}`,
    '',
    `**Recommendation: ${labelOf[r.advice.recommendation]}.**`,
    '',
    ...r.advice.reasons.map((x) => `- ${x[0].toUpperCase()}${x.slice(1)}.`),
    '',
    '## Dataset',
    '',
    `${show(r.datasetDir)}: ${r.classes.length} classes, ${r.classes.reduce((n, c) => n + c.images, 0)} images.`,
    '',
    '| class | images |',
    '|---|---:|',
    ...r.classes.map((c) => `| ${c.name.replace(/\|/g, '\\|')} | ${c.images} |`),
    '',
    `## Similarity to what the backbone knows (embeddings at \`${r.layer}\`)`,
    '',
    '| measure | value |',
    '|---|---:|',
    `| linear-probe accuracy (held out, seed ${r.probe.seed}) | ${pct(r.probe.accuracy)} (chance ${pct(r.probe.chance)}; ${r.probe.trainSize} train / ${r.probe.testSize} test) |`,
    `| similarity = (acc − chance) / (1 − chance) | ${r.similarity.toFixed(2)} (${r.advice.similarity}) |`,
    `| silhouette (cosine) | ${r.silhouette.toFixed(2)} |`,
    `| between / within class variance | ${r.varianceRatio.toFixed(2)} |`,
    '',
    '## Plan',
    '',
    r.plan.length > 0 ? `Freeze up to \`${r.planUpTo}\`: ${r.plan.length} entr${r.plan.length === 1 ? 'y' : 'ies'} in layerlens.json (${r.plan.slice(0, 8).map((p) => `\`${p}\``).join(', ')}${r.plan.length > 8 ? ', …' : ''}).` : 'Freeze nothing.',
    r.advice.learningRateFactor !== 1
      ? `Learning rate: ${r.learningRate.suggested} (the recipe's ${r.learningRate.recipe} × ${r.advice.learningRateFactor}); set \`finetune.learningRate\` in layerlens.json.`
      : `Learning rate: keep ${r.learningRate.recipe}.`,
    '',
    `Thresholds: small < ${advisorThresholds.smallPerClass} images in the smallest class, large ≥ ${advisorThresholds.largePerClass}; similar ≥ ${advisorThresholds.similar}, different < ${advisorThresholds.different}.`,
    `Embeddings: ${r.embeddings.computed} computed, ${r.embeddings.reused} reused from ${show(r.embeddings.cacheDir)}.`,
    '',
  ];
  return lines.join('\n');
}

/** Categorical colours readable on light and dark backgrounds (mid luminance, Tableau-like). */
export const latentPalette = ['#4e79a7', '#f28e2b', '#e15759', '#59a14f', '#b07aa1', '#9c755f', '#5fa8a3', '#c9a227', '#ff7fa0', '#8c8c8c'];

// ---------------------------------------------------------------------------
// Rotation pretext task

/** Class names of the rotation task, in label order (counter-clockwise turns). */
export const rotationLabels = ['rot0', 'rot90', 'rot180', 'rot270'];

export interface PretextSettings {
  epochs: number;
  /** Images per batch; each batch trains on their 4 rotations (4x as many samples). */
  batchSize: number;
  learningRate: number;
  seed: number;
  /** Fraction of the images held out to report val_acc (0 below 20 images). */
  validationFraction: number;
}

export const defaultPretextSettings: PretextSettings = { epochs: 10, batchSize: 16, learningRate: 0.002, seed: 7, validationFraction: 0.1 };

export interface PretextResult {
  outputPath: string;
  /** The layer where the backbone ends (the new head follows it). */
  cutLayer: string;
  images: number;
  trainImages: number;
  valImages: number;
  epochsRun: number;
  /** Rotation accuracy at the last epoch (train, and held out when there is a validation set). */
  acc: number;
  valAcc?: number;
  seconds: number;
}

/** What the Latent tab finds when it opens: a map the host was asked to show (the Compute Embeddings command), if any. */
export interface LatentState {
  pending: { datasetDir: string; layerPath: string | null } | null;
}
