/**
 * Entry point: a flat list of registrations. No tfjs here; the engine runs in
 * a worker that starts on the first request.
 */
import * as vscode from 'vscode';
import { registerModelCommands } from './commands/models';
import { EngineClient } from './engineClient';
import { createLogger } from './logger';
import { ModelRegistry } from './modelRegistry';
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
  const tree = ModelTreeProvider.register(registry);
  context.subscriptions.push(
    status,
    { dispose: () => engine.dispose() },
    registry,
    tree.provider,
    ...registerModelCommands(registry, tree, channel, logger),
  );
}

export function deactivate(): void {
  // Everything is disposed through context.subscriptions.
}
