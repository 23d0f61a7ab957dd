/**
 * What every command module does first: find the model it is about (its
 * argument, the active inspector, or a quick pick), check workspace trust,
 * and check that the model is one it can work on.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { ModelSummary } from '../protocol/model';
import { InspectorPanel, type InspectorDeps } from '../panels/inspector/inspectorPanel';
import type { ModelRegistry } from '../services/modelRegistry';
import type { ProgressRuns } from '../services/progressRuns';
import type { ModelNode } from '../views/modelTreeProvider';

/** What the command modules get from extension.ts: the inspector's services, long runs, the log channel. */
export interface CommandDeps extends InspectorDeps {
  jobs: ProgressRuns;
  channel: vscode.LogOutputChannel;
}

/** A model given as an argument: a Uri, a path, or a Models view node. */
export function modelUriArg(arg: unknown): vscode.Uri | undefined {
  if (arg instanceof vscode.Uri) return arg;
  if (typeof arg === 'string' && arg.length > 0) return vscode.Uri.file(arg);
  if (arg && typeof arg === 'object' && 'uri' in arg && (arg as ModelNode).uri instanceof vscode.Uri) return (arg as ModelNode).uri;
  return undefined;
}

/** The model a command is about: its argument, else the active inspector, else a quick pick. */
export async function resolveModel(registry: ModelRegistry, arg: unknown, placeHolder = 'Pick a model', preferActive = true): Promise<vscode.Uri | undefined> {
  const given = arg instanceof vscode.Uri || (arg && typeof arg === 'object') ? modelUriArg(arg) : undefined;
  if (given) return given;
  const active = preferActive ? InspectorPanel.active() : undefined;
  if (active) return active.modelUri;
  const models = await registry.list();
  if (models.length === 1) return models[0];
  if (models.length === 0) {
    const choice = await vscode.window.showInformationMessage('No model (TF.js model.json, Keras .h5/.keras or ONNX .onnx) in this workspace.', 'Open Model…');
    if (choice) await vscode.commands.executeCommand('layerLens.openModel');
    return undefined;
  }
  const picked = await vscode.window.showQuickPick(
    // As the Models view names them: a model.json by its folder, a Keras or ONNX file by its own name.
    models.map((uri) => ({ label: path.basename(uri.fsPath) === 'model.json' ? path.basename(path.dirname(uri.fsPath)) : path.basename(uri.fsPath), description: vscode.workspace.asRelativePath(uri), uri })),
    { placeHolder, title: 'Layer Lens' },
  );
  return picked?.uri;
}

/** A folder argument (a path or a Uri), if the command got one. */
export function folderArg(arg: unknown): vscode.Uri | undefined {
  return typeof arg === 'string' ? vscode.Uri.file(arg) : arg instanceof vscode.Uri ? arg : undefined;
}

/** True in a trusted workspace; else says why `what` does not run, and false. */
export function trusted(what: string): boolean {
  if (vscode.workspace.isTrusted) return true;
  void vscode.window.showWarningMessage(`Layer Lens does not ${what} in an untrusted workspace (it writes files). Trust this folder to continue (Manage Workspace Trust).`);
  return false;
}

/**
 * The model's summary when `what` can use it (graph models only when
 * `graphToo`, ONNX models only when `onnxToo`); else shows why not and gives
 * undefined.
 */
export async function usableSummary(
  registry: ModelRegistry,
  model: vscode.Uri,
  what: string,
  o: { graphToo?: boolean; onnxToo?: boolean; cannot?: string } = {},
): Promise<ModelSummary | undefined> {
  try {
    const s = await registry.summary(model);
    if (s.format === 'onnx' && !o.onnxToo) {
      void vscode.window.showWarningMessage(`${s.name} is an ONNX model: ${what} would train its backbone, which ONNX Runtime cannot. Fine-Tune trains a new head on it.`);
      return undefined;
    }
    if (s.format === 'graph' && !o.graphToo) {
      void vscode.window.showWarningMessage(`${s.name} is a graph model (inference only); ${what} needs a TF.js layers model.`);
      return undefined;
    }
    return s;
  } catch (e) {
    void vscode.window.showErrorMessage(`${o.cannot ?? 'Layer Lens cannot use this model'}: ${e instanceof Error ? e.message : String(e)}`);
    return undefined;
  }
}
