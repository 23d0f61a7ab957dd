/**
 * Commands that open the inspector: Inspect Model (palette, tree, model.json
 * context menu), Inspect with Layer Lens (image context menu) and Pick Input
 * Image (the active inspector).
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { InspectorPanel, type InspectorDeps } from '../panels/inspector/inspectorPanel';
import { pickImage } from '../ui/pickers';
import { resolveModel } from './modelArg';

export function registerInspectCommands(deps: InspectorDeps): vscode.Disposable[] {
  const { registry } = deps;
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
