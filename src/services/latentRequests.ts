/**
 * What the Latent tab may map, and the maps it was asked to show. The
 * webview is untrusted: it may name only folders of the workspace or folders
 * the host handed to it (picked in a dialog, or computed by the Compute
 * Embeddings command). A map asked for by a command waits here until the
 * model's inspector listens (a panel just opened asks for it when its
 * webview is ready).
 */
import * as path from 'node:path';
import * as vscode from 'vscode';

export interface MapRequest {
  model: vscode.Uri;
  datasetDir: string;
  layerPath: string | null;
}

export class LatentRequests implements vscode.Disposable {
  private readonly handedOut = new Set<string>();
  private readonly pending = new Map<string, { datasetDir: string; layerPath: string | null }>();
  private readonly requested = new vscode.EventEmitter<MapRequest>();
  /** A command asked the model's inspector to show a map. */
  readonly onDidRequestMap = this.requested.event;

  /** A folder the host chose: the Latent tab may map it. */
  handOut(folder: string): void {
    this.handedOut.add(path.resolve(folder));
  }

  /** A folder the Latent tab may map: handed out, or inside the workspace. */
  mayMap(folder: string): boolean {
    const dir = path.resolve(folder);
    if (this.handedOut.has(dir)) return true;
    return (vscode.workspace.workspaceFolders ?? []).some((f) => {
      const r = path.relative(f.uri.fsPath, dir);
      return r === '' || (!r.startsWith('..') && !path.isAbsolute(r));
    });
  }

  /** Shows this folder's map in the model's Latent tab (now, or when the tab asks). */
  requestMap(r: MapRequest): void {
    this.handOut(r.datasetDir);
    this.pending.set(r.model.fsPath, { datasetDir: r.datasetDir, layerPath: r.layerPath });
    this.requested.fire(r);
  }

  /** The map waiting for the model's Latent tab, if any (taken once). */
  takePending(model: vscode.Uri): { datasetDir: string; layerPath: string | null } | null {
    const p = this.pending.get(model.fsPath) ?? null;
    this.pending.delete(model.fsPath);
    return p;
  }

  dispose(): void {
    this.requested.dispose();
  }
}
