/**
 * `layer-lens evaluate`: how a classifier does on a folder-per-class dataset,
 * per class — accuracy, the confusion matrix and the misclassified images —
 * on the same seeded validation split a fine-tune used (or every image).
 * A text table, or JSON with --json.
 */
import * as path from 'node:path';
import { evaluateModel, formatEvaluationTable } from '../engine/train/evaluate';
import { numberArg, parseCommand } from './args';
import type { CliContext } from './context';

export const evaluateUsage =
  '  evaluate <model> <dataset> [--split validation|all] [--val F] [--seed N] [--json]\n' +
  "                                  Per-class accuracy, confusion matrix and misclassified images on the\n" +
  "                                  fine-tune's seeded validation split (from the model's metadata.json)\n" +
  '                                  or on every image; class folders matched to the labels by name.\n';

export async function evaluateCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parseCommand(args, { split: { type: 'string' }, val: { type: 'string' }, seed: { type: 'string' }, json: { type: 'boolean' }, backend: { type: 'string' } });
  const ue = ctx.usageError;
  if (positionals.length !== 2) throw ue('evaluate takes a model path and a dataset folder.');
  const split = values.split;
  if (split !== undefined && split !== 'validation' && split !== 'all') throw ue(`--split ${split}: must be validation or all.`);
  const validationFraction = numberArg('--val', values.val, { min: 0, minExclusive: true, max: 0.9 }, ue);
  const seed = numberArg('--seed', values.seed, { integer: true, min: 0 }, ue);
  await ctx.startBackend(values.backend);
  const [modelJsonPath, datasetDir] = positionals.map((p) => path.resolve(p));
  const r = await evaluateModel({ modelJsonPath, datasetDir, ...(split ? { split } : {}), ...(validationFraction !== undefined ? { validationFraction } : {}), ...(seed !== undefined ? { seed } : {}) });
  if (values.json) {
    ctx.out(JSON.stringify({ splitFrom: r.splitFrom, ...(r.matched ? { matched: r.matched } : {}), validationFraction: r.validationFraction, seed: r.seed, normalization: r.normalization, ...r.evaluation, skipped: r.skipped }, null, 2));
    return 0;
  }
  ctx.out(`${path.relative(process.cwd(), modelJsonPath) || modelJsonPath} on ${r.evaluation.images.length} images of ${path.relative(process.cwd(), datasetDir) || datasetDir}: ${r.splitFrom}; preprocessing ${r.normalization}`);
  if (r.matched) ctx.out(`Note: ${r.matched}`);
  for (const s of r.skipped) ctx.out(`Skipped ${s.file}: it ${s.detail}`);
  for (const line of formatEvaluationTable(r.evaluation)) ctx.out(line);
  return 0;
}
