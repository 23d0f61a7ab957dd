/**
 * The inspector: one webview panel per model. Owns its disposables, renders
 * its HTML with a strict CSP and a fresh nonce, answers the webview's typed
 * requests (each validated against its zod schema first) and pushes model,
 * freeze and training events. Restored after a window reload by the
 * serializer registered in `InspectorPanel.registerSerializer`.
 */
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { EngineClient } from '../engineClient';
import type { Logger } from '../logger';
import type { ModelRegistry } from '../modelRegistry';
import { normalizationLabels, type Normalization } from '../protocol/model';
import { RpcServer, type Handlers, type RpcError, type RpcMessage } from '../protocol/rpc';
import { checkWebviewMessage, type HostEvent, type InitState, type WebviewApi } from '../protocol/webviewApi';
import { pickImage } from '../commands/pickImage';
import { latentHandlers } from '../commands/embeddings';
import { CompareController } from '../commands/compare';
import { augmentSummary } from '../protocol/train';
import type { Recipe } from '../protocol/recipe';

/** The freeze plan as the panel sees it (implemented by the FreezeService). */
export interface FreezeSource {
  frozen(uri: vscode.Uri): Promise<string[]>;
  recipe(uri: vscode.Uri): Promise<Recipe>;
  setFrozen(uri: vscode.Uri, paths: string[], frozen: boolean): Promise<void>;
  readonly onDidChange: vscode.Event<vscode.Uri>;
}

export interface InspectorDeps {
  extensionUri: vscode.Uri;
  engine: EngineClient;
  registry: ModelRegistry;
  freeze: FreezeSource;
  log: Logger;
  /** Stops the training run of this model, if one runs. */
  stopTraining(uri: vscode.Uri): void;
}

/** What survives a reload (webview state, handed to the serializer). */
interface PanelState {
  modelPath: string;
  imagePath?: string | null;
  normalization?: Normalization;
  /** The Compare tab's reference model (A). */
  reference?: string;
}

export class InspectorPanel implements vscode.Disposable {
  static readonly viewType = 'layerLens.inspector';
  private static readonly panels = new Map<string, InspectorPanel>();

  private readonly disposables: vscode.Disposable[] = [];
  private imagePath: string | null;
  private normalization: Normalization | undefined;
  private readonly compare: CompareController;

  private constructor(
    private readonly panel: vscode.WebviewPanel,
    readonly modelUri: vscode.Uri,
    private readonly deps: InspectorDeps,
    state: PanelState | undefined,
  ) {
    this.imagePath = state?.imagePath ?? null;
    this.normalization = state?.normalization;
    this.compare = new CompareController(modelUri, deps, { imagePath: () => this.imagePath, post: (e) => this.post(e) }, state?.reference);
    panel.webview.options = {
      enableScripts: true,
      localResourceRoots: [vscode.Uri.joinPath(deps.extensionUri, 'dist'), vscode.Uri.joinPath(deps.extensionUri, 'media')],
    };
    panel.iconPath = vscode.Uri.joinPath(deps.extensionUri, 'media', 'icon.svg');
    panel.webview.html = this.getHtml(panel.webview);
    const server = new RpcServer<WebviewApi>(
      { post: (m) => void panel.webview.postMessage(m) },
      this.handlers(),
      (e): RpcError => ({ code: (e as { code?: string }).code ?? 'error', message: e instanceof Error ? e.message : String(e) }),
    );
    this.disposables.push(
      panel.onDidDispose(() => this.dispose()),
      panel.webview.onDidReceiveMessage((m: unknown) => {
        // Untrusted input: validated against its schema, or logged and dropped.
        const check = checkWebviewMessage(m);
        if (!check.ok) {
          deps.log.warn(`Inspector: dropped a message from the webview: ${check.reason}.`);
          if (check.id !== undefined) void panel.webview.postMessage({ kind: 'response', id: check.id, ok: false, error: { code: 'bad-request', message: 'Malformed request.' } });
          return;
        }
        void server.handle(m as RpcMessage);
      }),
      deps.registry.onDidChange((uri) => {
        if (!uri || uri.fsPath === modelUri.fsPath) void this.pushModel();
      }),
      deps.freeze.onDidChange((uri) => {
        if (uri.fsPath === modelUri.fsPath) void this.pushFreeze();
      }),
    );
  }

  static show(modelUri: vscode.Uri, deps: InspectorDeps, imagePath?: string): InspectorPanel {
    const existing = InspectorPanel.panels.get(modelUri.fsPath);
    if (existing) {
      existing.panel.reveal();
      if (imagePath) existing.setImage(imagePath);
      return existing;
    }
    const panel = vscode.window.createWebviewPanel(InspectorPanel.viewType, title(modelUri), vscode.ViewColumn.Active, {
      enableScripts: true,
      localResourceRoots: [vscode.Uri.joinPath(deps.extensionUri, 'dist'), vscode.Uri.joinPath(deps.extensionUri, 'media')],
    });
    const p = new InspectorPanel(panel, modelUri, deps, { modelPath: modelUri.fsPath, imagePath });
    InspectorPanel.panels.set(modelUri.fsPath, p);
    return p;
  }

  static forModel(uri: vscode.Uri): InspectorPanel | undefined {
    return InspectorPanel.panels.get(uri.fsPath);
  }

  /** The inspector the user is looking at, if any (commands act on its model). */
  static active(): InspectorPanel | undefined {
    return [...InspectorPanel.panels.values()].find((p) => p.panel.active);
  }

  static all(): InspectorPanel[] {
    return [...InspectorPanel.panels.values()];
  }

  static registerSerializer(deps: InspectorDeps): vscode.Disposable {
    return vscode.window.registerWebviewPanelSerializer(InspectorPanel.viewType, {
      async deserializeWebviewPanel(panel: vscode.WebviewPanel, state: unknown) {
        const s = state as Partial<PanelState> | undefined;
        if (!s || typeof s.modelPath !== 'string') {
          panel.dispose();
          return;
        }
        const uri = vscode.Uri.file(s.modelPath);
        panel.title = title(uri);
        const p = new InspectorPanel(panel, uri, deps, {
          modelPath: s.modelPath,
          imagePath: typeof s.imagePath === 'string' ? s.imagePath : null,
          normalization: s.normalization,
          reference: typeof s.reference === 'string' ? s.reference : undefined,
        });
        InspectorPanel.panels.set(uri.fsPath, p);
      },
    });
  }

  /** Uses a new input image (from the Explorer menu or a command). */
  setImage(imagePath: string): void {
    this.imagePath = imagePath;
    this.post({ type: 'image', imagePath });
  }

  /** The panel's input image, if any. */
  get currentImage(): string | null {
    return this.imagePath;
  }

  /** Opens the Compare tab with `reference` as model A (this panel's model is B). */
  compareWith(reference: vscode.Uri): void {
    this.compare.setReference(reference.fsPath);
  }

  /** The image and layer the next fine-tune of this model watches (live maps), if any. */
  probe(): { imagePath: string; layerPath: string } | undefined {
    const p = this.compare.probe();
    return p ? { imagePath: p.imagePath, layerPath: p.layerPath } : undefined;
  }

  post(event: HostEvent): void {
    void this.panel.webview.postMessage({ kind: 'event', event });
  }

  private async pushModel(): Promise<void> {
    const state = this.deps.registry.state(this.modelUri);
    if (state.kind === 'loaded') this.post({ type: 'model', summary: state.summary, error: null });
    else if (state.kind === 'failed') this.post({ type: 'model', summary: null, error: state.message });
    else if (state.kind === 'unloaded') {
      try {
        await this.deps.registry.summary(this.modelUri);
      } catch {
        // registry fires onDidChange with the failure; pushModel runs again
      }
    }
  }

  private async pushFreeze(): Promise<void> {
    const frozen = await this.deps.freeze.frozen(this.modelUri);
    const state = this.deps.registry.state(this.modelUri);
    if (state.kind !== 'loaded') return;
    const s = state.summary;
    this.post({ type: 'freeze', frozen, trainableParams: s.trainableParams, totalParams: s.totalParams });
  }

  private defaultNormalization(meta: Normalization | undefined): { value: Normalization; source: string } {
    if (this.normalization) return { value: this.normalization, source: 'chosen here' };
    if (meta) return { value: meta, source: "the model's metadata.json" };
    const setting = vscode.workspace.getConfiguration('layerLens').get<Normalization>('normalization', 'zeroOne');
    return { value: setting, source: 'the layerLens.normalization setting' };
  }

  private handlers(): Handlers<WebviewApi> {
    const d = this.deps;
    const modelPath = this.modelUri.fsPath;
    return {
      ready: async (): Promise<InitState> => {
        let summary = null;
        let error = null;
        try {
          summary = await d.registry.summary(this.modelUri);
        } catch (e) {
          error = e instanceof Error ? e.message : String(e);
        }
        const backend = d.engine.started ? (await d.engine.backend()).name : null;
        const norm = this.defaultNormalization(summary?.normalization);
        return {
          summary,
          error,
          backend: backend === 'tensorflow' ? 'tfjs-node' : backend,
          frozen: summary ? await d.freeze.frozen(this.modelUri) : [],
          normalization: norm.value,
          normalizationSource: `${normalizationLabels[norm.value]} from ${norm.source}`,
          imagePath: this.imagePath,
          workspaceTrusted: vscode.workspace.isTrusted,
        };
      },
      pickImage: async () => {
        const picked = await pickImage(this.modelUri);
        if (picked) this.imagePath = picked.fsPath;
        return picked?.fsPath ?? null;
      },
      inspect: async ({ imagePath, normalization }) => {
        const image = imagePath ?? this.imagePath;
        if (!image) throw Object.assign(new Error('No image yet: pick one first.'), { code: 'bad-input' });
        this.imagePath = image;
        this.normalization = normalization;
        return d.engine.call('inspect', { modelPath, imagePath: image, normalization });
      },
      layerMaps: ({ layerPath, maxSize }) => d.engine.call('layerMaps', { modelPath, layerPath, maxSize }),
      gradCam: ({ layerPath, classIndex }) => d.engine.call('gradCam', { modelPath, layerPath, classIndex }),
      setFrozen: ({ paths, frozen }) => d.freeze.setFrozen(this.modelUri, paths, frozen),
      exportPng: async ({ fileName, png }) => {
        const base = path.basename(fileName).replace(/[^\w.\- ]+/g, '_');
        const target = await vscode.window.showSaveDialog({
          defaultUri: vscode.Uri.joinPath(vscode.Uri.file(path.dirname(modelPath)), base.endsWith('.png') ? base : `${base}.png`),
          filters: { 'PNG image': ['png'] },
          title: 'Export feature-map grid',
        });
        if (!target) return null;
        const { writeFileAtomic } = await import('../engine/io/atomic');
        await writeFileAtomic(target.fsPath, png);
        d.log.info(`Exported ${vscode.workspace.asRelativePath(target)}`);
        return target.fsPath;
      },
      openImage: async ({ path: p }) => {
        // The webview is untrusted: it may open images of the workspace or the
        // model's folder (and the current input), not any file it names.
        const uri = vscode.Uri.file(p);
        const inModelFolder = !path.relative(path.dirname(modelPath), p).startsWith('..');
        if (!/\.(png|jpe?g)$/i.test(p) || !(vscode.workspace.getWorkspaceFolder(uri) || inModelFolder || p === this.imagePath)) {
          d.log.warn(`Inspector: refused to open ${p} for the webview (not an image of the workspace or the model's folder).`);
          return;
        }
        await vscode.commands.executeCommand('vscode.open', uri, { preview: true, viewColumn: vscode.ViewColumn.Beside });
      },
      stopTraining: () => d.stopTraining(this.modelUri),
      ...latentHandlers({ engine: d.engine, modelUri: this.modelUri, log: d.log }),
      augmentPreview: async () => {
        if (!this.imagePath) throw Object.assign(new Error('No image yet: pick one first.'), { code: 'bad-input' });
        const summary = await d.registry.summary(this.modelUri);
        const recipe = await d.freeze.recipe(this.modelUri);
        const [, h, w] = summary.inputShape;
        const size = recipe.finetune.imageSize ?? [typeof h === 'number' && h > 0 ? h : 128, typeof w === 'number' && w > 0 ? w : 128];
        const out = await d.engine.call('augmentPreview', {
          imagePath: this.imagePath,
          settings: recipe.finetune.augment,
          n: 8,
          seed: recipe.finetune.seed,
          height: Math.min(size[0], 256),
          width: Math.min(size[1], 256),
        });
        return { summary: augmentSummary(recipe.finetune.augment), ...out };
      },
      ...this.compare.handlers(),
    };
  }

  private getHtml(webview: vscode.Webview): string {
    const nonce = randomBytes(16).toString('base64');
    const script = webview.asWebviewUri(vscode.Uri.joinPath(this.deps.extensionUri, 'dist', 'webview.js'));
    const css = webview.asWebviewUri(vscode.Uri.joinPath(this.deps.extensionUri, 'media', 'inspector.css'));
    const csp = [
      "default-src 'none'",
      `script-src 'nonce-${nonce}'`,
      // The nonce lets the toolkit's one feature-detection <style> element in
      // (FAST reads it from the csp-nonce meta tag); inline style attributes
      // stay blocked.
      `style-src ${webview.cspSource} 'nonce-${nonce}'`,
      `img-src ${webview.cspSource} blob: data:`,
      `font-src ${webview.cspSource}`,
    ].join('; ');
    return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<meta property="csp-nonce" content="${nonce}">
<link rel="stylesheet" href="${css.toString()}">
<title>${escapeHtml(title(this.modelUri))}</title>
</head>
<body>
<div id="root" data-model-path="${escapeHtml(this.modelUri.fsPath)}"></div>
<script nonce="${nonce}" src="${script.toString()}"></script>
</body>
</html>`;
  }

  dispose(): void {
    InspectorPanel.panels.delete(this.modelUri.fsPath);
    for (const d of this.disposables.splice(0)) d.dispose();
    this.panel.dispose();
  }
}

function title(uri: vscode.Uri): string {
  return `Layer Lens: ${path.basename(path.dirname(uri.fsPath))}`;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
