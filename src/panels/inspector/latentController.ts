/**
 * The host side of an inspector's Latent tab: the folder to map (picked
 * here, or handed over by the Compute Embeddings command through
 * LatentRequests), the map computed in the worker, its neighbours,
 * thumbnails and the Projector export.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { embeddingSummaryLine, type EmbeddingSummary } from '../../protocol/embed';
import type { Handlers } from '../../protocol/rpc';
import type { WebviewApi } from '../../protocol/webviewApi';
import { pickFolder } from '../../ui/pickers';
import { exportProjector } from '../../ui/projectorExport';
import { badInput, type PanelContext } from './context';

type LatentMethods = 'latentState' | 'latentPickFolder' | 'latentMap' | 'latentNeighbors' | 'latentThumbnail' | 'latentExport';

const rel = (p: string) => vscode.workspace.asRelativePath(p);

export class LatentController implements vscode.Disposable {
  private current: EmbeddingSummary | undefined;
  private readonly subscription: vscode.Disposable;

  constructor(private readonly panel: PanelContext) {
    this.subscription = panel.deps.latent.onDidRequestMap((r) => {
      if (r.model.fsPath === panel.modelUri.fsPath) panel.post({ type: 'latent', datasetDir: r.datasetDir, layerPath: r.layerPath });
    });
  }

  private setId(): string {
    if (!this.current) throw badInput('No map yet: compute one first.');
    return this.current.setId;
  }

  handlers(): Pick<Handlers<WebviewApi>, LatentMethods> {
    const { engine, latent, log } = this.panel.deps;
    const model = this.panel.modelUri;
    return {
      latentState: () => ({ pending: latent.takePending(model) }),
      latentPickFolder: async () => {
        const folder = await pickFolder('Images to map: a folder (one sub-folder per class colours the points)', model, 'Map These Images');
        if (!folder) return null;
        latent.handOut(folder.fsPath);
        return folder.fsPath;
      },
      latentMap: async ({ datasetDir, method, layerPath, normalization }, ctx) => {
        const dir = path.resolve(datasetDir);
        if (!latent.mayMap(dir)) throw badInput('That folder is outside the workspace; choose it with "Choose Folder…".');
        if (!vscode.workspace.isTrusted) throw badInput('Layer Lens does not write its embedding cache in an untrusted workspace; trust the folder to compute maps.');
        const map = await engine.call('latentMap', { modelPath: model.fsPath, datasetDir: dir, layer: layerPath, normalization, method, seed: 7 }, { signal: ctx.signal, onProgress: (p) => ctx.progress(p) });
        this.current = map.summary;
        log.info(`${embeddingSummaryLine(map.summary, rel)}; ${method.toUpperCase()} map in ${map.projectionMs} ms`);
        for (const s of map.summary.skipped.slice(0, 10)) log.warn(`Skipped ${s.file}: ${s.detail}`);
        return map;
      },
      latentNeighbors: ({ index, k }) => engine.call('latentNeighbors', { setId: this.setId(), index, k }),
      latentThumbnail: ({ index }) => engine.call('latentThumbnail', { setId: this.setId(), index, size: 96 }),
      latentExport: async () => exportProjector(engine, log, this.setId(), this.current!),
    };
  }

  dispose(): void {
    this.subscription.dispose();
  }
}
