/**
 * `layer-lens compare`: two models with the same input, written to a folder:
 * drift.json (per layer of A: path, matched, weight drift, activation
 * similarity (linear CKA over a set of images), shapes; the layers of each
 * side that match nothing; both models' predictions; suggestions) and one
 * side-by-side PNG per matched layer that outputs a feature map: A | B |
 * |B − A| (A and B on a shared per-channel scale in the chosen colormap, the
 * difference in magma). src/cli/main.ts routes here.
 *
 * Images for the similarity: --images <folder>, else the dataset the
 * fine-tuned model's metadata.json names (B's, then A's), else --image alone
 * (then CKA is null: it needs at least 2 images).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Comparer } from '../engine/compare/comparer';
import { listImageSet, type ImageSet } from '../engine/compare/imageSet';
import { encodePng } from '../engine/image';
import { OutputFolder } from '../engine/io/output';
import { readSmallFileSync } from '../engine/io/safeRead';
import { disposeModel, loadModel } from '../engine/model';
import { channelGrid, colormaps, isColormap, type Colormap, type GridImage } from '../protocol/colormap';
import { driftSuggestions, type CompareMaps, type LayerDrift, type SimilarityResult } from '../protocol/compare';
import { formatShape, isNormalization, normalizations, type Normalization, type Shape } from '../protocol/model';
import { numberArg, parseCommand } from './args';
import type { CliContext } from './context';

export const compareUsage =
  '  compare <model A> <model B> --image <file> --out <dir> [--images <folder>]\n' +
  '          [--max-images 32] [--normalization zeroOne|minusOneOne|imagenet|raw] [--colormap viridis|magma|gray] [--force]\n' +
  '                                  Compare two models with the same input (A = the reference, e.g. the\n' +
  '                                  original; B = e.g. its fine-tuned copy): per-layer weight drift and\n' +
  '                                  activation similarity (CKA over --images); writes drift.json and\n' +
  '                                  maps/ (A | B | |B-A| per matched feature-map layer).\n';

/** Horizontal gap between the three grids of a side-by-side PNG. */
const GAP = 6;

/** A | B | diff, top-aligned, with transparent gaps. */
export function sideBySide(grids: readonly GridImage[]): GridImage {
  const width = grids.reduce((w, g) => w + g.width, 0) + GAP * (grids.length - 1);
  const height = Math.max(...grids.map((g) => g.height));
  const rgba = new Uint8Array(width * height * 4);
  let x0 = 0;
  for (const g of grids) {
    for (let y = 0; y < g.height; y++) rgba.set(g.rgba.subarray(y * g.width * 4, (y + 1) * g.width * 4), (y * width + x0) * 4);
    x0 += g.width + GAP;
  }
  return { width, height, cols: grids.length, rows: 1, rgba };
}

/** The side-by-side PNG of one layer's CompareMaps. */
export function comparePng(maps: CompareMaps, colormap: Colormap): Uint8Array {
  const img = sideBySide([channelGrid(maps.a, colormap), channelGrid(maps.b, colormap), channelGrid(maps.diff, 'magma')]);
  return encodePng(img.width, img.height, img.rgba, 4);
}

/** The dataset folder a fine-tuned model's metadata.json names ("dataset", relative to the model folder), if it exists. */
export function metadataDataset(modelJsonPath: string): string | undefined {
  try {
    const folder = path.dirname(path.resolve(modelJsonPath));
    const meta = JSON.parse(readSmallFileSync(path.join(folder, 'metadata.json'), 1024 * 1024) ?? 'null') as { dataset?: unknown };
    if (typeof meta.dataset !== 'string' || meta.dataset.length === 0) return undefined;
    const dir = path.resolve(folder, meta.dataset);
    return fs.statSync(dir).isDirectory() ? dir : undefined;
  } catch {
    return undefined;
  }
}

function fileName(index: number, layerPath: string): string {
  return `${String(index).padStart(3, '0')}-${layerPath.replace(/[^A-Za-z0-9_.-]+/g, '_')}.png`;
}

const fmt = (v: number | null, digits = 4) => (v === null ? '—' : v === 0 ? '0' : Math.abs(v) < 1e-3 ? v.toExponential(2) : v.toFixed(digits));

export function formatCompareText(layers: readonly LayerDrift[], sim: SimilarityResult | undefined, lines: string[]): string {
  const cka = new Map((sim?.layers ?? []).map((l) => [l.path, l.cka]));
  const header = ['Layer', 'Class', 'Output', 'Weight drift', 'CKA'];
  const rows = layers.map((l) => ['  '.repeat(l.depth) + l.path.split('/').pop()! + (l.matchedBy === 'name' ? ` (B: ${l.pathB})` : ''), l.className, formatShape(l.shape), fmt(l.weightDrift), fmt(cka.get(l.path) ?? null)]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i >= 3 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line), '', ...lines].join('\n');
}

export async function compareCommand(args: string[], ctx: CliContext): Promise<void> {
  const { values, positionals } = parseCommand(args, {
    image: { type: 'string' },
    images: { type: 'string' },
    out: { type: 'string' },
    'max-images': { type: 'string' },
    normalization: { type: 'string' },
    colormap: { type: 'string' },
    force: { type: 'boolean' },
    backend: { type: 'string' },
  });
  if (positionals.length !== 2) throw ctx.usageError('compare takes two model paths: A (the reference) and B.');
  if (!values.image) throw ctx.usageError('compare needs --image <file>.');
  if (!values.out) throw ctx.usageError('compare needs --out <dir>.');
  if (values.normalization !== undefined && !isNormalization(values.normalization)) {
    throw ctx.usageError(`--normalization must be ${normalizations.join(', ')} (got "${values.normalization}").`);
  }
  const colormapArg = values.colormap ?? 'viridis';
  if (!isColormap(colormapArg)) throw ctx.usageError(`--colormap must be ${colormaps.join(', ')} (got "${values.colormap}").`);
  const maxImages = numberArg('--max-images', values['max-images'], { integer: true, min: 2, max: 1024 }, ctx.usageError) ?? 32;
  const backend = await ctx.startBackend(values.backend);

  // Before any work: the folder, what it already holds, whether it can be written.
  const outFolder = await OutputFolder.prepare(values.out, { files: ['drift.json'], folders: ['maps'], force: values.force, flag: '--out' });

  const [aPath, bPath] = positionals;
  const a = await loadModel(aPath);
  const b = path.resolve(aPath) === path.resolve(bPath) ? a : await loadModel(bPath);
  const comparer = new Comparer();
  try {
    const normalization: Normalization = (values.normalization as Normalization | undefined) ?? b.summary.normalization ?? a.summary.normalization ?? 'zeroOne';
    const r = await comparer.compare(a, b, values.image, normalization);

    const folder = values.images ?? metadataDataset(bPath) ?? metadataDataset(aPath);
    let set: ImageSet | undefined;
    if (folder) set = await listImageSet(folder, maxImages);
    const files = set?.files ?? [path.resolve(values.image)];
    const sim = await comparer.similarity(a, b, files, normalization, { folder: set?.folder, found: set?.found });
    if (!values.images) sim.notes.push(set ? `Images from ${set.folder} (the dataset named in the fine-tuned model's metadata.json); pass --images to choose.` : 'No --images folder: CKA needs at least 2 images.');

    const cka = new Map(sim.layers.map((l) => [l.path, l]));
    const grids: { file: string; png: Uint8Array }[] = [];
    const matched = new Map(r.layers.map((l) => [l.path, l]));
    const layerEntries: Record<string, unknown>[] = [];
    for (const row of a.summary.layers) {
      const l = matched.get(row.path);
      if (!l) {
        const u = r.onlyA.find((x) => x.path === row.path);
        layerEntries.push({ path: row.path, className: row.className, matched: false, shapeA: row.outputShape, reason: u?.reason ?? 'unmatched' });
        continue;
      }
      const entry: Record<string, unknown> = {
        path: l.path,
        pathB: l.pathB,
        className: l.className,
        matched: true,
        matchedBy: l.matchedBy,
        shapeA: l.shape,
        shapeB: b.summary.layers.find((x) => x.path === l.pathB)?.outputShape ?? l.shape,
        params: l.params,
        weightDrift: l.weightDrift,
        weightChange: l.weightChange,
        weightNorm: l.weightNorm,
        ...(l.driftNote ? { driftNote: l.driftNote } : {}),
        activationSimilarity: cka.get(l.path)?.cka ?? null,
        ckaFeatures: cka.get(l.path)?.features,
        activationChange: l.activationChange,
      };
      const is4d = !l.isContainer && !Array.isArray((l.shape as Shape[])[0]) && (l.shape as Shape).length === 4 && l.kind === 'map';
      if (is4d) {
        const maps = await comparer.maps(a.summary.modelPath, b.summary.modelPath, l.path, 0);
        entry['png'] = `maps/${fileName(grids.length + 1, l.path)}`;
        entry['maxAbsDiff'] = maps.maxAbsDiff;
        grids.push({ file: entry['png'] as string, png: comparePng(maps, colormapArg) });
      }
      layerEntries.push(entry);
    }
    const suggestions = driftSuggestions(r.layers, sim.layers);
    const side = (s: typeof r.a) => ({ modelPath: s.modelPath, name: s.name, labels: s.labels ?? null, predictions: s.predictions, probabilities: s.probabilities, totalParams: s.totalParams });
    const drift = {
      a: side(r.a),
      b: side(r.b),
      backend: backend.name,
      image: path.resolve(values.image),
      normalization,
      input: { height: r.input.height, width: r.input.width },
      images: { folder: sim.folder ?? null, found: sim.found, used: sim.images },
      colormap: colormapArg,
      layers: layerEntries,
      unmatched: { a: r.onlyA, b: r.onlyB },
      suggestions: { unchanged: suggestions.unchanged, barelyMoved: suggestions.barelyMoved, movedMost: suggestions.movedMost, leastSimilar: suggestions.leastSimilar, text: suggestions.lines },
      notes: [...r.notes, ...sim.notes],
    };
    await outFolder.write([...grids.map((g) => ({ file: g.file, data: g.png })), { file: 'drift.json', data: JSON.stringify(drift, null, 2) + '\n' }]);
    ctx.out(`A: ${r.a.name} (${a.summary.modelPath})\nB: ${r.b.name} (${b.summary.modelPath})\nCKA over ${sim.images} image${sim.images === 1 ? '' : 's'}${sim.folder ? ` from ${sim.folder}` : ''}\n`);
    ctx.out(formatCompareText(r.layers, sim, suggestions.lines));
    for (const u of r.onlyA) ctx.out(`Only in A: ${u.path} (${u.className}): ${u.reason}`);
    for (const u of r.onlyB) ctx.out(`Only in B: ${u.path} (${u.className}): ${u.reason}`);
    for (const n of drift.notes) ctx.out(`Note: ${n}`);
    ctx.out(`\nWrote ${path.join(values.out, 'drift.json')}${grids.length ? ` and ${grids.length} side-by-side map${grids.length > 1 ? 's' : ''} (A | B | |B-A|) in ${path.join(values.out, 'maps')}` : ''}.`);
  } finally {
    comparer.dispose();
    disposeModel(a);
    if (b !== a) disposeModel(b);
  }
}
