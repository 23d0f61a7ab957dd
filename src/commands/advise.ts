/**
 * Layer Lens: Advise Freeze or Fine-Tune… — the advisor's report on a model
 * and a dataset (computed in the worker from cached embeddings), shown as a
 * Markdown preview, with "Apply" to set the freeze plan it recommends.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { formatAdvisorReport, recommendationLabel } from '../protocol/advise';
import { describeEmbedProgress } from '../protocol/embed';
import { pickDataset } from '../ui/pickers';
import { folderArg, resolveModel, trusted, usableSummary, type CommandDeps } from './modelArg';

const rel = (p: string) => vscode.workspace.asRelativePath(p);

export function registerAdviseCommands(deps: CommandDeps): vscode.Disposable[] {
  return [vscode.commands.registerCommand('layerLens.advise', (arg?: unknown, folder?: unknown) => advise(deps, arg, folder))];
}

async function advise(deps: CommandDeps, arg?: unknown, folderArgument?: unknown): Promise<string[] | undefined> {
  const { engine, registry, recipes, jobs, log, channel } = deps;
  if (!trusted('advise (it caches embeddings)')) return undefined;
  const model = await resolveModel(registry, arg, 'Advise on which model?');
  if (!model) return undefined;
  const summary = await usableSummary(registry, model, 'the advisor', { onnxToo: true });
  if (!summary) return undefined;
  const folder = folderArg(folderArgument) ?? (await pickDataset(model, 'Layer Lens: Advise — the dataset to fine-tune on (one sub-folder of images per class)'));
  if (!folder) return undefined;
  const recipe = await recipes.recipe(model);
  const hold = registry.hold(model);
  const outcome = await jobs
    .run({ title: `Freeze or fine-tune? ${summary.name}` }, (signal, progress) =>
      engine.call(
        'advise',
        { modelPath: model.fsPath, datasetDir: folder.fsPath, learningRate: recipe.finetune.learningRate, seed: recipe.finetune.seed, ...(recipe.finetune.normalization ? { normalization: recipe.finetune.normalization } : {}) },
        { signal, onProgress: (p) => progress.report({ message: describeEmbedProgress(p) }) },
      ),
    )
    .finally(() => hold.dispose());
  if (outcome.status !== 'done') return undefined;
  const report = outcome.value;
  const md = formatAdvisorReport(report, rel);
  for (const line of md.split('\n').filter((l) => l.startsWith('**') || l.startsWith('- '))) log.info(`Advisor: ${line.replace(/\*\*/g, '')}`);
  // A file, not an untitled editor: no "save changes?" prompt when it closes.
  let file = path.join(path.dirname(model.fsPath), '.layerlens', `advice-${path.basename(folder.fsPath).replace(/[^\w.-]+/g, '_')}.md`);
  try {
    // In the model's own .layerlens folder, never through a link (io/ownDir.ts).
    const { ownDir } = await import('../engine/io/ownDir');
    file = path.join((await ownDir(path.dirname(model.fsPath), ['.layerlens'], { create: true }))!, path.basename(file));
    const { writeFileAtomic } = await import('../engine/io/atomic');
    await writeFileAtomic(file, md);
    await vscode.commands.executeCommand('markdown.showPreview', vscode.Uri.file(file));
  } catch (e) {
    log.warn(`Could not show the advisor's report as a preview (${e instanceof Error ? e.message : String(e)}); it is in the log.`);
  }
  const apply = report.plan.length > 0 ? `Apply: Freeze Up To ${report.planUpTo}` : 'Apply: Unfreeze All';
  const applyPlan = async () => {
    try {
      await recipes.setPlan(model, report.plan);
      log.info(`Advisor's freeze plan applied to ${rel(model.fsPath)}: ${report.plan.length ? report.plan.join(', ') : 'nothing frozen'}${report.advice.learningRateFactor !== 1 ? `; set finetune.learningRate to ${report.learningRate.suggested} in layerlens.json` : ''}`);
    } catch (e) {
      void vscode.window.showErrorMessage(`Layer Lens could not apply the freeze plan: ${e instanceof Error ? e.message : String(e)}`);
    }
  };
  const verdict = `${recommendationLabel(report.advice.recommendation)} (similarity ${report.similarity.toFixed(2)}, smallest class ${Math.min(...report.classes.map((c) => c.images))} images).`;
  // The toast goes after a few seconds; the Training tab keeps the same actions.
  const actions = [
    { id: 'apply', label: apply, run: () => void applyPlan() },
    { id: 'report', label: 'Show Report', run: () => void vscode.commands.executeCommand('markdown.showPreview', vscode.Uri.file(file)) },
    { id: 'log', label: 'Show Log', run: () => channel.show(true) },
  ];
  deps.runs.setCard(model, `Advice for ${path.basename(folder.fsPath)}`, [verdict], actions);
  const choice = await vscode.window.showInformationMessage(verdict, apply, 'Show Log');
  if (choice === apply) await applyPlan();
  else if (choice === 'Show Log') channel.show(true);
  return report.plan;
}
