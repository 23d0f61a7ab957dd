/**
 * The advisor's rule: from the smallest class's size and the chance-corrected
 * probe accuracy to a recommendation, with its reasons. Pure; the
 * measurements are in advisor.ts, the thresholds in src/protocol/advise.ts.
 */
import { advisorThresholds, type Advice, type Recommendation, type SimilarityClass, type SizeClass } from '../../protocol/advise';

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

