/**
 * Layer Lens: Compare Models… — two models with the same input, in the order
 * a user thinks of them: A, the original, first; then B, e.g. its fine-tuned
 * copy. The inspector of B opens on its Compare tab with A as the reference.
 * Called with both (the result card's "Compare with original") it asks
 * nothing; called on a fine-tuned model alone (the Models view) it takes the
 * model it was fine-tuned from as A; called on any other model it is A and
 * only B is asked for.
 */
import * as vscode from 'vscode';
import { modelName, sourceModelOf } from '../panels/inspector/compareController';
import { InspectorPanel, type InspectorDeps } from '../panels/inspector/inspectorPanel';
import type { ModelRegistry } from '../services/modelRegistry';
import { modelUriArg } from './modelArg';

/** A model from the workspace, `first` ranked first (the likely answer). */
async function pickModel(registry: ModelRegistry, title: string, placeHolder: string, o: { exclude?: vscode.Uri; rank?: (u: vscode.Uri) => number; why?: (u: vscode.Uri) => string | undefined } = {}): Promise<vscode.Uri | undefined> {
  const all = (await registry.list()).filter((u) => u.fsPath !== o.exclude?.fsPath);
  if (all.length === 0) {
    void vscode.window.showInformationMessage('There is no other model in this workspace to compare with. Fine-tune one first (Layer Lens: Fine-Tune…).');
    return undefined;
  }
  const rank = o.rank ?? (() => 0);
  const items = all
    .sort((x, y) => rank(x) - rank(y) || x.fsPath.localeCompare(y.fsPath))
    .map((uri) => ({ label: modelName(uri.fsPath), description: vscode.workspace.asRelativePath(uri), detail: o.why?.(uri), uri }));
  return (await vscode.window.showQuickPick(items, { title, placeHolder, matchOnDescription: true }))?.uri;
}

export function registerCompareCommands(deps: InspectorDeps): vscode.Disposable[] {
  const { registry } = deps;
  return [
    vscode.commands.registerCommand('layerLens.compareModels', async (first?: unknown, second?: unknown) => {
      let a = modelUriArg(first);
      let b = modelUriArg(second);
      if (a && !b) {
        // One model given: a fine-tuned one is compared with its original; any other is the original.
        const source = sourceModelOf(a.fsPath);
        if (source) [a, b] = [vscode.Uri.file(source), a];
      }
      if (!a) {
        const active = InspectorPanel.active()?.modelUri;
        a = await pickModel(registry, 'Layer Lens: Compare Models (1/2) — A, the original', 'The reference model, e.g. the one you fine-tuned from', {
          rank: (u) => (u.fsPath === active?.fsPath ? 0 : sourceModelOf(u.fsPath) ? 2 : 1),
          why: (u) => (u.fsPath === active?.fsPath ? 'open in the inspector' : undefined),
        });
        if (!a) return;
      }
      if (!b) {
        const parent = a;
        b = await pickModel(registry, `Layer Lens: Compare Models (2/2) — B, compared with ${modelName(parent.fsPath)}`, 'E.g. its fine-tuned copy; it must take the same input', {
          exclude: parent,
          rank: (u) => (sourceModelOf(u.fsPath) === parent.fsPath ? 0 : 1),
          why: (u) => (sourceModelOf(u.fsPath) === parent.fsPath ? `fine-tuned from ${modelName(parent.fsPath)}` : undefined),
        });
        if (!b) return;
      }
      // A new inspector of B starts on the image A's inspector shows (after a fine-tune: the one it trained with).
      const image = InspectorPanel.forModel(b)?.currentImage ? undefined : (InspectorPanel.forModel(a)?.currentImage ?? undefined);
      InspectorPanel.show(b, deps, image).compareWith(a);
    }),
  ];
}
