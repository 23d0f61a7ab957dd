/**
 * Which models the workspace holds and what each one looks like: the list of
 * model.json, Keras .h5 and .keras, and ONNX .onnx files (kept current by a file watcher),
 * plus any the user opened from elsewhere, and their summaries loaded through
 * the worker on demand.
 * The Models view, the inspector and the commands all read from here, so they
 * agree.
 *
 * Lifetimes: an inspector panel or a training run holds the models it works
 * on (`hold`); when the last holder lets go, the worker unloads the model and
 * drops what it kept for it (an inspection's activations, a comparison). A
 * model loaded only for its summary (the Models view) is not kept in the
 * worker: the summary stays here.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { EngineClient } from '../engineClient';
import type { Logger } from '../logger';
import { formatCount, type ModelSummary } from '../protocol/model';

export type ModelState =
  | { kind: 'unloaded' }
  | { kind: 'loading'; promise: Promise<ModelSummary> }
  | { kind: 'loaded'; summary: ModelSummary }
  | { kind: 'failed'; message: string };

const exclude = '{**/node_modules/**,**/.git/**,**/.cache/**,**/*.layerlens-tmp-*/**}';
/**
 * Folders that are not (yet) where models live: dependencies, and the
 * temporary folders Layer Lens builds a result in before renaming it into
 * place (engine/io/atomic.ts), which vanish without a watcher event for their
 * model.json.
 */
const ignored = /[\\/](node_modules|\.git|\.cache|[^\\/]*\.layerlens-tmp-[^\\/]*)[\\/]/;
/** TF.js model.json files, Keras files (opened directly, see engine/io/keras.ts) and ONNX files (engine/io/onnx.ts). */
const modelGlob = '**/{model.json,*.h5,*.keras,*.onnx}';

export class ModelRegistry implements vscode.Disposable {
  private readonly found = new Map<string, vscode.Uri>();
  private readonly states = new Map<string, ModelState>();
  private readonly changed = new vscode.EventEmitter<vscode.Uri | undefined>();
  readonly onDidChange = this.changed.event;
  private readonly disposables: vscode.Disposable[] = [this.changed];
  private scanned: Promise<void> | undefined;
  private readonly createdPaths = new Set<string>();
  /** How many panels and runs hold each model in the worker. */
  private readonly holders = new Map<string, number>();
  private createdTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly engine: EngineClient,
    private readonly log: Logger,
    private readonly memento: vscode.Memento,
  ) {
    const watcher = vscode.workspace.createFileSystemWatcher(modelGlob);
    // A folder renamed into place (a result of the CLI, another tool, a
    // drag and drop) gets one create event for the folder and none for the
    // model.json inside it: look inside new folders. Likewise a folder deleted
    // or moved away takes its models with it.
    const folders = vscode.workspace.createFileSystemWatcher('**/*', false, true, false);
    this.disposables.push(
      watcher,
      folders,
      folders.onDidCreate((uri) => this.folderCreated(uri)),
      folders.onDidDelete((uri) => this.removeFolder(uri)),
      watcher.onDidCreate((uri) => this.add(uri)),
      watcher.onDidDelete((uri) => this.remove(uri)),
      watcher.onDidChange((uri) => this.invalidate(uri)),
      vscode.workspace.onDidChangeWorkspaceFolders(() => this.rescan()),
    );
    for (const p of memento.get<string[]>('layerLens.openedModels', [])) this.found.set(p, vscode.Uri.file(p));
  }

  /** All known models, sorted by path. */
  async list(): Promise<vscode.Uri[]> {
    this.scanned ??= this.scan();
    await this.scanned;
    return [...this.found.values()].sort((a, b) => a.fsPath.localeCompare(b.fsPath));
  }

  private async scan(): Promise<void> {
    const uris = await vscode.workspace.findFiles(modelGlob, exclude);
    for (const u of uris) if (!ignored.test(u.fsPath)) this.found.set(u.fsPath, u);
  }

  rescan(): void {
    this.scanned = undefined;
    this.changed.fire(undefined);
  }

  /** Adds a model opened from anywhere (also outside the workspace). */
  async open(uri: vscode.Uri): Promise<ModelSummary> {
    if (!this.found.has(uri.fsPath)) {
      this.found.set(uri.fsPath, uri);
      const kept = new Set(this.memento.get<string[]>('layerLens.openedModels', []));
      if (!vscode.workspace.getWorkspaceFolder(uri)) {
        kept.add(uri.fsPath);
        await this.memento.update('layerLens.openedModels', [...kept]);
      }
      this.changed.fire(undefined);
    }
    return this.summary(uri);
  }

  private add(uri: vscode.Uri): void {
    if (ignored.test(uri.fsPath)) return;
    this.found.set(uri.fsPath, uri);
    this.changed.fire(undefined);
  }

  /**
   * Created paths are collected for a moment (a checkout or an unzip creates
   * thousands at once), then only the outermost new folders are searched,
   * one search each.
   */
  private folderCreated(uri: vscode.Uri): void {
    if (ignored.test(`${uri.fsPath}/`) || /\.(json|h5|keras|onnx)$/i.test(uri.fsPath)) return;
    this.createdPaths.add(uri.fsPath);
    this.createdTimer ??= setTimeout(() => void this.addCreatedFolders(), 300);
  }

  private async addCreatedFolders(): Promise<void> {
    const created = [...this.createdPaths].sort();
    this.createdPaths.clear();
    this.createdTimer = undefined;
    const roots: string[] = [];
    for (const p of created) if (!roots.some((r) => p.startsWith(r + path.sep))) roots.push(p);
    let added = 0;
    for (const root of roots) {
      try {
        const uri = vscode.Uri.file(root);
        if (!((await vscode.workspace.fs.stat(uri)).type & vscode.FileType.Directory)) continue;
        for (const u of await vscode.workspace.findFiles(new vscode.RelativePattern(uri, modelGlob), exclude, 1000)) {
          if (ignored.test(u.fsPath) || this.found.has(u.fsPath)) continue;
          this.found.set(u.fsPath, u);
          added++;
        }
      } catch {
        // Gone again (a temporary folder), or unreadable: nothing to list.
      }
    }
    if (added > 0) this.changed.fire(undefined);
  }

  private removeFolder(uri: vscode.Uri): void {
    const prefix = uri.fsPath.endsWith(path.sep) ? uri.fsPath : uri.fsPath + path.sep;
    const gone = [...this.found.keys()].filter((p) => p.startsWith(prefix) && vscode.workspace.getWorkspaceFolder(vscode.Uri.file(p)));
    for (const p of gone) {
      this.found.delete(p);
      this.states.delete(p);
    }
    if (gone.length > 0) this.changed.fire(undefined);
  }

  private remove(uri: vscode.Uri): void {
    this.found.delete(uri.fsPath);
    this.states.delete(uri.fsPath);
    this.changed.fire(undefined);
  }

  /** Keeps `uri` loaded in the worker until the returned disposable is disposed (counted per holder). */
  hold(uri: vscode.Uri): vscode.Disposable {
    const key = uri.fsPath;
    this.holders.set(key, (this.holders.get(key) ?? 0) + 1);
    let released = false;
    return new vscode.Disposable(() => {
      if (released) return;
      released = true;
      const left = (this.holders.get(key) ?? 1) - 1;
      if (left > 0) this.holders.set(key, left);
      else {
        this.holders.delete(key);
        this.unloadInWorker(key);
      }
    });
  }

  private unloadInWorker(key: string): void {
    // Nothing to free in a worker that never started (or was restarted).
    if (!this.engine.started || this.holders.has(key)) return;
    void this.engine.call('unloadModel', { path: key }).catch((e: unknown) => this.log.debug(`Unloading ${key}: ${e instanceof Error ? e.message : String(e)}`));
  }

  invalidate(uri: vscode.Uri): void {
    if (!this.states.has(uri.fsPath)) return;
    this.states.delete(uri.fsPath);
    this.changed.fire(uri);
  }

  state(uri: vscode.Uri): ModelState {
    return this.states.get(uri.fsPath) ?? { kind: 'unloaded' };
  }

  /** The model's summary, loading it in the worker once; rejects with the user-facing message. */
  summary(uri: vscode.Uri): Promise<ModelSummary> {
    const s = this.state(uri);
    if (s.kind === 'loaded') return Promise.resolve(s.summary);
    if (s.kind === 'loading') return s.promise;
    const rel = vscode.workspace.asRelativePath(uri);
    // A pathological file must not keep the worker (and every other request) busy for ever.
    const seconds = vscode.workspace.getConfiguration('layerLens').get<number>('loadTimeoutSeconds', 60);
    const timeout = {
      timeoutMs: seconds * 1000,
      timeoutMessage: `Loading ${rel} took longer than ${seconds} s; the compute worker was restarted. The file may be damaged or far larger than a model needs; if it is a real model, raise the setting layerLens.loadTimeoutSeconds.`,
    };
    const promise = this.engine.call('loadModel', { path: uri.fsPath }, seconds > 0 ? timeout : {}).then(
      (summary) => {
        this.states.set(uri.fsPath, { kind: 'loaded', summary });
        const trainable =
          summary.format === 'layers'
            ? `, ${formatCount(summary.trainableParams)} trainable`
            : summary.onnx
              ? `, ONNX opset ${summary.onnx.opset} (ONNX Runtime ${summary.onnx.runtime})`
              : ', graph model (inference only)';
        this.log.info(`Loaded ${rel}: ${summary.layers.length} ${summary.onnx ? 'nodes' : 'layers'}, ${formatCount(summary.totalParams)} params${trainable} (${summary.loadMs} ms)`);
        for (const w of summary.warnings) this.log.warn(`${rel}: ${w}`);
        // Loaded for its summary alone (the Models view): the worker need not keep it.
        this.unloadInWorker(uri.fsPath);
        this.changed.fire(uri);
        return summary;
      },
      (e: unknown) => {
        const message = e instanceof Error ? e.message : String(e);
        this.states.set(uri.fsPath, { kind: 'failed', message });
        this.log.error(message);
        this.changed.fire(uri);
        throw e;
      },
    );
    this.states.set(uri.fsPath, { kind: 'loading', promise });
    return promise;
  }

  /** Replaces a loaded summary (after a freeze change, a reload). */
  update(uri: vscode.Uri, summary: ModelSummary): void {
    this.states.set(uri.fsPath, { kind: 'loaded', summary });
    this.changed.fire(uri);
  }

  dispose(): void {
    clearTimeout(this.createdTimer);
    for (const d of this.disposables) d.dispose();
  }
}
