/**
 * The inspector: one webview panel per model. Owns its disposables, renders
 * its HTML with a strict CSP and a fresh nonce, answers the webview's typed
 * requests (each validated against its zod schema first; each tab's requests
 * by its controller) and pushes model, freeze, backend and training events,
 * all from service events. Holds its model in the worker while open.
 * Restored after a window reload by the serializer registered in
 * `InspectorPanel.registerSerializer`.
 */
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { normalizationLabels, type Normalization } from '../../protocol/model';
import { RpcServer, type Handlers, type RpcError, type RpcMessage } from '../../protocol/rpc';
import { checkWebviewMessage, type HostEvent, type InitState, type WebviewApi } from '../../protocol/webviewApi';
import { backendLabel } from '../../protocol/workerApi';
import { pickImage } from '../../ui/pickers';
import { CompareController } from './compareController';
import { badInput, type InspectorDeps, type PanelContext } from './context';
import { FeatureMapsController } from './featureMapsController';
import { LatentController } from './latentController';
import { TrainingController } from './trainingController';

export type { InspectorDeps } from './context';

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
  private readonly maps: FeatureMapsController;
  private readonly compare: CompareController;
  private readonly latent: LatentController;
  private readonly training: TrainingController;

  private constructor(
    private readonly panel: vscode.WebviewPanel,
    readonly modelUri: vscode.Uri,
    private readonly deps: InspectorDeps,
    state: PanelState | undefined,
  ) {
    this.imagePath = state?.imagePath ?? null;
    const context: PanelContext = {
      modelUri,
      deps,
      imagePath: () => this.imagePath,
      setImagePath: (p) => {
        this.imagePath = p;
      },
      post: (e) => this.post(e),
    };
    this.maps = new FeatureMapsController(context, state?.normalization);
    this.compare = new CompareController(context, state?.reference);
    this.latent = new LatentController(context);
    this.training = new TrainingController(context);
    // The worker keeps this model (and its inspection) while the panel is open.
    this.disposables.push(deps.registry.hold(modelUri), this.compare, this.latent, this.training);
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
      deps.recipes.onDidChange((uri) => {
        if (uri.fsPath === modelUri.fsPath) void this.pushFreeze();
      }),
      deps.engine.onBackend((b) => this.post({ type: 'backend', name: backendLabel(b.name) })),
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
  /** Brings the panel to the front without taking the focus (the caller's quick pick keeps it). */
  reveal(): void {
    this.panel.reveal(undefined, true);
  }

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
    const frozen = await this.deps.recipes.frozen(this.modelUri);
    const state = this.deps.registry.state(this.modelUri);
    if (state.kind !== 'loaded') return;
    const s = state.summary;
    this.post({ type: 'freeze', frozen, trainableParams: s.trainableParams, totalParams: s.totalParams });
  }

  private defaultNormalization(meta: Normalization | undefined, from: string | undefined): { value: Normalization; source: string } {
    if (this.maps.normalization) return { value: this.maps.normalization, source: 'chosen here' };
    if (meta) return { value: meta, source: from ?? "the model's metadata.json" };
    const setting = vscode.workspace.getConfiguration('layerLens').get<Normalization>('normalization', 'zeroOne');
    return { value: setting, source: 'the layerLens.normalization setting' };
  }

  private handlers(): Handlers<WebviewApi> {
    const d = this.deps;
    const modelPath = this.modelUri.fsPath;
    // The webview is untrusted: it may show images of the workspace or the
    // model's folder (and the current input), not any file it names.
    const allowedImage = (p: string): boolean => {
      const inModelFolder = !path.relative(path.dirname(modelPath), p).startsWith('..');
      const ok = /\.(png|jpe?g)$/i.test(p) && (!!vscode.workspace.getWorkspaceFolder(vscode.Uri.file(p)) || inModelFolder || p === this.imagePath);
      if (!ok) d.log.warn(`Inspector: refused to show ${p} for the webview (not an image of the workspace or the model's folder).`);
      return ok;
    };
    return {
      ready: async (): Promise<InitState> => {
        let summary = null;
        let error = null;
        try {
          summary = await d.registry.summary(this.modelUri);
        } catch (e) {
          error = e instanceof Error ? e.message : String(e);
        }
        const backend = d.engine.started ? backendLabel((await d.engine.backend()).name) : null;
        const norm = this.defaultNormalization(summary?.normalization, summary?.normalizationFrom);
        return {
          summary,
          error,
          backend,
          frozen: summary ? await d.recipes.frozen(this.modelUri) : [],
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
      setFrozen: ({ paths, frozen }) => d.recipes.setFrozen(this.modelUri, paths, frozen),
      openImage: async ({ path: p }) => {
        if (!allowedImage(p)) return 'refused';
        // Never split the inspector: open the image in another editor group
        // only if there is one; else the webview previews it in the panel.
        const other = vscode.window.tabGroups.all.find((g) => g.viewColumn !== this.panel.viewColumn);
        if (!other) return 'preview';
        await vscode.commands.executeCommand('vscode.open', vscode.Uri.file(p), { preview: true, viewColumn: other.viewColumn, preserveFocus: true });
        return 'opened';
      },
      imageThumbnail: async ({ path: p, size }) => {
        if (!allowedImage(p)) throw badInput('That image is not in the workspace or the model’s folder.');
        return d.engine.call('imageThumbnail', { path: p, size });
      },
      ...this.maps.handlers(),
      ...this.training.handlers(),
      ...this.latent.handlers(),
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

/** As the Models view names the model: a model.json by its folder, a Keras or ONNX file by its own name. */
function title(uri: vscode.Uri): string {
  const file = path.basename(uri.fsPath);
  return `Layer Lens: ${file === 'model.json' ? path.basename(path.dirname(uri.fsPath)) : file}`;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
