/**
 * One recipe per model (the freeze plan and the fine-tune settings), kept in
 * layerlens.json next to model.json, and the single source the Models view's
 * checkboxes, the inspector's toggles and the palette commands read and write. Edits to the file (by hand or by us)
 * reach every view through a file watcher; problems in the file become
 * diagnostics in the Problems panel. Keeps an undo stack of plan changes.
 */
import * as vscode from 'vscode';
import { modelPathsForRecipe, readRecipe, writeRecipe, type RecipeDiagnostic } from '../engine/recipe';
import type { Logger } from '../logger';
import { setFrozen as planSetFrozen } from '../protocol/freezePlan';
import type { LayerRow } from '../protocol/model';
import { recipeFileName, type Recipe } from '../protocol/recipe';
import type { ModelRegistry } from './modelRegistry';

const undoDepth = 50;

export class RecipeService implements vscode.Disposable {
  private readonly recipes = new Map<string, Recipe>();
  /** First reads in flight, so that many callers of frozenNow() share one. */
  private readonly firstReads = new Map<string, Promise<Recipe>>();
  private readonly undoStacks = new Map<string, string[][]>();
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;
  private readonly diagnostics = vscode.languages.createDiagnosticCollection('layerLens');
  private readonly disposables: vscode.Disposable[] = [this.changed, this.diagnostics];

  constructor(
    private readonly registry: ModelRegistry,
    private readonly log: Logger,
  ) {
    const watcher = vscode.workspace.createFileSystemWatcher(`**/*${recipeFileName}`);
    const reload = (uri: vscode.Uri) => void this.onRecipeFile(uri);
    this.disposables.push(watcher, watcher.onDidChange(reload), watcher.onDidCreate(reload), watcher.onDidDelete(reload));
    // A model that (re)loads may turn unknown layer names into known ones.
    this.disposables.push(registry.onDidChange((uri) => uri && this.recipes.has(uri.fsPath) && void this.reload(uri)));
  }

  private async onRecipeFile(recipeUri: vscode.Uri): Promise<void> {
    for (const p of modelPathsForRecipe(recipeUri.fsPath)) {
      // Models not read yet pick the file up on first use.
      if (this.recipes.has(p)) await this.reload(vscode.Uri.file(p));
    }
  }

  private rows(uri: vscode.Uri): LayerRow[] | undefined {
    const s = this.registry.state(uri);
    return s.kind === 'loaded' ? s.summary.layers : undefined;
  }

  private async reload(uri: vscode.Uri): Promise<Recipe> {
    // Views show no freezes until the file is read, so only a different plan
    // is a change: every change event refreshes the Models view, and a
    // refresh while VS Code fetches a model's children registers them twice.
    const before = JSON.stringify(this.recipes.get(uri.fsPath)?.freeze ?? []);
    const file = await readRecipe(uri.fsPath, { rows: this.rows(uri), modelName: vscode.workspace.asRelativePath(uri) });
    this.recipes.set(uri.fsPath, file.recipe);
    this.publish(vscode.Uri.file(file.file), file.diagnostics);
    if (JSON.stringify(file.recipe.freeze) !== before) this.changed.fire(uri);
    return file.recipe;
  }

  private publish(file: vscode.Uri, diags: RecipeDiagnostic[]): void {
    this.diagnostics.set(
      file,
      diags.map((d) => {
        const line = Math.max(0, (d.line ?? 1) - 1);
        const col = Math.max(0, (d.column ?? 1) - 1);
        const range = new vscode.Range(line, col, Math.max(line, (d.endLine ?? d.line ?? 1) - 1), d.endColumn !== undefined ? d.endColumn - 1 : col + 1);
        const severity = d.severity === 'error' ? vscode.DiagnosticSeverity.Error : d.severity === 'warning' ? vscode.DiagnosticSeverity.Warning : vscode.DiagnosticSeverity.Information;
        const diag = new vscode.Diagnostic(range, d.message, severity);
        diag.source = 'Layer Lens';
        return diag;
      }),
    );
    for (const d of diags) if (d.severity === 'error') this.log.warn(`${vscode.workspace.asRelativePath(file)}:${d.line ?? 1}:${d.column ?? 1}: ${d.message}`);
  }

  /** The model's recipe (defaults when there is no layerlens.json). */
  async recipe(uri: vscode.Uri): Promise<Recipe> {
    const cached = this.recipes.get(uri.fsPath);
    if (cached) return cached;
    let read = this.firstReads.get(uri.fsPath);
    if (!read) {
      read = this.reload(uri).finally(() => this.firstReads.delete(uri.fsPath));
      this.firstReads.set(uri.fsPath, read);
    }
    return read;
  }

  async frozen(uri: vscode.Uri): Promise<string[]> {
    return (await this.recipe(uri)).freeze;
  }

  /** The cached plan, for synchronous tree rendering ([] until read). */
  frozenNow(uri: vscode.Uri): string[] {
    const r = this.recipes.get(uri.fsPath);
    if (!r) void this.recipe(uri).catch(() => undefined);
    return r?.freeze ?? [];
  }

  /** Replaces the plan, writes layerlens.json atomically, and tells every view. */
  async setPlan(uri: vscode.Uri, plan: string[], options: { undoable?: boolean } = {}): Promise<void> {
    if (!vscode.workspace.isTrusted) {
      throw new Error('this workspace is not trusted, so Layer Lens does not write layerlens.json; trust the folder to change freeze plans.');
    }
    const recipe = await this.recipe(uri);
    if (JSON.stringify(recipe.freeze) === JSON.stringify(plan)) return;
    if (options.undoable !== false) {
      const stack = this.undoStacks.get(uri.fsPath) ?? [];
      stack.push(recipe.freeze);
      if (stack.length > undoDepth) stack.shift();
      this.undoStacks.set(uri.fsPath, stack);
    }
    const next: Recipe = { ...recipe, freeze: plan };
    // The watcher will report this write too; reload() then finds the same
    // plan and fires nothing, so our own writes need no bookkeeping (and a
    // user's edit arriving in the same event is never skipped).
    await writeRecipe(uri.fsPath, next);
    this.recipes.set(uri.fsPath, next);
    this.changed.fire(uri);
  }

  /** Writes a whole recipe (the Fine-Tune form's "Save to layerlens.json"): the plan and the settings. */
  async save(uri: vscode.Uri, next: Recipe): Promise<void> {
    if (!vscode.workspace.isTrusted) throw new Error('this workspace is not trusted, so Layer Lens does not write layerlens.json.');
    const recipe = await this.recipe(uri);
    if (JSON.stringify(recipe.freeze) !== JSON.stringify(next.freeze)) {
      const stack = this.undoStacks.get(uri.fsPath) ?? [];
      stack.push(recipe.freeze);
      if (stack.length > undoDepth) stack.shift();
      this.undoStacks.set(uri.fsPath, stack);
    }
    await writeRecipe(uri.fsPath, next);
    this.recipes.set(uri.fsPath, next);
    this.changed.fire(uri);
  }

  async setFrozen(uri: vscode.Uri, paths: string[], frozen: boolean): Promise<void> {
    const rows = this.rows(uri) ?? (await this.registry.summary(uri)).layers;
    let plan = await this.frozen(uri);
    for (const p of paths) plan = planSetFrozen(plan, p, frozen, rows);
    await this.setPlan(uri, plan);
  }

  canUndo(uri: vscode.Uri): boolean {
    return (this.undoStacks.get(uri.fsPath)?.length ?? 0) > 0;
  }

  async undo(uri: vscode.Uri): Promise<boolean> {
    const previous = this.undoStacks.get(uri.fsPath)?.pop();
    if (!previous) return false;
    await this.setPlan(uri, previous, { undoable: false });
    return true;
  }

  dispose(): void {
    for (const d of this.disposables) d.dispose();
  }
}
