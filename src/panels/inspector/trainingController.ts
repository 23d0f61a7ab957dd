/**
 * The host side of an inspector's Training tab: the model's training runs
 * (TrainingRuns) streamed to the chart and log, the run so far for a tab
 * that was rebuilt, the result card and its actions, the Stop button, and
 * the preview of the recipe's augmentations.
 */
import type * as vscode from 'vscode';
import type { Handlers } from '../../protocol/rpc';
import type { WebviewApi } from '../../protocol/webviewApi';
import { badInput, type PanelContext } from './context';

type TrainingMethods = 'stopTraining' | 'augmentPreview' | 'trainingState' | 'runAction';

export class TrainingController implements vscode.Disposable {
  private readonly subscriptions: vscode.Disposable[];

  constructor(private readonly panel: PanelContext) {
    const mine = (uri: vscode.Uri) => uri.fsPath === panel.modelUri.fsPath;
    const { runs } = panel.deps;
    this.subscriptions = [
      runs.onProgress((e) => mine(e.model) && panel.post({ type: 'train', progress: e.progress })),
      runs.onStopped((e) => mine(e.model) && panel.post({ type: 'trainStopped', status: e.status, message: e.message })),
      runs.onCard((e) => mine(e.model) && panel.post({ type: 'trainCard', card: e.card })),
      runs.onAugmentPreview((e) => mine(e.model) && panel.post({ type: 'augmentPreview', preview: e.preview })),
    ];
  }

  handlers(): Pick<Handlers<WebviewApi>, TrainingMethods> {
    const { recipes, runs } = this.panel.deps;
    const model = this.panel.modelUri;
    return {
      stopTraining: () => runs.stop(model),
      trainingState: () => runs.snapshot(model),
      runAction: ({ id }) => {
        try {
          runs.runAction(model, id);
        } catch (e) {
          throw badInput(e instanceof Error ? e.message : String(e));
        }
      },
      augmentPreview: async () => {
        const imagePath = this.panel.imagePath();
        if (!imagePath) throw badInput('No image yet: pick one first.');
        return runs.previewAugmentations(model, imagePath, (await recipes.recipe(model)).finetune);
      },
    };
  }

  dispose(): void {
    for (const s of this.subscriptions) s.dispose();
  }
}
