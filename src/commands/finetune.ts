/**
 * Layer Lens: Fine-Tune… — pick a model and a dataset folder (one sub-folder
 * per class), train in the worker with the model's freeze plan and recipe
 * settings, and stream every epoch to the output channel, a cancellable
 * progress notification and the inspector's Training tab. The result is a new
 * folder next to the model; the source is never touched. One run per model.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import * as vscode from 'vscode';
import type { EngineClient } from '../engineClient';
import type { FreezeService } from '../freezeService';
import type { Logger } from '../logger';
import type { ModelRegistry } from '../modelRegistry';
import { InspectorPanel, type InspectorDeps } from '../panels/inspectorPanel';
import { RemoteError } from '../protocol/rpc';
import { formatBatchLine, formatProgress, withShownPaths, type TrainProgress } from '../protocol/train';
import { resolveModel } from './inspect';



/** Folders of the workspace that look like datasets: at least two sub-folders holding images. */
async function datasetCandidates(): Promise<vscode.Uri[]> {
  const images = await vscode.workspace.findFiles('**/*.{png,PNG,jpg,JPG,jpeg,JPEG}', '{**/node_modules/**,**/.git/**}', 20000);
  const classesByRoot = new Map<string, Set<string>>();
  for (const u of images) {
    const classDir = path.dirname(u.fsPath);
    const root = path.dirname(classDir);
    const set = classesByRoot.get(root) ?? new Set<string>();
    set.add(classDir);
    classesByRoot.set(root, set);
  }
  return [...classesByRoot].filter(([, c]) => c.size >= 2).map(([root]) => vscode.Uri.file(root)).sort((a, b) => a.fsPath.localeCompare(b.fsPath));
}

async function pickDataset(model: vscode.Uri): Promise<vscode.Uri | undefined> {
  const candidates = await datasetCandidates();
  const browse = '$(folder-opened) Browse…';
  type Item = vscode.QuickPickItem & { uri?: vscode.Uri };
  const items: Item[] = [
    ...candidates.map((uri) => {
      const classes = fs.readdirSync(uri.fsPath, { withFileTypes: true }).filter((d) => d.isDirectory() && !d.name.startsWith('.')).map((d) => d.name);
      return { label: path.basename(uri.fsPath), description: vscode.workspace.asRelativePath(uri), detail: `${classes.length} classes: ${classes.slice(0, 8).join(', ')}${classes.length > 8 ? ', …' : ''}`, uri };
    }),
    { label: browse, alwaysShow: true },
  ];
  const picked = await vscode.window.showQuickPick(items, {
    title: 'Layer Lens: Fine-Tune — dataset folder',
    placeHolder: candidates.length ? 'A folder with one sub-folder of PNG/JPEG images per class' : 'No dataset folder found in the workspace: browse for one',
    matchOnDescription: true,
  });
  if (!picked) return undefined;
  if (picked.uri) return picked.uri;
  const chosen = await vscode.window.showOpenDialog({
    canSelectFiles: false,
    canSelectFolders: true,
    openLabel: 'Use as Dataset',
    defaultUri: vscode.Uri.file(path.dirname(path.dirname(model.fsPath))),
    title: 'Dataset folder: one sub-folder of images per class',
  });
  return chosen?.[0];
}

export class FinetuneRuns implements vscode.Disposable {
  private readonly running = new Map<string, AbortController>();

  constructor(
    private readonly engine: EngineClient,
    private readonly registry: ModelRegistry,
    private readonly freeze: FreezeService,
    private readonly log: Logger,
    private readonly channel: vscode.LogOutputChannel,
    private readonly inspector: () => InspectorDeps,
  ) {}

  stop(uri: vscode.Uri): void {
    this.running.get(uri.fsPath)?.abort();
  }

  register(): vscode.Disposable[] {
    return [vscode.commands.registerCommand('layerLens.finetune', (arg?: unknown, dataset?: unknown) => this.run(arg, dataset))];
  }

  async run(arg?: unknown, datasetArg?: unknown): Promise<string | undefined> {
    if (!vscode.workspace.isTrusted) {
      void vscode.window.showWarningMessage('Layer Lens does not train or write files in an untrusted workspace. Trust this folder to fine-tune (Manage Workspace Trust).');
      return undefined;
    }
    const model = await resolveModel(this.registry, arg, 'Fine-tune which model?', false);
    if (!model) return undefined;
    if (this.running.has(model.fsPath)) {
      void vscode.window.showInformationMessage('A fine-tune of this model is already running; stop it first (the notification or the inspector’s Stop button).');
      return undefined;
    }
    let summary;
    try {
      summary = await this.registry.summary(model);
    } catch (e) {
      void vscode.window.showErrorMessage(`Layer Lens cannot fine-tune: ${e instanceof Error ? e.message : String(e)}`);
      return undefined;
    }
    if (summary.format !== 'layers') {
      void vscode.window.showWarningMessage(`${summary.name} is a graph model (inference only); fine-tuning needs a TF.js layers model.`);
      return undefined;
    }
    const dataset = datasetArg instanceof vscode.Uri ? datasetArg : typeof datasetArg === 'string' ? vscode.Uri.file(datasetArg) : await pickDataset(model);
    if (!dataset) return undefined;
    const recipe = await this.freeze.recipe(model);
    const controller = new AbortController();
    this.running.set(model.fsPath, controller);
    const panel = InspectorPanel.show(model, this.inspector());
    const rel = (p: string) => vscode.workspace.asRelativePath(p);
    this.log.info(`Fine-tune of ${rel(model.fsPath)} on ${rel(dataset.fsPath)} started`);
    // Live maps: the inspector's pinned probe image and layer (else its current image and layer).
    const probe = panel.probe();
    if (probe) this.log.info(`Live maps: ${rel(probe.imagePath)} at ${probe.layerPath}, after every epoch (within 5% of the training time)`);
    const loop = monitorEventLoopDelay({ resolution: 10 });
    loop.enable();
    const started = performance.now();
    let messages = 0;
    let handlerMax = 0;
    try {
      const result = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: `Fine-tuning ${summary.name}`, cancellable: true },
        async (progress, token) => {
          token.onCancellationRequested(() => controller.abort());
          let lastFraction = 0;
          let lastBatchLog = 0;
          const handle = (p: TrainProgress) => {
            for (const line of formatProgress(p, rel)) this.log.info(line);
            panel.post({ type: 'train', progress: withShownPaths(p, rel) });
            if (p.type === 'batch') {
              const fraction = (p.epoch - 1 + p.batch / p.batches) / p.epochs;
              progress.report({ message: formatBatchLine(p), increment: Math.max(0, (fraction - lastFraction) * 100) });
              lastFraction = fraction;
              // Batch lines are throttled by the engine; a few per second reach the log at most.
              if (Date.now() - lastBatchLog > 2000) {
                this.log.debug(formatBatchLine(p));
                lastBatchLog = Date.now();
              }
            } else if (p.type === 'start') {
              progress.report({ message: `${p.trainSize} train / ${p.valSize} val images, ${p.epochs} epochs` });
            }
          };
          const onProgress = (p: TrainProgress) => {
            const t0 = performance.now();
            handle(p);
            messages++;
            handlerMax = Math.max(handlerMax, performance.now() - t0);
          };
          return this.engine.call(
            'finetune',
            { modelPath: model.fsPath, datasetDir: dataset.fsPath, settings: recipe.finetune, frozen: recipe.freeze, ...(probe ? { probe } : {}) },
            { signal: controller.signal, onProgress },
          );
        },
      );
      this.log.info(
        `Extension host event loop during the run: max delay ${(loop.max / 1e6).toFixed(0)} ms, p99 ${(loop.percentile(99) / 1e6).toFixed(0)} ms, mean ${(loop.mean / 1e6).toFixed(1)} ms over ${((performance.now() - started) / 1000).toFixed(1)} s (${messages} progress messages, each handled in at most ${handlerMax.toFixed(1)} ms)`,
      );
      const out = vscode.Uri.file(path.join(result.outputPath, 'model.json'));
      // The result folder was renamed into place, and file watchers do not report
      // the model.json inside a renamed folder: add it to the Models view here.
      void this.registry.open(out).catch(() => undefined);
      void vscode.window.showInformationMessage(`Fine-tuned ${summary.name} saved to ${rel(result.outputPath)}.`, 'Inspect', 'Compare with original', 'Show Log').then((choice) => {
        if (choice === 'Inspect') void vscode.commands.executeCommand('layerLens.inspectModel', out);
        else if (choice === 'Compare with original') void vscode.commands.executeCommand('layerLens.compareModels', out, model);
        else if (choice === 'Show Log') this.channel.show(true);
      });
      return result.outputPath;
    } catch (e) {
      const cancelled = controller.signal.aborted || (e instanceof RemoteError && e.code === 'cancelled');
      const message = cancelled ? 'Fine-tuning was cancelled; nothing was saved and the model is unchanged.' : `Fine-tuning failed: ${e instanceof Error ? e.message : String(e)}`;
      panel.post({ type: 'trainStopped', status: cancelled ? 'cancelled' : 'failed', message });
      if (cancelled) {
        this.log.info(message);
      } else {
        this.log.error(message);
        void vscode.window.showErrorMessage(message, 'Show Log').then((c) => c && this.channel.show(true));
      }
      return undefined;
    } finally {
      loop.disable();
      this.running.delete(model.fsPath);
    }
  }

  dispose(): void {
    for (const c of this.running.values()) c.abort();
  }
}


