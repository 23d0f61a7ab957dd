/**
 * Layer Lens: Compare Models… — two models with the same input, typically a
 * model and its fine-tuned copy: the inspector of B (the compared model)
 * opens on its Compare tab with A (the reference, e.g. the original). Also
 * offered after a fine-tune ("Compare with original").
 */
import * as vscode from 'vscode';
import { pickReferenceFor } from '../panels/inspector/compareController';
import { InspectorPanel, type InspectorDeps } from '../panels/inspector/inspectorPanel';
import { resolveModel } from './modelArg';

export function registerCompareCommands(deps: InspectorDeps): vscode.Disposable[] {
  const { registry } = deps;
  return [
    vscode.commands.registerCommand('layerLens.compareModels', async (arg?: unknown, referenceArg?: unknown) => {
      const model = await resolveModel(registry, arg, 'Compare which model (B, e.g. the fine-tuned one)?');
      if (!model) return;
      const reference = referenceArg instanceof vscode.Uri ? referenceArg : typeof referenceArg === 'string' ? vscode.Uri.file(referenceArg) : await pickReferenceFor(registry, model);
      if (!reference) return;
      // A new inspector of B starts on the image the reference's inspector shows (after a fine-tune: the one it trained with).
      const image = InspectorPanel.forModel(model)?.currentImage ? undefined : (InspectorPanel.forModel(reference)?.currentImage ?? undefined);
      InspectorPanel.show(model, deps, image).compareWith(reference);
    }),
  ];
}
