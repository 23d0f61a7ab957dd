/**
 * Layer Lens: Fine-Tune… — pick a model and a dataset folder (one sub-folder
 * per class), then the form shows what will train and with which settings,
 * each editable (ui/finetuneForm.ts), and Start. TrainingRuns trains in the
 * worker and streams every epoch to the output channel, a cancellable
 * progress notification and the inspector's Training tab, which keeps the
 * result card (the toast's actions) until the next run. The result is a new
 * folder next to the model; the source is never touched. One run per model.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { firstChangingMapLayer, outputCanChange } from '../protocol/freezePlan';
import type { ModelSummary } from '../protocol/model';
import { misclassified, type FinetuneResult } from '../protocol/train';
import { InspectorPanel, type InspectorDeps } from '../panels/inspector/inspectorPanel';
import { finetuneForm, type FinetuneChoice } from '../ui/finetuneForm';
import { pickDataset } from '../ui/pickers';
import { folderArg, resolveModel, usableSummary } from './modelArg';

export function registerFinetuneCommands(deps: InspectorDeps, channel: vscode.LogOutputChannel): vscode.Disposable[] {
  return [vscode.commands.registerCommand('layerLens.finetune', (arg?: unknown, dataset?: unknown, choice?: unknown) => finetune(deps, channel, arg, dataset, choice))];
}

/** The live maps' layer: the inspector's pinned or selected one, else (when training cannot change it) the first layer whose maps it can. */
function probeFor(panel: InspectorPanel, summary: ModelSummary, frozen: string[], freeze: FinetuneChoice['freeze']): { imagePath: string; layerPath: string } | undefined {
  const probe = panel.probe();
  if (!probe || freeze === 'backbone') return probe;
  const plan = freeze === 'none' ? [] : frozen;
  if (outputCanChange(summary.layers, plan, probe.layerPath)) return probe;
  const layer = firstChangingMapLayer(summary.layers, plan);
  return layer ? { imagePath: probe.imagePath, layerPath: layer } : probe;
}

async function finetune(deps: InspectorDeps, channel: vscode.LogOutputChannel, arg?: unknown, datasetArg?: unknown, choiceArg?: unknown): Promise<string | undefined> {
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
  const summary = await usableSummary(registry, model, 'fine-tuning', { onnxToo: true, cannot: 'Layer Lens cannot fine-tune' });
  if (!summary) return undefined;
  const dataset = folderArg(datasetArg) ?? (await pickDataset(model));
  if (!dataset) return undefined;
  const recipe = await recipes.recipe(model);
  const panel = InspectorPanel.show(model, deps);
  // A caller that already chose (a test, another command) passes the choice; a user gets the form.
  const choice =
    (choiceArg as FinetuneChoice | undefined) ??
    (await finetuneForm({
      summary,
      recipe,
      datasetName: vscode.workspace.asRelativePath(dataset),
      preview: async (augment) => {
        const image = panel.currentImage;
        if (!image) throw new Error('the inspector has no image yet: pick one first (Pick Input Image…).');
        runs.showAugmentPreview(model, await runs.previewAugmentations(model, image, { ...recipe.finetune, augment }));
        panel.reveal();
      },
      save: (next) => recipes.save(model, next),
    }));
  if (!choice) return undefined;
  const probe = probeFor(panel, summary, choice.frozen, choice.freeze);
  const result = await runs.finetune({ model, dataset, name: summary.name, settings: choice.settings, frozen: choice.frozen, freeze: choice.freeze, probe });
  if (!result) return undefined;
  // An ONNX fine-tune saves one .onnx in the folder (result.modelPath).
  const out = vscode.Uri.file(result.modelPath ?? path.join(result.outputPath, 'model.json'));
  // The result folder was renamed into place, and file watchers do not report
  // the model.json inside a renamed folder: add it to the Models view here.
  void registry.open(out).catch(() => undefined);
  offerResult(deps, channel, model, summary, result, out);
  return result.outputPath;
}

/** The outcome: a toast with its actions, and the same actions on the Training tab's result card (which stays). */
function offerResult(deps: InspectorDeps, channel: vscode.LogOutputChannel, model: vscode.Uri, summary: ModelSummary, result: FinetuneResult, out: vscode.Uri): void {
  const rel = (p: string) => vscode.workspace.asRelativePath(p);
  const actions = [
    { id: 'inspect', label: 'Inspect', run: () => void vscode.commands.executeCommand('layerLens.inspectModel', out) },
    { id: 'compare', label: 'Compare with original', run: () => void vscode.commands.executeCommand('layerLens.compareModels', model, out) },
    { id: 'reveal', label: 'Reveal in Explorer', run: () => void vscode.commands.executeCommand('revealInExplorer', out) },
    { id: 'log', label: 'Show Log', run: () => channel.show(true) },
  ];
  const e = result.evaluation;
  const lines = [
    `Best ${result.monitor} ${result.bestValue.toFixed(3)} at epoch ${result.bestEpoch} of ${result.epochsRun}${result.restored ? ' (its weights were saved)' : ''}.`,
    ...(e ? [`Validation: ${e.perClass.reduce((a, p) => a + p.correct, 0)}/${e.images.length} correct (${(e.accuracy * 100).toFixed(1)}%), ${misclassified(e).length} misclassified.`] : []),
  ];
  deps.runs.setCard(model, `Fine-tuned ${summary.name} saved to ${rel(result.outputPath)}`, lines, actions);
  void vscode.window.showInformationMessage(`Fine-tuned ${summary.name} saved to ${rel(result.outputPath)}.`, ...actions.filter((a) => a.id !== 'reveal').map((a) => a.label)).then((label) => {
    actions.find((a) => a.label === label)?.run();
  });
}
