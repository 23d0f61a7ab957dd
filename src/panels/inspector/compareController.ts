/**
 * The host side of an inspector's Compare tab (two models with the same
 * input: this panel's model is B, the reference A is typically the original
 * it was fine-tuned from) and of its probe pin: which model is the reference, which folder of images the
 * similarity runs on, and which image and layer the next fine-tune watches.
 * Paths never come from the webview: the reference and the image folder are
 * picked here (quick pick, folder dialog), the probe image is the panel's.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { Handlers } from '../../protocol/rpc';
import type { CompareState, CompareTarget, ProbeState, WebviewApi } from '../../protocol/webviewApi';
import type { ModelRegistry } from '../../services/modelRegistry';
import { readSmallFileSync } from '../../engine/io/safeRead';
import { badInput, type PanelContext } from './context';

type CompareMethods = 'compareState' | 'pickReference' | 'pickImageSet' | 'compare' | 'compareMaps' | 'compareSimilarity' | 'setProbe';

/** A model as the UI names it: its folder for a model.json. */
export function modelName(p: string): string {
  return path.basename(p) === 'model.json' ? path.basename(path.dirname(p)) : path.basename(p);
}

function readMetadata(modelJsonPath: string): Record<string, unknown> | undefined {
  try {
    // Never a blocking read in the extension host: an ordinary file of at most 1 MB, or nothing (io/safeRead.ts).
    const text = readSmallFileSync(path.join(path.dirname(modelJsonPath), 'metadata.json'), 1024 * 1024);
    if (text === undefined) return undefined;
    const m = JSON.parse(text) as unknown;
    return typeof m === 'object' && m !== null ? (m as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** A path from a model's metadata.json, resolved against its folder; only inside a workspace folder (models come from strangers). */
function metadataPath(modelJsonPath: string, key: 'sourceModel' | 'dataset'): string | undefined {
  const v = readMetadata(modelJsonPath)?.[key];
  if (typeof v !== 'string' || v.length === 0 || v.length > 4096) return undefined;
  const p = path.resolve(path.dirname(modelJsonPath), v);
  const inWorkspace = (vscode.workspace.workspaceFolders ?? []).some((f) => {
    const r = path.relative(f.uri.fsPath, p);
    return r === '' || (!r.startsWith('..') && !path.isAbsolute(r));
  });
  return inWorkspace && fs.existsSync(p) ? p : undefined;
}

/** The validation images of the fine-tune that made this model (its metadata.json), those still in the workspace. */
export function validationImagesOf(modelJsonPath: string): string[] {
  const list = readMetadata(modelJsonPath)?.validationImages;
  if (!Array.isArray(list)) return [];
  const folder = path.dirname(modelJsonPath);
  return list
    .filter((v): v is string => typeof v === 'string' && v.length > 0 && v.length <= 4096)
    .map((v) => path.resolve(folder, v))
    .filter((p) => /\.(png|jpe?g)$/i.test(p) && !!vscode.workspace.getWorkspaceFolder(vscode.Uri.file(p)) && fs.existsSync(p));
}

/** The model this one was fine-tuned from (its metadata.json's sourceModel), if it is in the workspace. */
export function sourceModelOf(modelJsonPath: string): string | undefined {
  return metadataPath(modelJsonPath, 'sourceModel');
}

/** Quick pick of the reference model (A) for `model`: its source first, then its fine-tuned copies, then the rest. */
export async function pickReferenceFor(registry: ModelRegistry, model: vscode.Uri): Promise<vscode.Uri | undefined> {
  const source = sourceModelOf(model.fsPath);
  const all = (await registry.list()).filter((u) => u.fsPath !== model.fsPath);
  if (all.length === 0) {
    void vscode.window.showInformationMessage('There is no other model in this workspace to compare with. Fine-tune this one first (Layer Lens: Fine-Tune…).');
    return undefined;
  }
  const rank = (u: vscode.Uri) => (u.fsPath === source ? 0 : sourceModelOf(u.fsPath) === model.fsPath ? 1 : 2);
  const items = all
    .sort((x, y) => rank(x) - rank(y) || x.fsPath.localeCompare(y.fsPath))
    .map((uri) => ({
      label: modelName(uri.fsPath),
      description: vscode.workspace.asRelativePath(uri),
      detail: rank(uri) === 0 ? `the original ${modelName(model.fsPath)} was fine-tuned from` : rank(uri) === 1 ? `fine-tuned from ${modelName(model.fsPath)}` : undefined,
      uri,
    }));
  const picked = await vscode.window.showQuickPick(items, {
    title: `Layer Lens: Compare ${modelName(model.fsPath)} with…`,
    placeHolder: 'The reference model (A), e.g. the original it was fine-tuned from; it must take the same input',
    matchOnDescription: true,
  });
  return picked?.uri;
}

export class CompareController implements vscode.Disposable {
  private reference: string | undefined;
  /** Keeps the reference loaded in the worker while this tab compares with it. */
  private referenceHold: vscode.Disposable | undefined;
  private imageSet: string | undefined;
  private pinned: ProbeState | undefined;
  private selectedLayer: string | undefined;
  /** The host asked for the comparison (a command): the webview opens the Compare tab once. */
  private focus = false;

  private readonly model: vscode.Uri;

  constructor(
    private readonly panel: PanelContext,
    reference?: string,
  ) {
    this.model = panel.modelUri;
    if (reference && fs.existsSync(reference)) this.use(reference);
  }

  private use(reference: string): void {
    if (reference === this.reference) return;
    this.referenceHold?.dispose();
    this.reference = reference;
    this.referenceHold = this.panel.deps.registry.hold(vscode.Uri.file(reference));
  }

  private target(): CompareTarget | null {
    return this.reference ? { path: this.reference, name: modelName(this.reference) } : null;
  }

  /** Compare this panel's model (B) with `reference` (A), and show it. */
  setReference(reference: string): void {
    this.use(reference);
    this.focus = true;
    this.panel.post({ type: 'compare', reference: { path: reference, name: modelName(reference) } });
  }

  /** The fine-tune's validation images (B's, else A's metadata), unless a folder was chosen: drift is measured on images the run never trained on. */
  private validationImages(): string[] {
    if (this.imageSet) return [];
    const own = validationImagesOf(this.model.fsPath);
    return own.length > 0 ? own : this.reference ? validationImagesOf(this.reference) : [];
  }

  /** The folder of images for the similarity: the chosen one, else the dataset the fine-tune used, else the current image's folder. */
  private defaultImageSet(): string | undefined {
    if (this.imageSet) return this.imageSet;
    const fromMeta = metadataPath(this.model.fsPath, 'dataset') ?? (this.reference ? metadataPath(this.reference, 'dataset') : undefined);
    if (fromMeta) return fromMeta;
    const image = this.panel.imagePath();
    return image ? path.dirname(image) : undefined;
  }

  /** The probe of the next fine-tune: the pinned image and layer, else the current image and selected layer. */
  probe(): ProbeState | undefined {
    if (this.pinned) return this.pinned;
    const image = this.panel.imagePath();
    return image && this.selectedLayer ? { imagePath: image, layerPath: this.selectedLayer, pinned: false } : undefined;
  }

  private pair(): { aPath: string; bPath: string } {
    if (!this.reference) throw badInput('No model to compare with yet: pick one (Compare with…).');
    return { aPath: this.reference, bPath: this.model.fsPath };
  }

  handlers(): Pick<Handlers<WebviewApi>, CompareMethods> {
    const { engine, registry, log } = this.panel.deps;
    return {
      compareState: (): CompareState => {
        const focus = this.focus;
        this.focus = false;
        const validation = this.validationImages();
        return { reference: this.target(), imageSet: validation.length > 0 ? `the fine-tune's ${validation.length} validation images` : (this.defaultImageSet() ?? null), focus };
      },
      pickReference: async () => {
        const picked = await pickReferenceFor(registry, this.model);
        if (!picked) return null;
        this.use(picked.fsPath);
        return this.target();
      },
      pickImageSet: async () => {
        const current = this.defaultImageSet();
        const chosen = await vscode.window.showOpenDialog({
          canSelectFiles: false,
          canSelectFolders: true,
          openLabel: 'Use These Images',
          title: 'Images to measure activation similarity on (a dataset folder, or any folder of PNG/JPEG images)',
          ...(current ? { defaultUri: vscode.Uri.file(current) } : {}),
        });
        if (!chosen?.[0]) return null;
        this.imageSet = chosen[0].fsPath;
        return this.imageSet;
      },
      compare: async ({ normalization }) => {
        const image = this.panel.imagePath();
        if (!image) throw badInput('No image yet: pick one first.');
        const r = await engine.call('compare', { ...this.pair(), imagePath: image, normalization });
        log.info(`Compared ${vscode.workspace.asRelativePath(r.b.modelPath)} with ${vscode.workspace.asRelativePath(r.a.modelPath)}: ${r.layers.length} matched layers, ${r.onlyA.length} only in A, ${r.onlyB.length} only in B (${r.ms} ms)`);
        return r;
      },
      compareMaps: ({ layerPath, maxSize }) => engine.call('compareMaps', { ...this.pair(), layerPath, maxSize }),
      compareSimilarity: async ({ normalization, maxImages }, ctx) => {
        const validation = this.validationImages();
        const folder = this.defaultImageSet();
        if (validation.length === 0 && !folder) throw badInput('No images to measure similarity on: pick a folder of images.');
        const images = validation.length > 0 ? { imagePaths: validation } : { folder: folder! };
        const r = await engine.call('compareSimilarity', { ...this.pair(), ...images, normalization, maxImages }, { onProgress: (p) => ctx.progress(p), signal: ctx.signal });
        const from = validation.length > 0 ? "the fine-tune's validation images" : vscode.workspace.asRelativePath(folder!);
        log.info(`Activation similarity (linear CKA) of ${r.layers.length} layers over ${r.images} images from ${from} (${r.ms} ms)`);
        return r;
      },
      setProbe: ({ layerPath, pinned }) => {
        const image = this.panel.imagePath();
        if (pinned) {
          if (!image || !layerPath) throw badInput('Pick an image and a layer first, then pin them as the probe.');
          this.pinned = { imagePath: image, layerPath, pinned: true };
        } else if (layerPath === null) {
          this.pinned = undefined;
        } else {
          this.selectedLayer = layerPath;
        }
        return this.probe() ?? null;
      },
    };
  }

  dispose(): void {
    this.referenceHold?.dispose();
  }
}
