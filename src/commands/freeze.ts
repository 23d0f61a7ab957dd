/**
 * Palette and tree commands that change a model's freeze plan: Freeze
 * Layers… (multi-select), Freeze Up To Layer…, Unfreeze All, Freeze All
 * BatchNorm Layers, Toggle Freeze (tree item) and Undo Freeze Change. All of
 * them go through the RecipeService, so the tree, the inspector and
 * layerlens.json stay in step.
 */
import * as vscode from 'vscode';
import type { Logger } from '../logger';
import { freezeAllBatchNorm, freezeStates, freezeUpTo, normalizePlan, toggle, trainableCounts } from '../protocol/freezePlan';
import { formatCount, formatShape, type LayerRow } from '../protocol/model';
import type { ModelRegistry } from '../services/modelRegistry';
import type { RecipeService } from '../services/recipeService';
import type { ModelNode } from '../views/modelTreeProvider';
import { resolveModel } from './modelArg';

/**
 * Quick-pick items for layers: those with weights (what a checkbox freezes),
 * or with `everyLayer` all of them, as Freeze Up To counts `model.layers[:k]`
 * (so "up to gap", a pooling layer, is a choice).
 */
function layerItems(rows: LayerRow[], states: Map<string, string>, everyLayer = false) {
  return rows
    .filter((r) => everyLayer || r.isContainer || (r.freezableParams ?? r.trainableParams) > 0)
    .map((r) => ({
      label: `${'  '.repeat(r.depth)}${r.name}`,
      description: `${r.className} ${formatShape(r.outputShape)}`,
      detail: `${r.params > 0 || r.isContainer ? `${formatCount(r.params)} params` : 'no weights'}${states.get(r.path) === 'partial' ? ' · partly frozen' : ''}`,
      picked: states.get(r.path) === 'frozen',
      row: r,
    }));
}

export function registerFreezeCommands(registry: ModelRegistry, freeze: RecipeService, log: Logger): vscode.Disposable[] {
  const withModel = async (arg: unknown, what: string) => {
    const uri = await resolveModel(registry, arg, `${what}: which model?`);
    if (!uri) return undefined;
    const summary = await registry.summary(uri);
    if (summary.format !== 'layers') {
      void vscode.window.showWarningMessage(
        summary.format === 'onnx'
          ? `${summary.name} is an ONNX model: its whole backbone stays frozen (ONNX Runtime cannot train it), so there is nothing to freeze; Fine-Tune trains a new head.`
          : `${summary.name} is a graph model (inference only); it has no layers to freeze.`,
      );
      return undefined;
    }
    return { uri, summary, plan: await freeze.frozen(uri) };
  };
  const report = async (uri: vscode.Uri, rows: LayerRow[], what: string) => {
    const c = trainableCounts(rows, await freeze.frozen(uri));
    log.info(`${what} in ${vscode.workspace.asRelativePath(uri)}: ${formatCount(c.trainable)} of ${formatCount(c.total)} parameters trainable`);
    vscode.window.setStatusBarMessage(`Layer Lens: ${formatCount(c.trainable)} of ${formatCount(c.total)} parameters trainable`, 5000);
  };
  const guard = (fn: (...args: unknown[]) => Promise<void>) => async (...args: unknown[]) => {
    try {
      await fn(...args);
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      log.error(message);
      void vscode.window.showErrorMessage(`Layer Lens: ${message}`);
    }
  };
  return [
    vscode.commands.registerCommand(
      'layerLens.freezeLayers',
      guard(async (arg) => {
        const m = await withModel(arg, 'Freeze layers');
        if (!m) return;
        const picked = await vscode.window.showQuickPick(layerItems(m.summary.layers, freezeStates(m.summary.layers, m.plan)), {
          canPickMany: true,
          title: `Freeze layers of ${m.summary.name}`,
          placeHolder: 'Checked layers are frozen (training leaves them unchanged)',
          matchOnDescription: true,
        });
        if (!picked) return;
        await freeze.setPlan(m.uri, normalizePlan(m.summary.layers, picked.map((p) => p.row.path)));
        await report(m.uri, m.summary.layers, 'Freeze plan changed');
      }),
    ),
    vscode.commands.registerCommand(
      'layerLens.freezeUpTo',
      guard(async (arg) => {
        const node = arg as ModelNode | undefined;
        const m = await withModel(node?.uri ?? arg, 'Freeze up to layer');
        if (!m) return;
        let path = node?.kind === 'layer' ? node.row.path : undefined;
        if (!path) {
          const picked = await vscode.window.showQuickPick(layerItems(m.summary.layers, new Map(), true), {
            title: `Freeze ${m.summary.name} up to and including…`,
            placeHolder: 'Every layer up to this one is frozen; the rest train',
          });
          path = picked?.row.path;
        }
        if (!path) return;
        await freeze.setPlan(m.uri, freezeUpTo(m.summary.layers, path));
        await report(m.uri, m.summary.layers, `Frozen up to ${path}`);
      }),
    ),
    vscode.commands.registerCommand(
      'layerLens.unfreezeAll',
      guard(async (arg) => {
        const m = await withModel(arg, 'Unfreeze all');
        if (!m) return;
        await freeze.setPlan(m.uri, []);
        await report(m.uri, m.summary.layers, 'Unfrozen all layers');
      }),
    ),
    vscode.commands.registerCommand(
      'layerLens.freezeBatchNorm',
      guard(async (arg) => {
        const m = await withModel(arg, 'Freeze all BatchNorm layers');
        if (!m) return;
        await freeze.setPlan(m.uri, freezeAllBatchNorm(m.summary.layers, m.plan));
        await report(m.uri, m.summary.layers, 'Froze all BatchNormalization layers');
      }),
    ),
    vscode.commands.registerCommand(
      'layerLens.toggleFreeze',
      guard(async (arg) => {
        const node = arg as ModelNode | undefined;
        if (!node || node.kind !== 'layer') {
          await vscode.commands.executeCommand('layerLens.freezeLayers');
          return;
        }
        const summary = await registry.summary(node.uri);
        await freeze.setPlan(node.uri, toggle(await freeze.frozen(node.uri), node.row.path, summary.layers));
        await report(node.uri, summary.layers, `Toggled ${node.row.path}`);
      }),
    ),
    vscode.commands.registerCommand(
      'layerLens.undoFreeze',
      guard(async (arg) => {
        const uri = await resolveModel(registry, arg, 'Undo the last freeze change of which model?');
        if (!uri) return;
        if (!(await freeze.undo(uri))) {
          void vscode.window.showInformationMessage('No freeze change to undo for this model in this session.');
          return;
        }
        await report(uri, (await registry.summary(uri)).layers, 'Undid the last freeze change');
      }),
    ),
  ];
}
