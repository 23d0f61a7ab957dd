/** Exporting an embedding set for TensorBoard's Projector: a folder dialog, then the worker writes the two TSV files. */
import * as vscode from 'vscode';
import type { EngineClient } from '../engineClient';
import type { Logger } from '../logger';
import type { EmbeddingSummary } from '../protocol/embed';
import { RemoteError } from '../protocol/rpc';

const rel = (p: string) => vscode.workspace.asRelativePath(p);

export async function exportProjector(engine: EngineClient, log: Logger, setId: string, s: EmbeddingSummary): Promise<string | null> {
  const target = await vscode.window.showOpenDialog({
    canSelectFiles: false,
    canSelectFolders: true,
    openLabel: 'Export vectors.tsv + metadata.tsv Here',
    defaultUri: vscode.Uri.file(s.cacheDir),
    title: 'Export for the TensorBoard Embedding Projector',
  });
  if (!target?.[0]) return null;
  const dir = target[0].fsPath;
  let out;
  try {
    out = await engine.call('exportProjector', { setId, dir });
  } catch (e) {
    // The folder already holds vectors.tsv or metadata.tsv: replace them only when the user says so.
    if (!(e instanceof RemoteError) || e.code !== 'output-exists') throw e;
    const replace = 'Replace';
    if ((await vscode.window.showWarningMessage(`${rel(dir)} already holds vectors.tsv or metadata.tsv. Replace them?`, { modal: true }, replace)) !== replace) return null;
    out = await engine.call('exportProjector', { setId, dir, force: true });
  }
  log.info(`Exported ${out.rows} embeddings for the Projector: ${rel(out.vectors)}, ${rel(out.metadata)} (load both at projector.tensorflow.org)`);
  return out.vectors;
}
