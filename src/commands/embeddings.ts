/**
 * Layer Lens: Compute Embeddings… — a layer's outputs for a folder of
 * images, computed in the worker and cached on disk, then shown as a map in
 * the inspector's Latent tab or exported for TensorBoard's Projector.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { describeEmbedProgress, embeddingSummaryLine, type EmbeddingSummary } from '../protocol/embed';
import type { LayerRow } from '../protocol/model';
import { InspectorPanel } from '../panels/inspector/inspectorPanel';
import { pickFolder } from '../ui/pickers';
import { exportProjector } from '../ui/projectorExport';
import { folderArg, resolveModel, trusted, usableSummary, type CommandDeps } from './modelArg';

const rel = (p: string) => vscode.workspace.asRelativePath(p);

/** Keybindings and tasks pass one object: { "model": "…/model.json", "folder": "…", "layer": "…", "showMap": true }. */
interface ComputeArgs {
  model?: string;
  folder: string;
  layer?: string;
  showMap?: boolean;
}

function isComputeArgs(a: unknown): a is ComputeArgs {
  if (typeof a !== 'object' || a === null || a instanceof vscode.Uri) return false;
  const r = a as Record<string, unknown>;
  return typeof r['folder'] === 'string' && (r['model'] === undefined || typeof r['model'] === 'string') && (r['layer'] === undefined || typeof r['layer'] === 'string');
}

async function pickLayer(rows: LayerRow[]): Promise<string | null | undefined> {
  type Item = vscode.QuickPickItem & { path: string | null };
  const items: Item[] = [
    { label: '$(star-full) Last feature layer', description: 'the input of the classification head (default; shares its cache with Fine-Tune)', path: null },
    ...rows.filter((r) => r.className !== 'InputLayer').map((r) => ({ label: `${'  '.repeat(r.depth)}${r.name}`, description: `${r.className} ${JSON.stringify(r.outputShape).replace(/null/g, '?')}`, path: r.path })),
  ];
  const picked = await vscode.window.showQuickPick(items, { title: 'Layer Lens: Compute Embeddings — layer', placeHolder: 'Embeddings are this layer’s outputs', matchOnDescription: true });
  return picked ? picked.path : undefined;
}

export function registerEmbeddingCommands(deps: CommandDeps): vscode.Disposable[] {
  return [vscode.commands.registerCommand('layerLens.computeEmbeddings', (arg?: unknown, folder?: unknown, layer?: unknown) => computeEmbeddings(deps, arg, folder, layer))];
}

async function computeEmbeddings(deps: CommandDeps, arg?: unknown, folderArgument?: unknown, layerArg?: unknown): Promise<EmbeddingSummary | undefined> {
  const { engine, registry, recipes, jobs, latent, log, channel } = deps;
  if (!trusted('compute embeddings')) return undefined;
  let showMap = false;
  if (isComputeArgs(arg)) {
    folderArgument = arg.folder;
    layerArg = arg.layer ?? null;
    showMap = arg.showMap === true;
    arg = arg.model !== undefined ? vscode.Uri.file(arg.model) : undefined;
  }
  const model = await resolveModel(registry, arg, 'Compute embeddings with which model?');
  if (!model) return undefined;
  const summary = await usableSummary(registry, model, 'embed', { graphToo: true, onnxToo: true });
  if (!summary) return undefined;
  const folder = folderArg(folderArgument) ?? (await pickFolder('Images to embed: a folder (one sub-folder per class, or just images)', model, 'Embed These Images'));
  if (!folder) return undefined;
  const layer = typeof layerArg === 'string' ? layerArg : layerArg === null || folderArgument !== undefined ? null : await pickLayer(summary.layers);
  if (layer === undefined) return undefined;
  // The recipe's preprocessing when it sets one (else the model's metadata): what Fine-Tune uses, so both share the cache.
  const normalization = (await recipes.recipe(model)).finetune.normalization;
  const hold = registry.hold(model);
  const outcome = await jobs
    .run({ title: `Embeddings of ${path.basename(folder.fsPath)}` }, (signal, progress) =>
      engine.call(
        'computeEmbeddings',
        { modelPath: model.fsPath, datasetDir: folder.fsPath, ...(layer ? { layer } : {}), ...(normalization ? { normalization } : {}) },
        { signal, onProgress: (p) => progress.report({ message: describeEmbedProgress(p) }) },
      ),
    )
    .finally(() => hold.dispose());
  if (outcome.status !== 'done') return undefined;
  const s = outcome.value;
  log.info(embeddingSummaryLine(s, rel));
  for (const k of s.skipped.slice(0, 10)) log.warn(`Skipped ${k.file}: ${k.detail}`);
  for (const w of s.warnings ?? []) log.warn(w);
  latent.handOut(s.datasetDir);
  const show = () => {
    // Opens the inspector on its Latent tab with this folder's map.
    InspectorPanel.show(model, deps);
    latent.requestMap({ model, datasetDir: s.datasetDir, layerPath: s.layer });
  };
  if (showMap) {
    show();
    return s;
  }
  void vscode.window.showInformationMessage(`${s.count} embeddings of ${path.basename(s.datasetDir)} at ${s.layer} (${s.computed} computed, ${s.reused} from the cache).`, 'Show Map', 'Export for Projector', 'Show Log').then(async (choice) => {
    if (choice === 'Show Map') show();
    else if (choice === 'Export for Projector') await exportProjector(engine, log, s.setId, s).catch((e: unknown) => log.error(`Export failed: ${e instanceof Error ? e.message : String(e)}`));
    else if (choice === 'Show Log') channel.show(true);
  });
  return s;
}
