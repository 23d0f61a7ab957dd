/**
 * Embeddings from VS Code: `Compute Embeddings…` (cached on disk, then shown
 * as a map in the inspector's Latent tab or exported for TensorBoard's
 * Projector), `Pretrain with Rotation Pretext…` (self-supervised, streamed
 * like a fine-tune), `Advise Freeze or Fine-Tune…` (a report, and the freeze
 * plan it recommends on "Apply"), and the Latent tab's requests. All compute
 * runs in the worker; every long call is cancellable.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { EngineClient } from '../engineClient';
import type { FreezeService } from '../freezeService';
import type { Logger } from '../logger';
import type { ModelRegistry } from '../modelRegistry';
import { InspectorPanel, type InspectorDeps } from '../panels/inspectorPanel';
import { formatAdvisorReport, recommendationLabel, type EmbedProgress, type EmbeddingSummary } from '../protocol/embed';
import type { LayerRow } from '../protocol/model';
import { RemoteError, type Handlers } from '../protocol/rpc';
import { formatBatchLine, formatProgress, withShownPaths, type TrainProgress } from '../protocol/train';
import type { WebviewApi } from '../protocol/webviewApi';
import { resolveModel } from './inspect';

const rel = (p: string) => vscode.workspace.asRelativePath(p);

/** Folders the host handed to a webview (picked, or from a command): the Latent tab may name only these or workspace folders. */
const handedOut = new Set<string>();
/** A map the Compute Embeddings command asked an inspector to show, for a webview that was not listening yet. */
const pendingMaps = new Map<string, { datasetDir: string; layerPath: string | null }>();

function insideWorkspace(p: string): boolean {
  return (vscode.workspace.workspaceFolders ?? []).some((f) => {
    const r = path.relative(f.uri.fsPath, p);
    return r === '' || (!r.startsWith('..') && !path.isAbsolute(r));
  });
}

function isCancel(e: unknown, signal: AbortSignal): boolean {
  return signal.aborted || (e instanceof RemoteError && e.code === 'cancelled');
}

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

function describeProgress(p: EmbedProgress): string {
  switch (p.type) {
    case 'scan':
      return `${p.files} images found`;
    case 'embed':
      return `${p.done}/${p.total} images${p.reused ? ` (${p.reused} from the cache)` : ''}`;
    case 'project':
      return `${p.method.toUpperCase()} ${Math.round((p.done / p.total) * 100)}%`;
    case 'probe':
      return p.message;
  }
}

async function pickFolder(title: string, model: vscode.Uri, openLabel: string): Promise<vscode.Uri | undefined> {
  const chosen = await vscode.window.showOpenDialog({
    canSelectFiles: false,
    canSelectFolders: true,
    openLabel,
    defaultUri: vscode.workspace.workspaceFolders?.[0]?.uri ?? vscode.Uri.file(path.dirname(path.dirname(model.fsPath))),
    title,
  });
  return chosen?.[0];
}

function summaryLine(s: EmbeddingSummary): string {
  const classes = s.classes ? `${s.classes.length} classes (${s.classes.map((c, i) => `${c} ${s.counts[i]}`).slice(0, 12).join(', ')})` : 'no classes (a flat folder)';
  return `Embeddings of ${rel(s.datasetDir)} at ${s.layer}: ${s.count} images, ${classes}, ${s.dim} values each${s.pooling === 'mean' ? ' (feature map averaged over space)' : ''}; ${s.computed} computed, ${s.reused} reused, ${s.dropped} dropped in ${s.seconds.toFixed(1)} s; cache ${rel(s.cacheDir)}`;
}

/** The Latent tab's requests, for one inspector panel (spread into its handlers). */
export function latentHandlers(d: { engine: EngineClient; modelUri: vscode.Uri; log: Logger }): Pick<
  Handlers<WebviewApi>,
  'latentState' | 'latentPickFolder' | 'latentMap' | 'latentNeighbors' | 'latentThumbnail' | 'latentExport'
> {
  const modelPath = d.modelUri.fsPath;
  let current: EmbeddingSummary | undefined;
  const setId = () => {
    if (!current) throw Object.assign(new Error('No map yet: compute one first.'), { code: 'bad-input' });
    return current.setId;
  };
  return {
    latentState: () => {
      const pending = pendingMaps.get(modelPath) ?? null;
      pendingMaps.delete(modelPath);
      return { pending };
    },
    latentPickFolder: async () => {
      const folder = await pickFolder('Images to map: a folder (one sub-folder per class colours the points)', d.modelUri, 'Map These Images');
      if (!folder) return null;
      handedOut.add(folder.fsPath);
      return folder.fsPath;
    },
    latentMap: async ({ datasetDir, method, layerPath, normalization }, ctx) => {
      const dir = path.resolve(datasetDir);
      if (!handedOut.has(dir) && !insideWorkspace(dir)) {
        throw Object.assign(new Error('That folder is outside the workspace; choose it with "Choose Folder…".'), { code: 'bad-input' });
      }
      if (!vscode.workspace.isTrusted) throw Object.assign(new Error('Layer Lens does not write its embedding cache in an untrusted workspace; trust the folder to compute maps.'), { code: 'bad-input' });
      const map = await d.engine.call('latentMap', { modelPath, datasetDir: dir, layer: layerPath, normalization, method, seed: 7 }, { signal: ctx.signal, onProgress: (p) => ctx.progress(p) });
      current = map.summary;
      d.log.info(`${summaryLine(map.summary)}; ${method.toUpperCase()} map in ${map.projectionMs} ms`);
      for (const s of map.summary.skipped.slice(0, 10)) d.log.warn(`Skipped ${s.file}: ${s.detail}`);
      return map;
    },
    latentNeighbors: ({ index, k }) => d.engine.call('latentNeighbors', { setId: setId(), index, k }),
    latentThumbnail: ({ index }) => d.engine.call('latentThumbnail', { setId: setId(), index, size: 96 }),
    latentExport: async () => exportProjector(d.engine, d.log, setId(), current!),
  };
}

async function exportProjector(engine: EngineClient, log: Logger, setId: string, s: EmbeddingSummary): Promise<string | null> {
  const target = await vscode.window.showOpenDialog({
    canSelectFiles: false,
    canSelectFolders: true,
    openLabel: 'Export vectors.tsv + metadata.tsv Here',
    defaultUri: vscode.Uri.file(s.cacheDir),
    title: 'Export for the TensorBoard Embedding Projector',
  });
  if (!target?.[0]) return null;
  const out = await engine.call('exportProjector', { setId, dir: target[0].fsPath });
  log.info(`Exported ${out.rows} embeddings for the Projector: ${rel(out.vectors)}, ${rel(out.metadata)} (load both at projector.tensorflow.org)`);
  return out.vectors;
}

export class EmbeddingCommands implements vscode.Disposable {
  private readonly running = new Set<AbortController>();

  constructor(
    private readonly engine: EngineClient,
    private readonly registry: ModelRegistry,
    private readonly freeze: FreezeService,
    private readonly log: Logger,
    private readonly channel: vscode.LogOutputChannel,
    private readonly inspector: () => InspectorDeps,
  ) {}

  register(): vscode.Disposable[] {
    return [
      vscode.commands.registerCommand('layerLens.computeEmbeddings', (arg?: unknown, folder?: unknown, layer?: unknown) => this.compute(arg, folder, layer)),
      vscode.commands.registerCommand('layerLens.pretrainRotation', (arg?: unknown, folder?: unknown, epochs?: unknown) => this.pretrain(arg, folder, epochs)),
      vscode.commands.registerCommand('layerLens.advise', (arg?: unknown, folder?: unknown) => this.advise(arg, folder)),
    ];
  }

  private trusted(what: string): boolean {
    if (vscode.workspace.isTrusted) return true;
    void vscode.window.showWarningMessage(`Layer Lens does not ${what} in an untrusted workspace (it writes files). Trust this folder to continue (Manage Workspace Trust).`);
    return false;
  }

  private async layersSummary(model: vscode.Uri, what: string) {
    try {
      const s = await this.registry.summary(model);
      if (s.format !== 'layers' && what !== 'embed') {
        void vscode.window.showWarningMessage(`${s.name} is a graph model (inference only); ${what} needs a TF.js layers model.`);
        return undefined;
      }
      return s;
    } catch (e) {
      void vscode.window.showErrorMessage(`Layer Lens cannot use this model: ${e instanceof Error ? e.message : String(e)}`);
      return undefined;
    }
  }

  private async pickLayer(rows: LayerRow[]): Promise<string | null | undefined> {
    type Item = vscode.QuickPickItem & { path: string | null };
    const items: Item[] = [
      { label: '$(star-full) Last feature layer', description: 'the input of the classification head (default; shares its cache with Fine-Tune)', path: null },
      ...rows.filter((r) => r.className !== 'InputLayer').map((r) => ({ label: `${'  '.repeat(r.depth)}${r.name}`, description: `${r.className} ${JSON.stringify(r.outputShape).replace(/null/g, '?')}`, path: r.path })),
    ];
    const picked = await vscode.window.showQuickPick(items, { title: 'Layer Lens: Compute Embeddings — layer', placeHolder: 'Embeddings are this layer’s outputs', matchOnDescription: true });
    return picked ? picked.path : undefined;
  }

  private async run<T>(title: string, work: (signal: AbortSignal, report: (m: string) => void) => Promise<T>): Promise<T | undefined> {
    const controller = new AbortController();
    this.running.add(controller);
    try {
      return await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title, cancellable: true }, async (progress, token) => {
        token.onCancellationRequested(() => controller.abort());
        return work(controller.signal, (message) => progress.report({ message }));
      });
    } catch (e) {
      if (isCancel(e, controller.signal)) {
        this.log.info(`${title}: cancelled.`);
        return undefined;
      }
      const message = `${title} failed: ${e instanceof Error ? e.message : String(e)}`;
      this.log.error(message);
      void vscode.window.showErrorMessage(message, 'Show Log').then((c) => c && this.channel.show(true));
      return undefined;
    } finally {
      this.running.delete(controller);
    }
  }

  async compute(arg?: unknown, folderArg?: unknown, layerArg?: unknown): Promise<EmbeddingSummary | undefined> {
    if (!this.trusted('compute embeddings')) return undefined;
    // Keybindings and tasks pass one object: { "model": "…/model.json", "folder": "…", "layer": "…", "showMap": true }.
    let showMap = false;
    if (isComputeArgs(arg)) {
      folderArg = arg.folder;
      layerArg = arg.layer ?? null;
      showMap = arg.showMap === true;
      arg = arg.model !== undefined ? vscode.Uri.file(arg.model) : undefined;
    }
    const model = await resolveModel(this.registry, arg, 'Compute embeddings with which model?');
    if (!model) return undefined;
    const summary = await this.layersSummary(model, 'embed');
    if (!summary) return undefined;
    const folder = typeof folderArg === 'string' ? vscode.Uri.file(folderArg) : folderArg instanceof vscode.Uri ? folderArg : await pickFolder('Images to embed: a folder (one sub-folder per class, or just images)', model, 'Embed These Images');
    if (!folder) return undefined;
    const layer = typeof layerArg === 'string' ? layerArg : layerArg === null || folderArg !== undefined ? null : await this.pickLayer(summary.layers);
    if (layer === undefined) return undefined;
    // The recipe's preprocessing when it sets one (else the model's metadata): what Fine-Tune uses, so both share the cache.
    const normalization = (await this.freeze.recipe(model)).finetune.normalization;
    const s = await this.run(`Embeddings of ${path.basename(folder.fsPath)}`, (signal, report) =>
      this.engine.call('computeEmbeddings', { modelPath: model.fsPath, datasetDir: folder.fsPath, ...(layer ? { layer } : {}), ...(normalization ? { normalization } : {}) }, { signal, onProgress: (p) => report(describeProgress(p)) }),
    );
    if (!s) return undefined;
    this.log.info(summaryLine(s));
    for (const k of s.skipped.slice(0, 10)) this.log.warn(`Skipped ${k.file}: ${k.detail}`);
    handedOut.add(s.datasetDir);
    if (showMap) {
      this.showMap(model, s.datasetDir, s.layer);
      return s;
    }
    void vscode.window.showInformationMessage(`${s.count} embeddings of ${path.basename(s.datasetDir)} at ${s.layer} (${s.computed} computed, ${s.reused} from the cache).`, 'Show Map', 'Export for Projector', 'Show Log').then(async (choice) => {
      if (choice === 'Show Map') this.showMap(model, s.datasetDir, s.layer);
      else if (choice === 'Export for Projector') await exportProjector(this.engine, this.log, s.setId, s).catch((e: unknown) => this.log.error(`Export failed: ${e instanceof Error ? e.message : String(e)}`));
      else if (choice === 'Show Log') this.channel.show(true);
    });
    return s;
  }

  /** Opens the inspector on its Latent tab with this folder's map. */
  showMap(model: vscode.Uri, datasetDir: string, layerPath: string | null): void {
    handedOut.add(datasetDir);
    pendingMaps.set(model.fsPath, { datasetDir, layerPath });
    const panel = InspectorPanel.show(model, this.inspector());
    panel.post({ type: 'latent', datasetDir, layerPath });
  }

  async pretrain(arg?: unknown, folderArg?: unknown, epochsArg?: unknown): Promise<string | undefined> {
    if (!this.trusted('pretrain')) return undefined;
    const model = await resolveModel(this.registry, arg, 'Pretrain which model’s backbone?');
    if (!model) return undefined;
    const summary = await this.layersSummary(model, 'pretraining');
    if (!summary) return undefined;
    const folder = typeof folderArg === 'string' ? vscode.Uri.file(folderArg) : folderArg instanceof vscode.Uri ? folderArg : await pickFolder('Unlabelled images for the rotation task (read recursively)', model, 'Pretrain on These Images');
    if (!folder) return undefined;
    let epochs = typeof epochsArg === 'number' ? epochsArg : undefined;
    if (epochs === undefined) {
      const text = await vscode.window.showInputBox({
        title: 'Layer Lens: Rotation Pretext — epochs',
        prompt: 'Each epoch shows every image turned by 0, 90, 180 and 270 degrees',
        value: '10',
        validateInput: (v) => (/^\d+$/.test(v) && Number(v) >= 1 && Number(v) <= 1000 ? undefined : 'A whole number from 1 to 1000'),
      });
      if (!text) return undefined;
      epochs = Number(text);
    }
    const recipe = await this.freeze.recipe(model);
    const panel = InspectorPanel.show(model, this.inspector());
    this.log.info(`Rotation pretext pretraining of ${rel(model.fsPath)} on ${rel(folder.fsPath)} started`);
    const result = await this.run(`Rotation pretext: ${summary.name}`, (signal, report) =>
      this.engine.call(
        'pretrainRotation',
        { modelPath: model.fsPath, imagesDir: folder.fsPath, settings: { epochs, seed: recipe.finetune.seed } },
        {
          signal,
          onProgress: (p: TrainProgress) => {
            for (const line of formatProgress(p, rel)) this.log.info(line.replace(/^Fine-tune: /, 'Rotation pretext: '));
            panel.post({ type: 'train', progress: withShownPaths(p, rel) });
            if (p.type === 'batch') report(formatBatchLine(p));
          },
        },
      ),
    );
    if (!result) {
      panel.post({ type: 'trainStopped', status: 'cancelled', message: 'Pretraining stopped; nothing was saved.' });
      return undefined;
    }
    const acc = `rotation accuracy ${(result.acc * 100).toFixed(1)}%${result.valAcc !== undefined ? ` (held out ${(result.valAcc * 100).toFixed(1)}%)` : ''}`;
    this.log.info(`Pretrained backbone (up to ${result.cutLayer}) saved to ${rel(result.outputPath)}; ${acc}. Fine-tune it with its backbone frozen to use it.`);
    const out = vscode.Uri.file(path.join(result.outputPath, 'model.json'));
    void vscode.window.showInformationMessage(`Pretrained ${summary.name} on ${result.images} unlabelled images (${acc}); saved ${rel(result.outputPath)}.`, 'Inspect', 'Fine-Tune…').then((c) => {
      if (c === 'Inspect') void vscode.commands.executeCommand('layerLens.inspectModel', out);
      else if (c === 'Fine-Tune…') void vscode.commands.executeCommand('layerLens.finetune', out);
    });
    return result.outputPath;
  }

  async advise(arg?: unknown, folderArg?: unknown): Promise<string[] | undefined> {
    if (!this.trusted('advise (it caches embeddings)')) return undefined;
    const model = await resolveModel(this.registry, arg, 'Advise on which model?');
    if (!model) return undefined;
    const summary = await this.layersSummary(model, 'the advisor');
    if (!summary) return undefined;
    const folder = typeof folderArg === 'string' ? vscode.Uri.file(folderArg) : folderArg instanceof vscode.Uri ? folderArg : await pickFolder('The dataset to fine-tune on: one sub-folder of images per class', model, 'Advise on This Dataset');
    if (!folder) return undefined;
    const recipe = await this.freeze.recipe(model);
    const report = await this.run(`Freeze or fine-tune? ${summary.name}`, (signal, progress) =>
      this.engine.call('advise', { modelPath: model.fsPath, datasetDir: folder.fsPath, learningRate: recipe.finetune.learningRate, seed: recipe.finetune.seed, ...(recipe.finetune.normalization ? { normalization: recipe.finetune.normalization } : {}) }, { signal, onProgress: (p) => progress(describeProgress(p)) }),
    );
    if (!report) return undefined;
    const md = formatAdvisorReport(report, rel);
    for (const line of md.split('\n').filter((l) => l.startsWith('**') || l.startsWith('- '))) this.log.info(`Advisor: ${line.replace(/\*\*/g, '')}`);
    // A file, not an untitled editor: no "save changes?" prompt when it closes.
    const file = path.join(path.dirname(model.fsPath), '.layerlens', `advice-${path.basename(folder.fsPath).replace(/[^\w.-]+/g, '_')}.md`);
    try {
      await fs.promises.mkdir(path.dirname(file), { recursive: true });
      const { writeFileAtomic } = await import('../engine/io/atomic');
      await writeFileAtomic(file, md);
      await vscode.commands.executeCommand('markdown.showPreview', vscode.Uri.file(file));
    } catch (e) {
      this.log.warn(`Could not show the advisor's report as a preview (${e instanceof Error ? e.message : String(e)}); it is in the log.`);
    }
    const apply = report.plan.length > 0 ? `Apply: Freeze Up To ${report.planUpTo}` : 'Apply: Unfreeze All';
    const choice = await vscode.window.showInformationMessage(`${recommendationLabel(report.advice.recommendation)} (similarity ${report.similarity.toFixed(2)}, smallest class ${Math.min(...report.classes.map((c) => c.images))} images).`, apply, 'Show Log');
    if (choice === apply) {
      try {
        await this.freeze.setPlan(model, report.plan);
        this.log.info(`Advisor's freeze plan applied to ${rel(model.fsPath)}: ${report.plan.length ? report.plan.join(', ') : 'nothing frozen'}${report.advice.learningRateFactor !== 1 ? `; set finetune.learningRate to ${report.learningRate.suggested} in layerlens.json` : ''}`);
      } catch (e) {
        void vscode.window.showErrorMessage(`Layer Lens could not apply the freeze plan: ${e instanceof Error ? e.message : String(e)}`);
      }
    } else if (choice === 'Show Log') this.channel.show(true);
    return report.plan;
  }

  dispose(): void {
    for (const c of this.running) c.abort();
  }
}
