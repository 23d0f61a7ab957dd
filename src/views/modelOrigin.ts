/**
 * What tells a model Layer Lens trained apart from its siblings in the Models
 * view: when it was made and how well it did, read from the metadata.json and
 * metrics.json that a fine-tune or a rotation pretext writes next to it.
 * Three runs of one afternoon are all "shapes-cnn-finetuned-20261203-…" by
 * name; "shapes-cnn · 3 Dec 18:42" with "val acc 70% · fine-tuned" sets them
 * apart.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface ModelOrigin {
  kind: 'fine-tuned' | 'rotation-pretrained';
  /** ISO time from metadata.json. */
  created?: string;
  /** Validation accuracy of the weights that were saved (the best epoch's when they were restored). */
  valAcc?: number;
  /** The epoch those weights come from, and how many ran. */
  epoch?: number;
  epochs?: number;
  /** The dataset (or unlabelled images), as metadata.json names it relative to the model folder. */
  data?: string;
}

type Json = Record<string, unknown>;
const obj = (v: unknown): Json | undefined => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : undefined);
const numOr = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const strOr = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** The origin from the two files' parsed contents (either may be missing); undefined for a model Layer Lens did not train. */
export function modelOrigin(metadata: unknown, metrics: unknown): ModelOrigin | undefined {
  const meta = obj(metadata);
  if (!meta || meta['createdBy'] !== 'Layer Lens') return undefined;
  const created = strOr(meta['created']);
  const pretext = obj(meta['pretext']);
  if (pretext) {
    return { kind: 'rotation-pretrained', created, valAcc: numOr(pretext['val_acc']), epochs: numOr(pretext['epochsRun']), data: strOr(pretext['images']) };
  }
  const out: ModelOrigin = { kind: 'fine-tuned', created, data: strOr(meta['dataset']) };
  const m = obj(metrics);
  const rows = Array.isArray(m?.['epochs']) ? (m['epochs'] as unknown[]).map(obj).filter((r): r is Json => r !== undefined) : [];
  if (rows.length > 0) {
    const best = numOr(m?.['bestEpoch']);
    const kept = m?.['restored'] === true && best !== undefined ? rows.find((r) => r['epoch'] === best) : undefined;
    const row = kept ?? rows[rows.length - 1];
    out.valAcc = numOr(row['val_acc']);
    out.epoch = numOr(row['epoch']);
    out.epochs = rows.length;
  }
  // The saved model evaluated on the validation split, where the run did (the same number, measured once more).
  const evaluation = obj(m?.['evaluation']);
  if (evaluation?.['split'] === 'validation' && numOr(evaluation['accuracy']) !== undefined) out.valAcc = numOr(evaluation['accuracy']);
  return out;
}

/** "3 Dec 18:42" in the machine's time zone (the folder name's date is in it too). */
export function shortTime(iso: string | undefined): string | undefined {
  if (!iso) return undefined;
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return undefined;
  const month = d.toLocaleString('en-US', { month: 'short' });
  return `${d.getDate()} ${month} ${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
}

/**
 * The Models view's description lead: "val acc 70% · fine-tuned", and the
 * time when the label does not show it ("… · 3 Dec 18:42").
 */
export function originDescription(o: ModelOrigin, withTime = true): string {
  const parts: string[] = [];
  if (o.valAcc !== undefined) parts.push(`${o.kind === 'rotation-pretrained' ? 'rotation ' : ''}val acc ${(o.valAcc * 100).toFixed(0)}%`);
  parts.push(o.kind);
  const t = withTime ? shortTime(o.created) : undefined;
  if (t) parts.push(t);
  return parts.join(' · ');
}

/**
 * The label of a folder Layer Lens wrote a run to, from its name alone:
 * "shapes-cnn-finetuned-20261203-1842" → "shapes-cnn · 3 Dec 18:42" (a second
 * run of the same minute: "… (2)"). In a side bar of 250 px the folder name
 * showed only "shapes-cnn-finetuned-2026…" for every run of a day.
 */
export function runLabel(folder: string): { label: string; kind: ModelOrigin['kind'] } | undefined {
  const m = /^(.+)-(finetuned|rotation-pretrained)-(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(?:-(\d+))?$/.exec(folder);
  if (!m) return undefined;
  const month = new Date(2000, Number(m[4]) - 1, 1).toLocaleString('en-US', { month: 'short' });
  const parent = m[1].length > 14 ? `${m[1].slice(0, 13)}…` : m[1];
  return { label: `${parent} · ${Number(m[5])} ${month} ${m[6]}:${m[7]}${m[8] ? ` (${m[8]})` : ''}`, kind: m[2] === 'finetuned' ? 'fine-tuned' : 'rotation-pretrained' };
}

/** The tooltip's line: "Fine-tuned 3 Dec 18:42 on ../datasets/glyphs: val acc 70.0% at epoch 8 of 20 (best, kept)". */
export function originTooltip(o: ModelOrigin): string {
  const when = shortTime(o.created);
  const head = `${o.kind === 'fine-tuned' ? 'Fine-tuned' : 'Rotation-pretrained'} by Layer Lens${when ? ` ${when}` : ''}${o.data ? ` on ${o.data}` : ''}`;
  if (o.valAcc === undefined) return head;
  const at = o.epoch !== undefined && o.epochs !== undefined ? ` at epoch ${o.epoch} of ${o.epochs}` : o.epochs !== undefined ? ` after ${o.epochs} epochs` : '';
  return `${head}: val acc ${(o.valAcc * 100).toFixed(1)}%${at}`;
}

// Small files only: a metrics.json of a thousand epochs is about 200 KB.
const maxBytes = 1024 * 1024;

async function readJson(file: string): Promise<unknown> {
  try {
    const st = await fs.promises.stat(file);
    if (!st.isFile() || st.size > maxBytes) return undefined;
    return JSON.parse(await fs.promises.readFile(file, 'utf8')) as unknown;
  } catch {
    return undefined;
  }
}

/** Reads the origin of the model whose model.json is `modelJson` (undefined for a model Layer Lens did not train). */
export async function readModelOrigin(modelJson: string): Promise<ModelOrigin | undefined> {
  // A model.json Layer Lens wrote, or the one .onnx of an ONNX fine-tune, with metadata.json beside it.
  if (path.basename(modelJson) !== 'model.json' && !/\.onnx$/i.test(modelJson)) return undefined;
  const dir = path.dirname(modelJson);
  const metadata = await readJson(path.join(dir, 'metadata.json'));
  if (!metadata) return undefined;
  return modelOrigin(metadata, await readJson(path.join(dir, 'metrics.json')));
}
