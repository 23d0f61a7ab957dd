/**
 * The Models view in the Explorer: every model in the workspace, expanding to
 * its layers (nested models as nested nodes). Description = class and output
 * shape (a model: what it trains under the freeze plan, and for a model Layer
 * Lens trained its val accuracy and time first); tooltip = params and what a
 * fine-tune trains of them under the plan. Long layer names lose their middle.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { ModelRegistry } from '../services/modelRegistry';
import type { RecipeService } from '../services/recipeService';
import { freezeStates, trainableCounts, trainableUnder, type FreezeState } from '../protocol/freezePlan';
import { formatCount, formatOutputs, formatShape, middleEllipsis, type LayerRow } from '../protocol/model';
import { originDescription, originTooltip, readModelOrigin, runLabel, type ModelOrigin } from './modelOrigin';

/**
 * Longest label before its middle gives way: the tree cuts a long label at
 * its end, which made "block_1_depthwise…" and "block_1_depthwise…_BN" look
 * the same in a side bar of 250 px, and three runs of one afternoon all
 * "shapes-cnn-finetuned-20261203-…"; the full name is in the tooltip.
 */
const maxLabel = 22;
const stateWord = (s: FreezeState) => (s === 'frozen' ? 'frozen' : s === 'partial' ? 'partly frozen' : 'trainable');

export type ModelNode =
  | { kind: 'model'; uri: vscode.Uri }
  | { kind: 'layer'; uri: vscode.Uri; row: LayerRow }
  | { kind: 'message'; uri: vscode.Uri; message: string; error: boolean };

export class ModelTreeProvider implements vscode.TreeDataProvider<ModelNode>, vscode.Disposable {
  static readonly viewType = 'layerLens.models';

  private readonly changed = new vscode.EventEmitter<ModelNode | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private readonly disposables: vscode.Disposable[] = [this.changed];
  /** Stable node objects, so reveal() and refreshes find the same element. */
  private readonly modelNodes = new Map<string, ModelNode & { kind: 'model' }>();
  /** getChildren() calls in flight per model, and models whose refresh waits for them. */
  private readonly fetching = new Map<string, number>();
  private readonly refreshAfterFetch = new Set<string>();
  /** What metadata.json and metrics.json say of a model Layer Lens trained (null: nothing), read once per change. */
  private readonly origins = new Map<string, ModelOrigin | null | 'reading'>();

  private constructor(
    private readonly registry: ModelRegistry,
    private readonly freeze: RecipeService,
  ) {
    const refresh = (uri: vscode.Uri | undefined) => {
      if (uri) this.origins.delete(uri.fsPath);
      else this.origins.clear();
      // VS Code attaches the children it is fetching to the node it had when
      // the fetch began; refreshing that node meanwhile replaces it, the
      // children stay registered under the old one, and the next refresh
      // fails with "Element with id … is already registered" (and the layers
      // vanish). Loading a model on expand fires exactly such a refresh, so
      // a model's refresh waits until its fetches are done.
      if (uri && this.fetching.has(uri.fsPath)) {
        this.refreshAfterFetch.add(uri.fsPath);
        return;
      }
      this.changed.fire(uri ? this.modelNodes.get(uri.fsPath) : undefined);
    };
    this.disposables.push(registry.onDidChange(refresh), freeze.onDidChange(refresh));
  }

  static register(registry: ModelRegistry, freeze: RecipeService): { provider: ModelTreeProvider; view: vscode.TreeView<ModelNode> } {
    const provider = new ModelTreeProvider(registry, freeze);
    // Checking a nested model freezes what is inside through the plan, not by
    // VS Code ticking every child box.
    const view = vscode.window.createTreeView(ModelTreeProvider.viewType, { treeDataProvider: provider, showCollapseAll: true, canSelectMany: true, manageCheckboxStateManually: true });
    provider.disposables.push(
      view,
      view.onDidChangeCheckboxState((e) => void provider.onCheckboxes(e)),
    );
    return { provider, view };
  }

  private async onCheckboxes(e: vscode.TreeCheckboxChangeEvent<ModelNode>): Promise<void> {
    const byModel = new Map<string, { uri: vscode.Uri; frozen: string[]; thawed: string[] }>();
    for (const [node, state] of e.items) {
      if (node.kind !== 'layer') continue;
      const entry = byModel.get(node.uri.fsPath) ?? { uri: node.uri, frozen: [], thawed: [] };
      (state === vscode.TreeItemCheckboxState.Checked ? entry.frozen : entry.thawed).push(node.row.path);
      byModel.set(node.uri.fsPath, entry);
    }
    for (const { uri, frozen, thawed } of byModel.values()) {
      try {
        if (frozen.length) await this.freeze.setFrozen(uri, frozen, true);
        if (thawed.length) await this.freeze.setFrozen(uri, thawed, false);
      } catch (err) {
        void vscode.window.showErrorMessage(`Layer Lens could not save the freeze plan: ${err instanceof Error ? err.message : String(err)}`);
        this.changed.fire(this.modelNodes.get(uri.fsPath));
      }
    }
  }

  private states(uri: vscode.Uri): Map<string, FreezeState> | undefined {
    const s = this.registry.state(uri);
    if (s.kind !== 'loaded') return undefined;
    return freezeStates(s.summary.layers, this.freeze.frozenNow(uri));
  }

  modelNode(uri: vscode.Uri): ModelNode & { kind: 'model' } {
    let n = this.modelNodes.get(uri.fsPath);
    if (!n) {
      n = { kind: 'model', uri };
      this.modelNodes.set(uri.fsPath, n);
    }
    return n;
  }

  getTreeItem(node: ModelNode): vscode.TreeItem {
    switch (node.kind) {
      case 'model':
        return this.modelItem(node.uri);
      case 'layer':
        return this.layerItem(node.uri, node.row, this.states(node.uri)?.get(node.row.path) ?? 'trainable');
      case 'message': {
        const item = new vscode.TreeItem(node.message, vscode.TreeItemCollapsibleState.None);
        item.iconPath = new vscode.ThemeIcon(node.error ? 'error' : 'info', node.error ? new vscode.ThemeColor('errorForeground') : undefined);
        item.tooltip = node.message;
        item.contextValue = 'layerLens.message';
        return item;
      }
    }
  }

  private modelItem(uri: vscode.Uri): vscode.TreeItem {
    const rel = vscode.workspace.asRelativePath(uri);
    // A model.json is named by its folder; a Keras file by its own name.
    const file = path.basename(uri.fsPath);
    const name = file === 'model.json' ? path.basename(path.dirname(uri.fsPath)) : file;
    // A run Layer Lens wrote is named by its parent and time; its folder name is in the tooltip.
    // An ONNX fine-tune's .onnx sits in such a folder under the source's file name.
    const run = runLabel(name) ?? (/\.onnx$/i.test(file) ? runLabel(path.basename(path.dirname(uri.fsPath))) : undefined);
    const label = run?.label ?? middleEllipsis(name, maxLabel);
    const item = new vscode.TreeItem(label, vscode.TreeItemCollapsibleState.Collapsed);
    if (label !== name) item.accessibilityInformation = { label: run ? `${name}, ${run.kind}` : name };
    item.id = `model:${uri.fsPath}`;
    item.resourceUri = uri;
    item.contextValue = 'layerLens.model';
    item.iconPath = new vscode.ThemeIcon(run ? (run.kind === 'fine-tuned' ? 'repo-forked' : 'sync') : 'circuit-board');
    const state = this.registry.state(uri);
    if (state.kind === 'loaded') {
      const s = state.summary;
      const counts = trainableCounts(s.layers, this.freeze.frozenNow(uri));
      if (s.onnx) {
        const o = s.onnx;
        item.description = `ONNX opset ${o.opset} · ${formatCount(s.totalParams)} params`;
        item.tooltip = new vscode.MarkdownString(
          `**${s.name}** — ${rel}\n\nONNX opset ${o.opset}, IR ${o.irVersion}${o.producer ? `, made by ${o.producer}` : ''}\n\n${s.layers.filter((r) => !r.parent).length} nodes · ${formatCount(s.totalParams)} params (the backbone stays frozen; Fine-Tune trains a new head)\n\ninput "${o.inputName}" ${formatShape(o.inputShape)} (${o.layout}) → output ${formatShape(s.outputShape)}\n\nrun by ONNX Runtime ${o.runtime}`,
        );
      } else {
        const trainable = `${formatCount(counts.trainable)} of ${formatCount(counts.total)} params trainable`;
        const origin = this.origin(uri);
        // What sets a trained model apart from its siblings comes first: their names differ only at the end, which the tree cuts.
        const lead = origin ? originDescription(origin, !run) : run?.kind ?? '';
        item.description = s.format === 'graph' ? `graph · ${formatCount(s.totalParams)} params` : lead ? `${lead} · ${trainable}` : trainable;
        if (s.outputs?.length > 1) item.description += ` · ${s.outputs.length} outputs`;
        item.tooltip = new vscode.MarkdownString(
          `**${s.name}** — ${rel}\n\n${s.layers.length} layers · ${s.format === 'graph' ? `${formatCount(s.totalParams)} params` : `${trainable} under the freeze plan`}\n\ninput ${formatShape(s.inputShape)} → ${s.outputs?.length > 1 ? '' : 'output '}${formatOutputs(s)}${s.normalizationFrom ? `\n\npixels: ${s.normalization} (${s.normalizationFrom})` : ''}${origin ? `\n\n${originTooltip(origin)}` : ''}`,
        );
      }
    } else if (state.kind === 'failed') {
      item.description = 'failed to load';
      item.tooltip = state.message;
      item.iconPath = new vscode.ThemeIcon('warning', new vscode.ThemeColor('list.warningForeground'));
    } else {
      // Not loaded yet: where it is, after what sets a trained model apart (that needs no loading).
      const origin = this.origin(uri);
      const where = path.dirname(rel) === '.' ? rel : path.dirname(rel);
      const lead = origin ? originDescription(origin, !run) : run?.kind;
      item.description = lead ? `${lead} · ${where}` : where;
      item.tooltip = origin ? `${rel}\n${originTooltip(origin)}` : rel;
    }
    item.command = undefined;
    return item;
  }

  /** The model's origin if it has been read; starts the read (and refreshes the row when done) otherwise. */
  private origin(uri: vscode.Uri): ModelOrigin | undefined {
    const key = uri.fsPath;
    const known = this.origins.get(key);
    if (known === undefined) {
      this.origins.set(key, 'reading');
      void readModelOrigin(key).then((o) => {
        if (this.origins.get(key) !== 'reading') return;
        this.origins.set(key, o ?? null);
        if (o) this.changed.fire(this.modelNodes.get(key));
      });
      return undefined;
    }
    return known === 'reading' || known === null ? undefined : known;
  }

  private layerItem(uri: vscode.Uri, row: LayerRow, freeze: FreezeState): vscode.TreeItem {
    // Deeper rows have less room (about two characters a level in a 250 px side bar).
    const label = middleEllipsis(row.name, Math.max(12, maxLabel - 1 - 2 * row.depth));
    const item = new vscode.TreeItem(label, row.isContainer ? vscode.TreeItemCollapsibleState.Collapsed : vscode.TreeItemCollapsibleState.None);
    item.id = `layer:${uri.fsPath}#${row.path}`;
    item.description = `${row.className} ${formatShape(row.outputShape)}${row.output !== undefined ? ` · output ${row.output + 1}` : ''}`;
    // What trains is what the plan leaves trainable: a frozen layer trains nothing, whatever its saved flag says.
    const s = this.registry.state(uri);
    const trains = s.kind === 'loaded' ? trainableUnder(s.summary.layers, this.freeze.frozenNow(uri), row.path) : row.trainableParams;
    const weights =
      row.params === 0 && !row.isContainer ? 'no weights'
      : freeze === 'frozen' ? `${formatCount(row.params)} params · frozen: a fine-tune leaves them as they are`
      : `${formatCount(row.params)} params, ${formatCount(trains)} trained by a fine-tune · ${stateWord(freeze)}`;
    if (row.attributes) {
      // An ONNX node: op type, output, weights and attributes (nothing to freeze: the whole backbone is).
      const md = new vscode.MarkdownString(`**${row.path}** (${row.className})\n\noutput ${formatShape(row.outputShape)} · ${row.params === 0 ? 'no weights' : `${formatCount(row.params)} params`} (ONNX: the backbone stays frozen)\n\n`);
      if (row.attributes.length > 0) md.appendCodeblock(row.attributes.join('\n'), 'text');
      item.tooltip = md;
    } else {
      item.tooltip = new vscode.MarkdownString(`**${row.path}** (${row.className})\n\noutput ${formatShape(row.outputShape)}\n\n${weights}`);
    }
    if (label !== row.name) item.accessibilityInformation = { label: `${row.name}, ${row.className}, ${stateWord(freeze)}` };
    item.contextValue = row.isContainer ? 'layerLens.nestedModel' : 'layerLens.layer';
    // Plain layers go without an icon: the checkbox marks them, and the name needs the room.
    if (row.isContainer) item.iconPath = new vscode.ThemeIcon('layers');
    // ONNX nodes (and what is inside their subgraphs) have no freeze switch: ONNX Runtime cannot train them.
    const freezable = this.registry.state(uri).kind === 'loaded' && !row.attributes && (row.isContainer || (row.freezableParams ?? row.trainableParams) > 0);
    if (freezable) {
      item.checkboxState = {
        state: freeze === 'frozen' ? vscode.TreeItemCheckboxState.Checked : vscode.TreeItemCheckboxState.Unchecked,
        tooltip: freeze === 'frozen' ? `Frozen: uncheck to train ${row.name}` : `Check to freeze ${row.name}`,
        accessibilityInformation: { label: `Freeze ${row.name}: ${stateWord(freeze)}` },
      };
      if (freeze === 'partial') item.description = `${item.description} · partly frozen`;
      else if (freeze === 'frozen') item.description = `${item.description} · frozen`;
    }
    return item;
  }

  async getChildren(node?: ModelNode): Promise<ModelNode[]> {
    if (!node) return (await this.registry.list()).map((u) => this.modelNode(u));
    if (node.kind === 'message') return [];
    const key = node.uri.fsPath;
    this.fetching.set(key, (this.fetching.get(key) ?? 0) + 1);
    try {
      return await this.childrenOf(node);
    } finally {
      const left = (this.fetching.get(key) ?? 1) - 1;
      if (left > 0) this.fetching.set(key, left);
      else {
        this.fetching.delete(key);
        // After VS Code has registered the children (it does so right after this promise settles).
        if (this.refreshAfterFetch.delete(key)) setTimeout(() => this.changed.fire(this.modelNodes.get(key)), 0);
      }
    }
  }

  private async childrenOf(node: ModelNode & { kind: 'model' | 'layer' }): Promise<ModelNode[]> {
    let summary;
    try {
      summary = await this.registry.summary(node.uri);
    } catch (e) {
      return [{ kind: 'message', uri: node.uri, message: e instanceof Error ? e.message : String(e), error: true }];
    }
    // Read the freeze plan before VS Code asks for the items: getTreeItem()
    // would start the read itself, and its change event would refresh this
    // node while its children are being registered ("Element with id … is
    // already registered").
    await this.freeze.frozen(node.uri).catch(() => undefined);
    const parent = node.kind === 'layer' ? node.row.path : undefined;
    const rows = summary.layers.filter((r) => r.parent === parent);
    if (!parent && summary.warnings.length > 0) {
      const warn: ModelNode = { kind: 'message', uri: node.uri, message: `${summary.warnings.length} warning(s): ${summary.warnings[0]}`, error: false };
      return [warn, ...rows.map((row) => ({ kind: 'layer' as const, uri: node.uri, row }))];
    }
    return rows.map((row) => ({ kind: 'layer' as const, uri: node.uri, row }));
  }

  getParent(node: ModelNode): ModelNode | undefined {
    if (node.kind === 'model') return undefined;
    if (node.kind === 'layer' && node.row.parent) {
      const s = this.registry.state(node.uri);
      if (s.kind === 'loaded') {
        const row = s.summary.layers.find((r) => r.path === node.row.parent);
        if (row) return { kind: 'layer', uri: node.uri, row };
      }
    }
    return this.modelNode(node.uri);
  }

  dispose(): void {
    for (const d of this.disposables) d.dispose();
  }
}
