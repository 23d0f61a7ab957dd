/**
 * TensorBoard Embedding Projector files: `vectors.tsv` (one embedding per
 * line, values separated by tabs) and `metadata.tsv` (one line per
 * embedding; with classes, a header "label\tpath" and two columns, without,
 * a single column of paths and no header, as the Projector expects for one
 * column). Values are written in the shortest form that reads back to the
 * same float32, so an export round-trips exactly.
 */
import * as path from 'node:path';
import { OutputFolder } from '../io/output';
import { EngineError } from '../errors';

/** The shortest decimal that parses back to the same float32. */
export function formatFloat32(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  for (let p = 6; p < 9; p++) {
    const s = String(Number(v.toPrecision(p)));
    if (Math.fround(Number(s)) === v) return s;
  }
  return String(Number(v.toPrecision(9)));
}

/** Tabs and line breaks inside a cell would split it. */
const cell = (s: string) => s.replace(/[\t\r\n]+/g, ' ');

export function vectorsTsv(vectors: Float32Array, dim: number): string {
  const lines: string[] = [];
  for (let r = 0; r * dim < vectors.length; r++) {
    const row = new Array<string>(dim);
    for (let j = 0; j < dim; j++) row[j] = formatFloat32(vectors[r * dim + j]);
    lines.push(row.join('\t'));
  }
  return lines.join('\n') + (lines.length > 0 ? '\n' : '');
}

export function metadataTsv(paths: readonly string[], labels: ArrayLike<number>, classes: readonly string[] | null): string {
  if (!classes) return paths.map((p) => cell(p) + '\n').join('');
  return ['label\tpath', ...paths.map((p, i) => `${cell(classes[labels[i]] ?? '')}\t${cell(p)}`)].join('\n') + '\n';
}

export function parseVectorsTsv(text: string): { vectors: Float32Array; dim: number; rows: number } {
  const lines = text.split('\n').filter((l) => l.length > 0);
  const dim = lines.length > 0 ? lines[0].split('\t').length : 0;
  const vectors = new Float32Array(lines.length * dim);
  lines.forEach((l, r) => {
    const cells = l.split('\t');
    if (cells.length !== dim) throw new EngineError('bad-input', `vectors.tsv line ${r + 1} has ${cells.length} values, not ${dim}.`);
    cells.forEach((c, j) => (vectors[r * dim + j] = Number(c)));
  });
  return { vectors, dim, rows: lines.length };
}

export function parseMetadataTsv(text: string): { header: string[] | null; rows: string[][] } {
  const lines = text.split('\n').filter((l) => l.length > 0);
  const twoColumns = lines.length > 0 && lines[0] === 'label\tpath';
  return twoColumns ? { header: ['label', 'path'], rows: lines.slice(1).map((l) => l.split('\t')) } : { header: null, rows: lines.map((l) => [l]) };
}

/** The two files a projector export writes. */
export const projectorFiles = ['vectors.tsv', 'metadata.tsv'];

/**
 * Writes vectors.tsv and metadata.tsv into `dir` (io/output.ts: files that
 * exist are replaced only with `force`); returns their paths.
 */
export async function writeProjectorFiles(
  dir: string,
  set: { vectors: Float32Array; dim: number; paths: readonly string[]; labels: ArrayLike<number>; classes: readonly string[] | null },
  o: { force?: boolean } = {},
): Promise<{ vectors: string; metadata: string; rows: number }> {
  const folder = await OutputFolder.prepare(dir, { files: projectorFiles, force: o.force, flag: 'the export folder' });
  await folder.write([
    { file: 'vectors.tsv', data: vectorsTsv(set.vectors, set.dim) },
    { file: 'metadata.tsv', data: metadataTsv(set.paths, set.labels, set.classes) },
  ]);
  return { vectors: path.join(folder.dir, 'vectors.tsv'), metadata: path.join(folder.dir, 'metadata.tsv'), rows: set.paths.length };
}
