/**
 * `layer-lens embed` and `layer-lens advise`: embeddings of an image folder
 * (cached on disk next to the model, exportable for TensorBoard's Projector,
 * projectable to 2-D) and the freeze-or-fine-tune report, in a terminal.
 * src/cli/main.ts routes here.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { computeEmbeddings } from '../engine/embed/compute';
import { adviseOn, EmbeddingSets, exportProjector, projectSet } from '../engine/embed/latent';
import { projectorFiles } from '../engine/embed/tsv';
import { OutputFolder, prepareOutputFile, writeOutputFile } from '../engine/io/output';
import { disposeModel, loadModel } from '../engine/model';
import { readRecipe } from '../engine/recipe';
import { formatAdvisorReport } from '../protocol/advise';
import type { EmbedProgress, ProjectionMethod } from '../protocol/embed';
import { isNormalization, normalizations, type Normalization } from '../protocol/model';
import { numberArg, parseCommand } from './args';
import type { CliContext } from './context';
import { interruptible } from './interrupt';

export const embedUsage =
  '  embed <model> <images> [--layer <path>] [--normalization zeroOne|minusOneOne|imagenet|raw]\n' +
  '        [--tsv <dir>] [--map pca|umap [--out map.json]] [--json] [--force]\n' +
  '                                  Embeddings of a folder (one sub-folder per class, or flat) at a layer\n' +
  '                                  (default: the last feature layer), cached in .layerlens/embeddings/\n' +
  '                                  next to the model; --tsv writes vectors.tsv + metadata.tsv for the\n' +
  '                                  TensorBoard Projector; --map projects to 2-D. Existing files are\n' +
  '                                  not replaced without --force.\n' +
  '  advise <model> <dataset> [--seed N] [--json]\n' +
  '                                  Freeze or fine-tune? Images per class, a linear probe on the cached\n' +
  '                                  embeddings, class separation, and the recommended freeze plan.\n';


function shown(p: string): string {
  const r = path.relative(process.cwd(), p);
  return r && !r.startsWith('..') && !path.isAbsolute(r) ? r : p;
}

function progressPrinter(): (p: EmbedProgress) => void {
  const tty = process.stderr.isTTY === true;
  return (p) => {
    if (!tty) return;
    const text = p.type === 'embed' ? `embedding ${p.done}/${p.total}${p.reused ? ` (${p.reused} cached)` : ''}` : p.type === 'project' ? `${p.method} ${p.done}/${p.total}` : p.type === 'scan' ? `${p.files} images` : p.message;
    process.stderr.write(`\r\x1b[2K${text}`);
  };
}

function clearLine(): void {
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[2K');
}

export async function embedCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parseCommand(args, {
    layer: { type: 'string' },
    normalization: { type: 'string' },
    tsv: { type: 'string' },
    map: { type: 'string' },
    out: { type: 'string' },
    json: { type: 'boolean' },
    force: { type: 'boolean' },
    backend: { type: 'string' },
  });
  if (positionals.length !== 2) throw ctx.usageError('embed takes a model path and an image folder.');
  const norm = values.normalization;
  if (norm !== undefined && !isNormalization(norm)) throw ctx.usageError(`--normalization must be one of ${normalizations.join(', ')}.`);
  const method = values.map;
  if (method !== undefined && method !== 'pca' && method !== 'umap') throw ctx.usageError('--map must be pca or umap.');
  if (values.out !== undefined && method === undefined) throw ctx.usageError('--out goes with --map.');
  const force = values.force;
  await ctx.startBackend(values.backend);
  const [modelJsonPath, dir] = positionals.map((p) => path.resolve(p));
  const loaded = await loadModel(modelJsonPath);
  const cancel = interruptible();
  // Every output place is checked before the embeddings are computed.
  try {
    if (values.tsv !== undefined) await OutputFolder.prepare(values.tsv, { files: projectorFiles, force, flag: '--tsv' });
    if (values.out !== undefined) await prepareOutputFile(values.out, { force, flag: '--out' });
  } catch (e) {
    cancel.dispose();
    disposeModel(loaded);
    throw e;
  }
  try {
    // Default preprocessing as Fine-Tune's: the recipe's, else the model's metadata (so both share the cache).
    const recipeNorm = await readRecipe(modelJsonPath, { rows: loaded.summary.layers }).then((r) => r.recipe.finetune.normalization, () => undefined);
    const set = await computeEmbeddings({ loaded, datasetDir: dir, layer: values.layer, normalization: (norm as Normalization | undefined) ?? recipeNorm, signal: cancel.signal, onProgress: progressPrinter() });
    clearLine();
    const s = set.summary;
    for (const k of s.skipped) process.stderr.write(`layer-lens: warning: skipped ${k.file}: ${k.detail}\n`);
    for (const w of s.warnings ?? []) process.stderr.write(`layer-lens: warning: ${w}\n`);
    const held = new EmbeddingSets().add(set);
    const lines = [
      `Embeddings of ${shown(s.datasetDir)} at ${s.layer}: ${s.count} images, ${s.dim} values each${s.pooling === 'mean' ? ' (feature map averaged over space)' : ''}, ${s.normalization}, ${s.imageSize[0]}x${s.imageSize[1]}`,
      s.classes ? `Classes: ${s.classes.map((c, i) => `${c} ${s.counts[i]}`).join(', ')}` : 'No classes (a flat folder)',
      `${s.computed} computed, ${s.reused} reused, ${s.dropped} dropped in ${s.seconds.toFixed(2)} s; cache ${shown(s.cacheDir)}`,
    ];
    let mapInfo: Record<string, unknown> | undefined;
    if (values.tsv !== undefined) {
      const t = await exportProjector(held, path.resolve(values.tsv), { force });
      lines.push(`Projector files: ${shown(t.vectors)}, ${shown(t.metadata)}`);
    }
    if (method !== undefined) {
      const map = await projectSet(held, { ...s, setId: held.id }, method as ProjectionMethod, { seed: 7, signal: cancel.signal, onProgress: progressPrinter() });
      clearLine();
      lines.push(`${method.toUpperCase()} to 2-D in ${map.projectionMs} ms${map.explained ? ` (axes explain ${(map.explained[0] * 100).toFixed(1)}% and ${(map.explained[1] * 100).toFixed(1)}%)` : ''}`);
      mapInfo = { method, projectionMs: map.projectionMs, explained: map.explained };
      if (values.out !== undefined) {
        const json = { method, classes: s.classes, points: map.paths.map((p, i) => ({ path: p, label: map.labels[i], x: map.xy[2 * i], y: map.xy[2 * i + 1] })) };
        await writeOutputFile(values.out, JSON.stringify(json) + '\n', { force, flag: '--out' });
        lines.push(`Map: ${shown(path.resolve(values.out))}`);
      }
    }
    if (values.json) ctx.out(JSON.stringify({ ...s, ...(mapInfo ? { map: mapInfo } : {}) }, null, 2));
    else for (const l of lines) ctx.out(l);
    return 0;
  } finally {
    clearLine();
    cancel.dispose();
    disposeModel(loaded);
  }
}

export async function adviseCommand(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parseCommand(args, { seed: { type: 'string' }, json: { type: 'boolean' }, backend: { type: 'string' } });
  if (positionals.length !== 2) throw ctx.usageError('advise takes a model path and a dataset folder (one sub-folder per class).');
  const seed = numberArg('--seed', values.seed, { integer: true, min: 0 }, ctx.usageError);
  await ctx.startBackend(values.backend);
  const [modelJsonPath, dir] = positionals.map((p) => path.resolve(p));
  const loaded = await loadModel(modelJsonPath);
  const cancel = interruptible();
  try {
    const recipe = fs.existsSync(modelJsonPath) ? (await readRecipe(modelJsonPath, { rows: loaded.summary.layers })).recipe : undefined;
    const set = await computeEmbeddings({ loaded, datasetDir: dir, normalization: recipe?.finetune.normalization, signal: cancel.signal, onProgress: progressPrinter() });
    clearLine();
    const held = new EmbeddingSets().add(set);
    const report = adviseOn(loaded, held, { seed: seed ?? recipe?.finetune.seed ?? 7, learningRate: recipe?.finetune.learningRate ?? 0.001 });
    ctx.out(values.json ? JSON.stringify(report, null, 2) : formatAdvisorReport(report, shown));
    return 0;
  } finally {
    clearLine();
    cancel.dispose();
    disposeModel(loaded);
  }
}
