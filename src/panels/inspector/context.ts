/**
 * What an inspector's tab controllers share with their panel: the model,
 * the current input image, the services, and the way to the webview.
 */
import type * as vscode from 'vscode';
import type { EngineClient } from '../../engineClient';
import type { Logger } from '../../logger';
import type { HostEvent } from '../../protocol/webviewApi';
import type { LatentRequests } from '../../services/latentRequests';
import type { ModelRegistry } from '../../services/modelRegistry';
import type { RecipeService } from '../../services/recipeService';
import type { TrainingRuns } from '../../services/trainingRuns';

/** The services every inspector uses (made once in extension.ts). */
export interface InspectorDeps {
  extensionUri: vscode.Uri;
  engine: EngineClient;
  registry: ModelRegistry;
  recipes: RecipeService;
  runs: TrainingRuns;
  latent: LatentRequests;
  log: Logger;
}

/** One panel as its controllers see it. */
export interface PanelContext {
  readonly modelUri: vscode.Uri;
  readonly deps: InspectorDeps;
  /** The input image, if one was picked. */
  imagePath(): string | null;
  setImagePath(p: string): void;
  post(event: HostEvent): void;
}

export function badInput(message: string): Error {
  return Object.assign(new Error(message), { code: 'bad-input' });
}
