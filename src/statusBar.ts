/**
 * The status bar item: which backend computes (tensorflow / wasm / cpu) and
 * whether a job runs. Hidden until the worker has started.
 */
import * as vscode from 'vscode';
import { backendLabel, type BackendReport } from './protocol/workerApi';

export class BackendStatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem('layerLens.backend', vscode.StatusBarAlignment.Right, 100);
  private backend: BackendReport | undefined;
  private busy = false;

  constructor() {
    this.item.name = 'Layer Lens backend';
    this.item.command = 'layerLens.showLog';
  }

  setBackend(report: BackendReport): void {
    this.backend = report;
    this.render();
  }

  setBusy(busy: boolean): void {
    this.busy = busy;
    this.render();
  }

  private render(): void {
    if (!this.backend) {
      if (this.busy) {
        this.item.text = '$(sync~spin) Layer Lens: starting';
        this.item.show();
      }
      return;
    }
    const name = backendLabel(this.backend.name);
    this.item.text = `${this.busy ? '$(sync~spin)' : '$(circuit-board)'} Layer Lens: ${name}`;
    const notes = this.backend.notes.length ? `\n\n${this.backend.notes.join('\n\n')}` : '';
    this.item.tooltip = `Layer Lens computes on the ${name} backend${this.busy ? ' (working)' : ''}.${notes}\n\nClick to show the log.`;
    this.item.show();
  }

  dispose(): void {
    this.item.dispose();
  }
}
