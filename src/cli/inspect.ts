/**
 * `layer-lens inspect`: one image through a model, written to a folder:
 * summary.json (layer table, per-layer and per-channel statistics, top-k
 * predictions) and one PNG channel grid per layer that outputs a feature map.
 * The same text is printed. src/cli/main.ts routes here and passes in its
 * usage-error and output helpers, so this module does not import main.ts.
 *
 * --out is created if absent (built under a temporary name and renamed, so a
 * kill leaves no half-written folder). If it exists and already holds a
 * summary.json or a non-empty maps/ (an earlier run's, or the user's own),
 * nothing is computed or written unless --force (io/output.ts); other files
 * in it are left alone, and a model's own files are never replaced.
 */
import * as path from 'node:path';
import { encodePng } from '../engine/image';
import { channelGrid, colormaps, isColormap, type Colormap } from '../protocol/colormap';
import { Inspector } from '../engine/inspect/inspector';
import { OutputFolder } from '../engine/io/output';
import { loadModel } from '../engine/model';
import type { ChannelStats, InspectResult, LayerInfo } from '../protocol/inspect';
import { formatShape, isNormalization, normalizations, type ModelSummary, type Normalization } from '../protocol/model';
import { numberArg, parseCommand } from './args';
import type { CliContext } from './context';

export const inspectUsage =
  '  inspect <model> --image <file> --out <dir> [--normalization zeroOne|minusOneOne|imagenet|raw]\n' +
  '          [--colormap viridis|magma|gray] [--top-k 5] [--output N] [--force]\n' +
  '                                  Feature maps (one PNG grid per layer), per-layer statistics and\n' +
  '                                  top-k predictions (output N of several; values for a regression,\n' +
  '                                  output.png for an image output) for one image; writes summary.json and maps/\n' +
  '                                  (--force replaces those of an earlier run).\n';


interface LayerEntry {
  path: string;
  name: string;
  className: string;
  depth: number;
  params: number;
  trainable: boolean;
  shape: number[];
  kind: LayerInfo['kind'];
  mean: number;
  zeros: number;
  min?: number;
  max?: number;
  std?: number;
  grid?: string;
  channels?: ChannelStats[];
}

/** Layer-wide min, max and std from equal-sized channels' stats. */
function combine(stats: ChannelStats[]): { min: number; max: number; std: number } {
  let min = Infinity;
  let max = -Infinity;
  let m = 0;
  let sq = 0;
  for (const s of stats) {
    min = Math.min(min, s.min);
    max = Math.max(max, s.max);
    m += s.mean / stats.length;
    sq += (s.std * s.std + s.mean * s.mean) / stats.length;
  }
  return { min, max, std: Math.sqrt(Math.max(0, sq - m * m)) };
}

/** A file name for a layer path, in layer order: "003-features_backbone_Conv1.png". */
function gridFileName(index: number, layerPath: string): string {
  return `${String(index).padStart(3, '0')}-${layerPath.replace(/[^A-Za-z0-9_.-]+/g, '_')}.png`;
}

function num(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a >= 1000 || a < 0.001 ? v.toExponential(2) : v.toPrecision(3);
}

export function formatInspectText(s: ModelSummary, r: InspectResult, entries: LayerEntry[], normalizationSource: string, k: number): string {
  const header = ['Layer', 'Class', 'Output', 'Mean', 'Zeros', 'Grid'];
  // ONNX node names hold slashes of their own ("/features/features.0/Conv"); they are not nesting.
  const nameOf = (e: LayerEntry) => (s.format === 'onnx' ? e.path : e.path.split('/').pop()!);
  const rows = entries.map((e) => ['  '.repeat(e.depth) + nameOf(e), e.className, formatShape(e.shape), num(e.mean), `${(e.zeros * 100).toFixed(0)}%`, e.grid ?? '']);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 3 || i === 4 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  const lines = [
    `${s.name} (${s.format} model) — ${r.imagePath} as [${r.input.height}, ${r.input.width}], normalization ${r.normalization} (${normalizationSource}), ${r.ms} ms`,
    line(header),
    widths.map((w) => '-'.repeat(w)).join('  '),
    ...rows.map(line),
    '',
  ];
  const outputs = r.outputs ?? [];
  const chosen = outputs[r.output ?? 0];
  if (outputs.length > 1) lines.push(`Outputs: ${outputs.map((o, i) => `${i + 1}. ${o.name} [${o.shape.join(', ')}] (${o.kind})`).join('; ')}; showing output ${(r.output ?? 0) + 1} (--output N for another)`);
  if (chosen?.kind === 'image' && r.image) {
    lines.push(`Output ${chosen.name}: an image [${chosen.shape.join(', ')}], written to output.png${r.image.diff ? `; mean |output - input| ${r.image.meanAbsDiff!.toFixed(2)} of 255 (output-diff.png)` : ''}`);
  } else if (chosen?.kind === 'values' && r.values) {
    lines.push(`Output ${chosen.name} values (not classes): ${r.values.map(num).join(', ')}`);
  } else {
    lines.push(`Top ${Math.min(k, r.predictions.length)} ${r.probabilities ? 'predictions' : 'outputs (not probabilities)'}:`);
    const lw = Math.max(0, ...r.predictions.map((p) => p.label.length));
    r.predictions.forEach((p, i) => lines.push(`  ${i + 1}. ${p.label.padEnd(lw)}  ${r.probabilities ? `${(p.probability * 100).toFixed(1).padStart(5)}%` : num(p.probability)}`));
  }
  for (const n of r.notes ?? []) lines.push(`Note: ${n}`);
  return lines.join('\n');
}

export async function inspectCommand(args: string[], ctx: CliContext): Promise<void> {
  const { values, positionals } = parseCommand(args, {
    image: { type: 'string' },
    out: { type: 'string' },
    normalization: { type: 'string' },
    colormap: { type: 'string' },
    'top-k': { type: 'string' },
    output: { type: 'string' },
    force: { type: 'boolean' },
    backend: { type: 'string' },
  });
  if (positionals.length !== 1) throw ctx.usageError('inspect takes exactly one model path.');
  if (!values.image) throw ctx.usageError('inspect needs --image <file>.');
  if (!values.out) throw ctx.usageError('inspect needs --out <dir>.');
  if (values.normalization !== undefined && !isNormalization(values.normalization)) {
    throw ctx.usageError(`--normalization must be ${normalizations.join(', ')} (got "${values.normalization}").`);
  }
  const colormapArg = values.colormap ?? 'viridis';
  if (!isColormap(colormapArg)) throw ctx.usageError(`--colormap must be ${colormaps.join(', ')} (got "${values.colormap}").`);
  const colormap: Colormap = colormapArg;
  const topK = numberArg('--top-k', values['top-k'], { integer: true, min: 1 }, ctx.usageError) ?? 5;
  const outputArg = numberArg('--output', values.output, { integer: true, min: 1 }, ctx.usageError) ?? 1;
  const backend = await ctx.startBackend(values.backend);

  // Before any work: the folder, what it already holds, whether it can be written.
  const outFolder = await OutputFolder.prepare(values.out, { files: ['summary.json', 'output.png', 'output-diff.png'], folders: ['maps'], force: values.force, flag: '--out' });

  const loaded = await loadModel(positionals[0]);
  const s = loaded.summary;
  const normalization: Normalization = (values.normalization as Normalization | undefined) ?? s.normalization ?? 'zeroOne';
  const normalizationSource = values.normalization ? '--normalization' : s.normalization ? (s.normalizationFrom ?? "the model's metadata") : 'default; pass --normalization if the model expects another';
  if (outputArg > s.outputs.length) throw ctx.usageError(`--output ${outputArg}: ${s.name} has ${s.outputs.length} output${s.outputs.length === 1 ? '' : 's'}.`);
  const inspector = new Inspector();
  try {
    const r = await inspector.inspect(loaded, values.image, normalization, { topK, output: outputArg - 1 });
    const rowsByPath = new Map(s.layers.map((row) => [row.path, row]));
    const entries: LayerEntry[] = [];
    const grids: { file: string; png: Uint8Array }[] = [];
    for (const info of r.layers) {
      const row = rowsByPath.get(info.path)!;
      const e: LayerEntry = {
        path: info.path,
        name: row.name,
        className: info.className,
        depth: row.depth,
        params: row.params,
        trainable: row.trainable,
        shape: info.shape,
        kind: info.kind,
        mean: info.mean,
        zeros: info.zeros,
      };
      if (info.kind !== 'other') {
        const maps = await inspector.layerMaps(s.modelPath, info.path, 0);
        Object.assign(e, combine(maps.stats));
        if (info.kind === 'map') {
          e.channels = maps.stats;
          e.grid = `maps/${gridFileName(grids.length + 1, info.path)}`;
          const g = channelGrid(maps, colormap);
          grids.push({ file: e.grid, png: encodePng(g.width, g.height, g.rgba, 4) });
        }
      }
      entries.push(e);
    }
    const summaryJson = {
      model: s.name,
      modelPath: s.modelPath,
      format: s.format,
      backend: backend.name,
      image: r.imagePath,
      inputShape: s.inputShape,
      input: { height: r.input.height, width: r.input.width },
      normalization,
      colormap,
      probabilities: r.probabilities,
      predictions: r.predictions,
      outputs: r.outputs,
      output: r.output,
      ...(r.values ? { values: r.values } : {}),
      ...(r.image?.meanAbsDiff !== undefined ? { meanAbsDiff: r.image.meanAbsDiff } : {}),
      layers: entries,
      notes: r.notes ?? [],
      ms: r.ms,
    };
    const files = [...grids.map((g) => ({ file: g.file, data: g.png as string | Uint8Array })), { file: 'summary.json', data: JSON.stringify(summaryJson, null, 2) + '\n' }];
    if (r.image) {
      files.push({ file: 'output.png', data: encodePng(r.image.width, r.image.height, r.image.rgb, 3) });
      if (r.image.diff) files.push({ file: 'output-diff.png', data: encodePng(r.image.width, r.image.height, new Uint8Array(r.image.diff.length * 3).map((_, i) => r.image!.diff![Math.floor(i / 3)]), 3) });
    }
    await outFolder.write(files);
    ctx.out(formatInspectText(s, r, entries, normalizationSource, topK));
    ctx.out(`\nWrote ${path.join(values.out, 'summary.json')}${grids.length ? ` and ${grids.length} feature-map grid${grids.length > 1 ? 's' : ''} in ${path.join(values.out, 'maps')}` : ''}.`);
  } finally {
    inspector.dispose();
  }
}
