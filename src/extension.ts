/**
 * Entry point: a flat list of registrations. No tfjs here; the engine runs in
 * a worker that starts on the first request.
 */
import * as vscode from 'vscode';
import { EmbeddingCommands } from './commands/embeddings';
import { FinetuneRuns } from './commands/finetune';
import { registerFreezeCommands } from './commands/freeze';
import { registerInspectCommands } from './commands/inspect';
import { registerCompareCommands } from './commands/compare';
import { registerModelCommands } from './commands/models';
import { EngineClient } from './engineClient';
import { createLogger } from './logger';
import { FreezeService } from './freezeService';
import { ModelRegistry } from './modelRegistry';
import { InspectorPanel, type InspectorDeps } from './panels/inspectorPanel';
import type { BackendPreference } from './protocol/workerApi';
import { BackendStatusBar } from './statusBar';
import { ModelTreeProvider } from './views/modelTreeProvider';

export function activate(context: vscode.ExtensionContext): void {
  const { logger, channel } = createLogger(context);
  const status = new BackendStatusBar();
  const engine = new EngineClient({
    distDir: vscode.Uri.joinPath(context.extensionUri, 'dist').fsPath,
    backend: () => vscode.workspace.getConfiguration('layerLens').get<BackendPreference>('backend', 'auto'),
    displayRoot: () => vscode.workspace.workspaceFolders?.[0]?.uri.fsPath,
    log: logger,
    onBackend: (b) => {
      logger.info(`Compute backend: ${b.name === 'tensorflow' ? 'tfjs-node' : b.name} (${b.initMs} ms)${b.notes.length ? `; ${b.notes.join('; ')}` : ''}`);
      status.setBackend(b);
    },
    onBusy: (busy) => status.setBusy(busy),
  });
  const registry = new ModelRegistry(engine, logger, context.workspaceState);
  const freeze = new FreezeService(registry, logger);
  const tree = ModelTreeProvider.register(registry, freeze);
  const runs = new FinetuneRuns(engine, registry, freeze, logger, channel, () => inspectorDeps);
  const embeddings = new EmbeddingCommands(engine, registry, freeze, logger, channel, () => inspectorDeps);
  const inspectorDeps: InspectorDeps = {
    extensionUri: context.extensionUri,
    engine,
    registry,
    freeze,
    log: logger,
    stopTraining: (uri) => runs.stop(uri),
  };
  logger.info(`Layer Lens ${String((context.extension.packageJSON as { version?: unknown }).version)} active; the compute worker starts on first use.`);
  context.subscriptions.push(
    status,
    { dispose: () => engine.dispose() },
    registry,
    freeze,
    tree.provider,
    InspectorPanel.registerSerializer(inspectorDeps),
    ...registerModelCommands(registry, tree, channel, logger),
    ...registerInspectCommands(registry, inspectorDeps),
    ...registerCompareCommands(registry, () => inspectorDeps),
    ...registerFreezeCommands(registry, freeze, logger),
    runs,
    ...runs.register(),
    embeddings,
    ...embeddings.register(),
  );
}

export function deactivate(): void {
  // Everything is disposed through context.subscriptions.
}
