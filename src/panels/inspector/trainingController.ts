/**
 * The host side of an inspector's Training tab: the model's training runs
 * (TrainingRuns) streamed to the chart and log, the Stop button, and the
 * preview of the recipe's augmentations.
 */
import type * as vscode from 'vscode';
import type { Handlers } from '../../protocol/rpc';
import { augmentSummary } from '../../protocol/train';
import type { WebviewApi } from '../../protocol/webviewApi';
import { badInput, type PanelContext } from './context';

type TrainingMethods = 'stopTraining' | 'augmentPreview';

export class TrainingController implements vscode.Disposable {
  private readonly subscriptions: vscode.Disposable[];

  constructor(private readonly panel: PanelContext) {
    const mine = (uri: vscode.Uri) => uri.fsPath === panel.modelUri.fsPath;
    const { runs } = panel.deps;
    this.subscriptions = [
      runs.onProgress((e) => mine(e.model) && panel.post({ type: 'train', progress: e.progress })),
      runs.onStopped((e) => mine(e.model) && panel.post({ type: 'trainStopped', status: e.status, message: e.message })),
    ];
  }

  handlers(): Pick<Handlers<WebviewApi>, TrainingMethods> {
    const { engine, registry, recipes, runs } = this.panel.deps;
    const model = this.panel.modelUri;
    return {
      stopTraining: () => runs.stop(model),
      augmentPreview: async () => {
        const imagePath = this.panel.imagePath();
        if (!imagePath) throw badInput('No image yet: pick one first.');
        const summary = await registry.summary(model);
        const recipe = await recipes.recipe(model);
        const [, h, w] = summary.inputShape;
        const size = recipe.finetune.imageSize ?? [typeof h === 'number' && h > 0 ? h : 128, typeof w === 'number' && w > 0 ? w : 128];
        const out = await engine.call('augmentPreview', {
          imagePath,
          settings: recipe.finetune.augment,
          n: 8,
          seed: recipe.finetune.seed,
          height: Math.min(size[0], 256),
          width: Math.min(size[1], 256),
        });
        return { summary: augmentSummary(recipe.finetune.augment), ...out };
      },
    };
  }

  dispose(): void {
    for (const s of this.subscriptions) s.dispose();
  }
}
