/**
 * The Models view in the Explorer: every model in the workspace, expanding to
 * its layers (nested models as nested nodes). Description = class and output
 * shape; tooltip = params and trainable.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { ModelRegistry } from '../modelRegistry';
import { formatCount, formatShape, type LayerRow } from '../protocol/model';

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

  private constructor(private readonly registry: ModelRegistry) {
    this.disposables.push(registry.onDidChange((uri) => this.changed.fire(uri ? this.modelNodes.get(uri.fsPath) : undefined)));
  }

  static register(registry: ModelRegistry): { provider: ModelTreeProvider; view: vscode.TreeView<ModelNode> } {
    const provider = new ModelTreeProvider(registry);
    const view = vscode.window.createTreeView(ModelTreeProvider.viewType, { treeDataProvider: provider, showCollapseAll: true });
    provider.disposables.push(view);
    return { provider, view };
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
        return this.layerItem(node.uri, node.row);
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
    const folder = path.basename(path.dirname(uri.fsPath));
    const item = new vscode.TreeItem(folder, vscode.TreeItemCollapsibleState.Collapsed);
    item.id = `model:${uri.fsPath}`;
    item.resourceUri = uri;
    item.contextValue = 'layerLens.model';
    item.iconPath = new vscode.ThemeIcon('circuit-board');
    const state = this.registry.state(uri);
    if (state.kind === 'loaded') {
      const s = state.summary;
      item.description = `${s.format === 'graph' ? 'graph' : 'layers'} · ${formatCount(s.totalParams)} params`;
      item.tooltip = new vscode.MarkdownString(
        `**${s.name}** — ${rel}\n\n${s.layers.length} layers · ${formatCount(s.totalParams)} params · ${formatCount(s.trainableParams)} trainable\n\ninput ${formatShape(s.inputShape)} → output ${formatShape(s.outputShape)}`,
      );
    } else if (state.kind === 'failed') {
      item.description = 'failed to load';
      item.tooltip = state.message;
      item.iconPath = new vscode.ThemeIcon('warning', new vscode.ThemeColor('list.warningForeground'));
    } else {
      item.description = path.dirname(rel) === '.' ? rel : path.dirname(rel);
      item.tooltip = rel;
    }
    item.command = undefined;
    return item;
  }

  private layerItem(uri: vscode.Uri, row: LayerRow): vscode.TreeItem {
    const item = new vscode.TreeItem(row.name, row.isContainer ? vscode.TreeItemCollapsibleState.Collapsed : vscode.TreeItemCollapsibleState.None);
    item.id = `layer:${uri.fsPath}#${row.path}`;
    item.description = `${row.className} ${formatShape(row.outputShape)}`;
    item.tooltip = new vscode.MarkdownString(
      `**${row.path}** (${row.className})\n\noutput ${formatShape(row.outputShape)}\n\n${formatCount(row.params)} params, ${formatCount(row.trainableParams)} trainable · ${row.trainable ? 'trainable' : 'frozen'}`,
    );
    item.contextValue = row.isContainer ? 'layerLens.nestedModel' : 'layerLens.layer';
    item.iconPath = new vscode.ThemeIcon(row.isContainer ? 'layers' : 'symbol-method');
    return item;
  }

  async getChildren(node?: ModelNode): Promise<ModelNode[]> {
    if (!node) return (await this.registry.list()).map((u) => this.modelNode(u));
    if (node.kind === 'message') return [];
    let summary;
    try {
      summary = await this.registry.summary(node.uri);
    } catch (e) {
      return [{ kind: 'message', uri: node.uri, message: e instanceof Error ? e.message : String(e), error: true }];
    }
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
