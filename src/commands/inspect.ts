/**
 * Commands that open the inspector: Inspect Model (palette, tree, model.json
 * context menu), Inspect with Layer Lens (image context menu) and Pick Input
 * Image (the active inspector).
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { ModelRegistry } from '../modelRegistry';
import { InspectorPanel, type InspectorDeps } from '../panels/inspectorPanel';
import type { ModelNode } from '../views/modelTreeProvider';
import { pickImage } from './pickImage';

/** The model a command is about: its argument, else the active inspector, else a quick pick. */
export async function resolveModel(registry: ModelRegistry, arg: unknown, placeHolder = 'Pick a model', preferActive = true): Promise<vscode.Uri | undefined> {
  if (arg instanceof vscode.Uri) return arg;
  if (arg && typeof arg === 'object' && 'uri' in arg && (arg as ModelNode).uri instanceof vscode.Uri) return (arg as ModelNode).uri;
  const active = preferActive ? InspectorPanel.active() : undefined;
  if (active) return active.modelUri;
  const models = await registry.list();
  if (models.length === 1) return models[0];
  if (models.length === 0) {
    const choice = await vscode.window.showInformationMessage('No TF.js model (model.json) in this workspace.', 'Open Model…');
    if (choice) await vscode.commands.executeCommand('layerLens.openModel');
    return undefined;
  }
  const picked = await vscode.window.showQuickPick(
    models.map((uri) => ({ label: path.basename(path.dirname(uri.fsPath)), description: vscode.workspace.asRelativePath(uri), uri })),
    { placeHolder, title: 'Layer Lens' },
  );
  return picked?.uri;
}

export function registerInspectCommands(registry: ModelRegistry, deps: InspectorDeps): vscode.Disposable[] {
  return [
    vscode.commands.registerCommand('layerLens.inspectModel', async (arg?: unknown) => {
      const uri = await resolveModel(registry, arg, 'Which model to inspect?', false);
      if (uri) InspectorPanel.show(uri, deps);
    }),
    vscode.commands.registerCommand('layerLens.inspectImage', async (arg?: vscode.Uri) => {
      const image = arg instanceof vscode.Uri ? arg : await pickImage();
      if (!image) return;
      const open = InspectorPanel.all();
      const model = open.length === 1 ? open[0].modelUri : await resolveModel(registry, undefined, `Inspect ${path.basename(image.fsPath)} with which model?`);
      if (model) InspectorPanel.show(model, deps, image.fsPath);
    }),
    vscode.commands.registerCommand('layerLens.pickImage', async () => {
      const open = InspectorPanel.all();
      const model = open.length === 1 ? open[0].modelUri : await resolveModel(registry, undefined, 'Pick an image for which model?');
      if (!model) return;
      const image = await pickImage(model);
      if (image) InspectorPanel.show(model, deps, image.fsPath);
    }),
  ];
}
