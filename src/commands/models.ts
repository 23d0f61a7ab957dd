/**
 * Commands that find and open models: Open Model…, Refresh, Show Log.
 */
import * as vscode from 'vscode';
import type { ModelRegistry } from '../services/modelRegistry';
import type { ModelTreeProvider, ModelNode } from '../views/modelTreeProvider';
import type { Logger } from '../logger';

export function registerModelCommands(
  registry: ModelRegistry,
  tree: { provider: ModelTreeProvider; view: vscode.TreeView<ModelNode> },
  channel: vscode.LogOutputChannel,
  log: Logger,
): vscode.Disposable[] {
  return [
    vscode.commands.registerCommand('layerLens.openModel', async (arg?: vscode.Uri) => {
      let uri = arg instanceof vscode.Uri ? arg : undefined;
      if (!uri) {
        const picked = await vscode.window.showOpenDialog({
          canSelectMany: false,
          openLabel: 'Open Model',
          title: 'Layer Lens: Open Model',
          filters: { 'TF.js, Keras or ONNX model': ['json', 'h5', 'keras', 'onnx'] },
        });
        uri = picked?.[0];
      }
      if (!uri) return;
      const node = tree.provider.modelNode(uri);
      try {
        await registry.open(uri);
        await tree.view.reveal(node, { select: true, focus: true, expand: true });
      } catch (e) {
        const message = e instanceof Error ? e.message : String(e);
        log.error(message);
        const choice = await vscode.window.showErrorMessage(`Layer Lens could not open the model: ${message}`, 'Show Log');
        if (choice === 'Show Log') channel.show(true);
      }
    }),
    vscode.commands.registerCommand('layerLens.refreshModels', () => registry.rescan()),
    vscode.commands.registerCommand('layerLens.showLog', () => channel.show(true)),
  ];
}
