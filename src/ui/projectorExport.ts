/** Exporting an embedding set for TensorBoard's Projector: a folder dialog, then the worker writes the two TSV files. */
import * as vscode from 'vscode';
import type { EngineClient } from '../engineClient';
import type { Logger } from '../logger';
import type { EmbeddingSummary } from '../protocol/embed';

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
  const out = await engine.call('exportProjector', { setId, dir: target[0].fsPath });
  log.info(`Exported ${out.rows} embeddings for the Projector: ${rel(out.vectors)}, ${rel(out.metadata)} (load both at projector.tensorflow.org)`);
  return out.vectors;
}
