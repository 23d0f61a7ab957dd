/**
 * Layer Lens: Fine-Tune… — pick a model and a dataset folder (one sub-folder
 * per class); TrainingRuns trains in the worker with the model's freeze plan
 * and recipe settings and streams every epoch to the output channel, a
 * cancellable progress notification and the inspector's Training tab. The
 * result is a new folder next to the model; the source is never touched. One
 * run per model.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { InspectorPanel, type InspectorDeps } from '../panels/inspector/inspectorPanel';
import { pickDataset } from '../ui/pickers';
import { folderArg, resolveModel, usableSummary } from './modelArg';

export function registerFinetuneCommands(deps: InspectorDeps, channel: vscode.LogOutputChannel): vscode.Disposable[] {
  return [vscode.commands.registerCommand('layerLens.finetune', (arg?: unknown, dataset?: unknown) => finetune(deps, channel, arg, dataset))];
}

async function finetune(deps: InspectorDeps, channel: vscode.LogOutputChannel, arg?: unknown, datasetArg?: unknown): Promise<string | undefined> {
  const { registry, recipes, runs } = deps;
  if (!vscode.workspace.isTrusted) {
    void vscode.window.showWarningMessage('Layer Lens does not train or write files in an untrusted workspace. Trust this folder to fine-tune (Manage Workspace Trust).');
    return undefined;
  }
  const model = await resolveModel(registry, arg, 'Fine-tune which model?', false);
  if (!model) return undefined;
  if (runs.isRunning(model)) {
    void vscode.window.showInformationMessage('A fine-tune of this model is already running; stop it first (the notification or the inspector’s Stop button).');
    return undefined;
  }
  const summary = await usableSummary(registry, model, 'fine-tuning', { cannot: 'Layer Lens cannot fine-tune' });
  if (!summary) return undefined;
  const dataset = folderArg(datasetArg) ?? (await pickDataset(model));
  if (!dataset) return undefined;
  const recipe = await recipes.recipe(model);
  // Live maps: the inspector's pinned probe image and layer (else its current image and layer).
  const probe = InspectorPanel.show(model, deps).probe();
  const result = await runs.finetune({ model, dataset, name: summary.name, settings: recipe.finetune, frozen: recipe.freeze, probe });
  if (!result) return undefined;
  const rel = (p: string) => vscode.workspace.asRelativePath(p);
  const out = vscode.Uri.file(path.join(result.outputPath, 'model.json'));
  // The result folder was renamed into place, and file watchers do not report
  // the model.json inside a renamed folder: add it to the Models view here.
  void registry.open(out).catch(() => undefined);
  void vscode.window.showInformationMessage(`Fine-tuned ${summary.name} saved to ${rel(result.outputPath)}.`, 'Inspect', 'Compare with original', 'Show Log').then((choice) => {
    if (choice === 'Inspect') void vscode.commands.executeCommand('layerLens.inspectModel', out);
    else if (choice === 'Compare with original') void vscode.commands.executeCommand('layerLens.compareModels', out, model);
    else if (choice === 'Show Log') channel.show(true);
  });
  return result.outputPath;
}
