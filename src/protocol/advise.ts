/**
 * The advisor's report (worker -> host and CLI): its types, its thresholds
 * and its Markdown form. The rule that picks the recommendation is in
 * src/engine/embed/advisor.ts.
 */
export type Recommendation = 'freeze-all' | 'freeze-early' | 'fine-tune-all';

/**
 * The advisor's thresholds. Images per class is the smallest class (the one
 * that overfits first); similarity is the linear probe's accuracy on the
 * frozen embeddings, corrected for chance: (acc - 1/k) / (1 - 1/k), 0 for
 * chance, 1 for perfect. The rule is adviseFreeze (src/engine/embed/advisor.ts).
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
    r.plan.length > 0 ? `Freeze up to \`${r.planUpTo}\`: ${r.plan.length} entr${r.plan.length === 1 ? 'y' : 'ies'} in layerlens.json (${r.plan.slice(0, 8).map((p) => `\`${p}\``).join(', ')}${r.plan.length > 8 ? ', …' : ''}).` : /\.onnx$/i.test(r.modelPath) ? 'Train a new head on the frozen ONNX backbone (Fine-Tune does; ONNX Runtime cannot train the backbone, so there is no freeze plan to write).' : 'Freeze nothing.',
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

