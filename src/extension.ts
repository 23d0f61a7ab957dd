/**
 * Entry point: a flat list of registrations. No tfjs here; the engine runs in
 * a worker that starts on the first request.
 *
 * Layers, each importing only the ones below it: commands/ (argument picking,
 * one module per command family) -> panels/inspector/ (the panel and one
 * controller per tab) and views/ -> services/ (ModelRegistry, RecipeService,
 * TrainingRuns, LatentRequests) -> EngineClient -> the worker.
 */
import * as vscode from 'vscode';
import { registerAdviseCommands } from './commands/advise';
import { registerCompareCommands } from './commands/compare';
import { registerEmbeddingCommands } from './commands/embeddings';
import { registerFinetuneCommands } from './commands/finetune';
import { registerFreezeCommands } from './commands/freeze';
import { registerInspectCommands } from './commands/inspect';
import type { CommandDeps } from './commands/modelArg';
import { registerModelCommands } from './commands/models';
import { registerPretextCommands } from './commands/pretext';
import { EngineClient } from './engineClient';
import { createLogger } from './logger';
import { InspectorPanel } from './panels/inspector/inspectorPanel';
import { backendLabel, type BackendPreference } from './protocol/workerApi';
import { LatentRequests } from './services/latentRequests';
import { ModelRegistry } from './services/modelRegistry';
import { ProgressRuns } from './services/progressRuns';
import { RecipeService } from './services/recipeService';
import { TrainingRuns } from './services/trainingRuns';
import { BackendStatusBar } from './statusBar';
import { openWalkthroughOnce } from './ui/walkthrough';
import { ModelTreeProvider } from './views/modelTreeProvider';

export function activate(context: vscode.ExtensionContext): void {
  const { logger, channel } = createLogger(context);
  const status = new BackendStatusBar();
  const engine = new EngineClient({
    distDir: vscode.Uri.joinPath(context.extensionUri, 'dist').fsPath,
    backend: () => vscode.workspace.getConfiguration('layerLens').get<BackendPreference>('backend', 'auto'),
    displayRoot: () => vscode.workspace.workspaceFolders?.[0]?.uri.fsPath,
    storageDir: context.globalStorageUri.fsPath,
    log: logger,
    onBackend: (b) => {
      logger.info(`Compute backend: ${backendLabel(b.name)} (${b.initMs} ms)${b.notes.length ? `; ${b.notes.join('; ')}` : ''}`);
      status.setBackend(b);
    },
    onBusy: (busy) => status.setBusy(busy),
  });
  const registry = new ModelRegistry(engine, logger, context.workspaceState);
  const recipes = new RecipeService(registry, logger);
  const tree = ModelTreeProvider.register(registry, recipes);
  const runs = new TrainingRuns(engine, registry, logger, channel);
  const latent = new LatentRequests();
  const jobs = new ProgressRuns(logger, channel);
  const deps: CommandDeps = { extensionUri: context.extensionUri, engine, registry, recipes, runs, latent, log: logger, jobs, channel };
  logger.info(`Layer Lens ${String((context.extension.packageJSON as { version?: unknown }).version)} active; the compute worker starts on first use.`);
  context.subscriptions.push(
    status,
    { dispose: () => engine.dispose() },
    registry,
    recipes,
    tree.provider,
    runs,
    latent,
    jobs,
    InspectorPanel.registerSerializer(deps),
    ...registerModelCommands(registry, tree, channel, logger),
    ...registerInspectCommands(deps),
    ...registerCompareCommands(deps),
    ...registerFreezeCommands(registry, recipes, logger),
    ...registerFinetuneCommands(deps, channel),
    ...registerEmbeddingCommands(deps),
    ...registerPretextCommands(deps),
    ...registerAdviseCommands(deps),
    openWalkthroughOnce(context),
  );
}

export function deactivate(): void {
  // Everything is disposed through context.subscriptions.
}
