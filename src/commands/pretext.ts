/**
 * Layer Lens: Pretrain with Rotation Pretext… — self-supervised pretraining
 * of a model's backbone on unlabelled images, run and streamed like a
 * fine-tune (TrainingRuns); the result is a new model folder to fine-tune.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { InspectorPanel } from '../panels/inspector/inspectorPanel';
import { pickFolder } from '../ui/pickers';
import { folderArg, resolveModel, trusted, usableSummary, type CommandDeps } from './modelArg';

export function registerPretextCommands(deps: CommandDeps): vscode.Disposable[] {
  return [vscode.commands.registerCommand('layerLens.pretrainRotation', (arg?: unknown, folder?: unknown, epochs?: unknown) => pretrain(deps, arg, folder, epochs))];
}

async function askEpochs(): Promise<number | undefined> {
  const text = await vscode.window.showInputBox({
    title: 'Layer Lens: Rotation Pretext — epochs',
    prompt: 'Each epoch shows every image turned by 0, 90, 180 and 270 degrees',
    value: '10',
    validateInput: (v) => (/^\d+$/.test(v) && Number(v) >= 1 && Number(v) <= 1000 ? undefined : 'A whole number from 1 to 1000'),
  });
  return text ? Number(text) : undefined;
}

async function pretrain(deps: CommandDeps, arg?: unknown, folderArgument?: unknown, epochsArg?: unknown): Promise<string | undefined> {
  const { registry, recipes, runs, log } = deps;
  if (!trusted('pretrain')) return undefined;
  const model = await resolveModel(registry, arg, 'Pretrain which model’s backbone?');
  if (!model) return undefined;
  if (runs.isRunning(model)) {
    void vscode.window.showInformationMessage('A training run of this model is already running; stop it first (the notification or the inspector’s Stop button).');
    return undefined;
  }
  const summary = await usableSummary(registry, model, 'pretraining');
  if (!summary) return undefined;
  const folder = folderArg(folderArgument) ?? (await pickFolder('Unlabelled images for the rotation task (read recursively)', model, 'Pretrain on These Images'));
  if (!folder) return undefined;
  const epochs = typeof epochsArg === 'number' ? epochsArg : await askEpochs();
  if (epochs === undefined) return undefined;
  const recipe = await recipes.recipe(model);
  InspectorPanel.show(model, deps);
  const result = await runs.pretext({ model, images: folder, name: summary.name, epochs, seed: recipe.finetune.seed });
  if (!result) return undefined;
  const rel = (p: string) => vscode.workspace.asRelativePath(p);
  const acc = `rotation accuracy ${(result.acc * 100).toFixed(1)}%${result.valAcc !== undefined ? ` (held out ${(result.valAcc * 100).toFixed(1)}%)` : ''}`;
  log.info(`Pretrained backbone (up to ${result.cutLayer}) saved to ${rel(result.outputPath)}; ${acc}. Fine-tune it with its backbone frozen to use it.`);
  const out = vscode.Uri.file(path.join(result.outputPath, 'model.json'));
  const actions = [
    { id: 'inspect', label: 'Inspect', run: () => void vscode.commands.executeCommand('layerLens.inspectModel', out) },
    { id: 'finetune', label: 'Fine-Tune…', run: () => void vscode.commands.executeCommand('layerLens.finetune', out) },
  ];
  runs.setCard(model, `Pretrained ${summary.name} saved to ${rel(result.outputPath)}`, [`Rotation accuracy ${acc.replace(/^rotation accuracy /, '')} on ${result.images} unlabelled images. Fine-tune it with its backbone frozen to use what it learned.`], actions, 'pretext');
  void vscode.window.showInformationMessage(`Pretrained ${summary.name} on ${result.images} unlabelled images (${acc}); saved ${rel(result.outputPath)}.`, ...actions.map((a) => a.label)).then((c) => {
    actions.find((a) => a.label === c)?.run();
  });
  return result.outputPath;
}
