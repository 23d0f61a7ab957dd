/**
 * The recipe file next to a model (layerlens.json): read it into a Recipe the
 * rest of the engine can always use, with diagnostics an editor can place on
 * the offending text, and write it back without losing what the user wrote.
 * No vscode import: the host turns diagnostics into a DiagnosticCollection,
 * the CLI prints them with formatDiagnostic().
 *
 * Reading never fails on content. Bad JSON gives one diagnostic with its line
 * and column and the default recipe; a value the schema (src/protocol/recipe.ts)
 * refuses gives a diagnostic at that value and the default in its place; a
 * frozen path that names no layer gives a warning (applyFreezePlan ignores
 * it). JSON.parse cannot say where a value is, and in Node 20 not always
 * where a syntax error is, so a small strict JSON parser (recipeJson.ts)
 * records both; recipeSchema.ts words the schema's complaints.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EngineError } from './errors';
import { cleanStaleTemps, writeFileAtomic } from './io/atomic';
import { readRegularFile, UnreadableFile } from './io/safeRead';
import { defaultRecipe, recipeFileName, recipeSchema, type Recipe } from '../protocol/recipe';
import type { LayerRow } from '../protocol/model';
import { JsonSyntaxError, lineColumn, parseJsonWithSpans, spanKey, type JsonPath, type ParsedJson } from './recipeJson';
import { comparePathsDesc, deleteAt, didYouMean, dropTarget, fallbackText, getAt, isRecord, issueMessage, pathText, schemaAt, schemaRoot, type Issue, type SchemaNode } from './recipeSchema';

export type { JsonPath } from './recipeJson';

export type RecipeSeverity = 'error' | 'warning' | 'info';

export interface RecipeDiagnostic {
  message: string;
  /** The problem alone, without what reading does instead ("Using the default … until it is fixed"), for callers that stop instead. */
  problem?: string;
  /** JSON path of the value concerned (`[]` for the whole file), e.g. ["finetune", "epochs"]. */
  path: JsonPath;
  /** 1-based line and column (UTF-16 units) where the value, or the key of an unknown setting, starts. */
  line?: number;
  column?: number;
  /** 1-based, exclusive end of the same range. */
  endLine?: number;
  endColumn?: number;
  severity: RecipeSeverity;
}

export interface ParsedRecipe {
  /** Always usable: defaults filled in, invalid parts replaced by their defaults. */
  recipe: Recipe;
  diagnostics: RecipeDiagnostic[];
}

export interface RecipeFile extends ParsedRecipe {
  /** Absolute path of layerlens.json (whether or not it exists). */
  file: string;
  exists: boolean;
}

/** layerlens.json in the folder of a model.json. */
export function recipePathFor(modelJsonPath: string): string {
  // A model.json owns its folder; a Keras file may share one with others, so
  // its recipe is named after it: cnn.h5 -> cnn.layerlens.json.
  const base = path.basename(modelJsonPath);
  if (base === 'model.json') return path.join(path.dirname(modelJsonPath), recipeFileName);
  return path.join(path.dirname(modelJsonPath), `${base.replace(/\.[^.]+$/, '')}.${recipeFileName}`);
}

/** The model a recipe file belongs to: model.json for layerlens.json, else the Keras or ONNX file named by its stem. */
export function modelPathsForRecipe(recipePath: string): string[] {
  const dir = path.dirname(recipePath);
  const base = path.basename(recipePath);
  if (base === recipeFileName) return [path.join(dir, 'model.json')];
  const stem = base.slice(0, -(recipeFileName.length + 1));
  return [path.join(dir, `${stem}.h5`), path.join(dir, `${stem}.keras`), path.join(dir, `${stem}.hdf5`), path.join(dir, `${stem}.onnx`)];
}

/** "layerlens.json:3:14: error: …", as compilers print them (for the CLI and the log). */
export function formatDiagnostic(file: string, d: RecipeDiagnostic): string {
  const at = d.line !== undefined ? `:${d.line}:${d.column ?? 1}` : '';
  return `${file}${at}: ${d.severity}: ${d.message}`;
}

// ---------------------------------------------------------------------------
// Reading a recipe.

export interface RecipeContext {
  /** The model's layer table, to check `freeze` and `cutLayer` against. */
  rows?: readonly LayerRow[];
  /** For messages ("model.json"). */
  modelName?: string;
}

/** Parses the text of a layerlens.json. Never throws; see the module comment. */
export function parseRecipe(text: string, context: RecipeContext = {}): ParsedRecipe {
  const diagnostics: RecipeDiagnostic[] = [];
  let parsed: ParsedJson;
  try {
    parsed = parseJsonWithSpans(text);
  } catch (e) {
    if (!(e instanceof JsonSyntaxError)) throw e;
    const at = lineColumn(text, e.offset);
    const end = lineColumn(text, Math.min(e.offset + 1, text.length));
    diagnostics.push({
      message: `${recipeFileName} is not valid JSON: ${e.message}. Layer Lens uses the default recipe (nothing frozen) until it is fixed.`,
      problem: `${recipeFileName} is not valid JSON: ${e.message}.`,
      path: [],
      line: at.line,
      column: at.column,
      endLine: end.line,
      endColumn: Math.max(end.column, at.column + 1),
      severity: 'error',
    });
    return { recipe: defaultRecipe(), diagnostics };
  }

  const place = (p: JsonPath, onKey = false): Pick<RecipeDiagnostic, 'line' | 'column' | 'endLine' | 'endColumn'> => {
    let t = [...p];
    while (t.length > 0 && !parsed.spans.has(spanKey(t))) t = t.slice(0, -1);
    const span = parsed.spans.get(spanKey(t));
    if (!span) return {};
    const useKey = (onKey || t.length < p.length) && span.keyStart !== undefined;
    const a = lineColumn(text, useKey ? span.keyStart! : span.start);
    // A whole object or list would underline many lines; its first line is enough.
    const endOffset = useKey ? span.keyEnd! : isRecord(getAt(parsed.value, t).value) || Array.isArray(getAt(parsed.value, t).value) ? span.start + 1 : span.end;
    const b = lineColumn(text, endOffset);
    return { line: a.line, column: a.column, endLine: b.line, endColumn: b.column };
  };
  const report = (severity: RecipeSeverity, p: JsonPath, message: string, onKey = false, problem?: string) =>
    diagnostics.push({ message, ...(problem !== undefined ? { problem } : {}), path: p, ...place(p, onKey), severity });

  for (const d of parsed.duplicates) report('warning', d, `${pathText(d)} appears twice in one object; the last one counts. Remove the other.`, true);

  // Repair: drop what the schema refuses, so that its default applies, and
  // parse again. Only the first round's issues are reported; later rounds
  // only clean up after the drops (a list that became too short).
  const work: unknown = structuredClone(parsed.value);
  let recipe: Recipe | undefined;
  for (let round = 0; round < 10 && !recipe; round++) {
    const result = recipeSchema.safeParse(work);
    if (result.success) {
      recipe = result.data;
      break;
    }
    const drops: JsonPath[] = [];
    for (const issue of result.error.issues) {
      const p = issue.path.filter((s): s is string | number => typeof s !== 'symbol');
      if (issue.code === 'unrecognized_keys') {
        const known = Object.keys(schemaAt(p, work)?.properties ?? {});
        for (const key of issue.keys) {
          const hint = didYouMean(key, known);
          const inside = p.length ? `in ${pathText(p)}` : 'at the top level';
          if (round === 0) {
            const problem = `unknown setting "${key}" ${inside}${hint ? `; did you mean "${hint}"?` : `; known settings: ${known.join(', ')}.`}`;
            report('error', [...p, key], `${problem} It is ignored.`, true, problem);
          }
          drops.push([...p, key]);
        }
        continue;
      }
      const target = dropTarget(work, p);
      const problem = `${issueMessage({ ...issue, path: p } as Issue, work)}.`;
      if (round === 0) report('error', p, `${problem} ${fallbackText(target)}`, false, problem);
      drops.push(target);
    }
    if (drops.some((d) => d.length === 0)) {
      recipe = defaultRecipe();
      break;
    }
    const unique = [...new Map(drops.map((d) => [spanKey(d), d])).values()].sort(comparePathsDesc);
    for (const d of unique) deleteAt(work, d);
  }
  if (!recipe) {
    report('error', [], `${recipeFileName} could not be repaired; Layer Lens uses the default recipe until it is fixed.`, false, `${recipeFileName} could not be repaired.`);
    recipe = defaultRecipe();
  }

  checkAgainstModel(recipe, parsed.value, context, report);
  return { recipe, diagnostics };
}

type Report = (severity: RecipeSeverity, p: JsonPath, message: string, onKey?: boolean) => void;

/** Index in the file's own `freeze` list of a kept entry (invalid entries before it were dropped). */
function originalFreezeIndex(raw: unknown, entry: string, nth: number): number {
  const list = isRecord(raw) && Array.isArray(raw['freeze']) ? raw['freeze'] : [];
  let seen = 0;
  for (let k = 0; k < list.length; k++) if (list[k] === entry && seen++ === nth) return k;
  return -1;
}

/** A likely meant layer: same name at another depth ("Conv1" → "features/backbone/Conv1"), else a near path or name. */
function suggestLayer(entry: string, rows: readonly LayerRow[]): string | undefined {
  const last = entry.slice(entry.lastIndexOf('/') + 1);
  const byName = rows.find((r) => r.name === entry || r.name === last);
  if (byName) return byName.path;
  const path = didYouMean(entry, rows.map((r) => r.path));
  if (path) return path;
  const name = didYouMean(last, rows.map((r) => r.name));
  return rows.find((r) => r.name === name)?.path;
}

/** Checks that need the model or more than one field; warnings leave the recipe usable. */
function checkAgainstModel(recipe: Recipe, raw: unknown, context: RecipeContext, report: Report): void {
  const ft = recipe.finetune;
  const model = context.modelName ?? 'the model';
  if (context.rows) {
    const rows = context.rows;
    const byPath = new Map(rows.map((r) => [r.path, r]));
    const seen = new Map<string, number>();
    recipe.freeze.forEach((entry) => {
      const nth = seen.get(entry) ?? 0;
      seen.set(entry, nth + 1);
      const at: JsonPath = ['freeze', originalFreezeIndex(raw, entry, nth)];
      if (nth > 0) {
        report('info', at, `"${entry}" is listed twice in freeze; once is enough.`);
        return;
      }
      const row = byPath.get(entry);
      if (!row) {
        const hint = suggestLayer(entry, rows);
        report(
          'warning',
          at,
          `freeze lists "${entry}", which is not a layer of ${model}; it is ignored.${hint ? ` Did you mean "${hint}"?` : ''} Layer paths are as in the Models view, nested ones as "outer/inner/layer".`,
        );
        return;
      }
      for (let p = row.parent; p !== undefined; p = byPath.get(p)?.parent) {
        if (recipe.freeze.includes(p)) {
          report('info', at, `"${entry}" is already frozen because "${p}" (which contains it) is listed.`);
          break;
        }
      }
    });
    if (ft.cutLayer !== undefined && !byPath.has(ft.cutLayer)) {
      const hint = suggestLayer(ft.cutLayer, rows);
      report('warning', ['finetune', 'cutLayer'], `finetune.cutLayer "${ft.cutLayer}" is not a layer of ${model}.${hint ? ` Did you mean "${hint}"?` : ''} Using the default cut (the last feature layer).`);
      delete ft.cutLayer;
    }
  }
  if (ft.earlyStopping && ft.earlyStopping.monitor.startsWith('val_') && ft.validationFraction === 0) {
    report(
      'warning',
      ['finetune', 'earlyStopping', 'monitor'],
      `finetune.earlyStopping watches "${ft.earlyStopping.monitor}" but validationFraction is 0, so there is no validation set; watching "loss" instead. Set validationFraction above 0, or monitor "loss" or "acc".`,
    );
    ft.earlyStopping.monitor = ft.earlyStopping.monitor === 'val_acc' ? 'acc' : 'loss';
  }
  if (ft.lrSchedule?.kind === 'cosine' && ft.lrSchedule.minLearningRate > ft.learningRate) {
    report('warning', ['finetune', 'lrSchedule', 'minLearningRate'], `finetune.lrSchedule.minLearningRate (${ft.lrSchedule.minLearningRate}) is above learningRate (${ft.learningRate}), so the schedule would raise the rate; it should be lower.`);
  }
  if (ft.lrSchedule?.kind === 'step' && ft.lrSchedule.every >= ft.epochs) {
    report('info', ['finetune', 'lrSchedule', 'every'], `finetune.lrSchedule.every (${ft.lrSchedule.every}) is not below epochs (${ft.epochs}), so the learning rate never changes.`);
  }
}

const maxRecipeBytes = 1024 * 1024;

/**
 * Reads layerlens.json next to a model.json. A missing file is the default
 * recipe with no diagnostics. Throws only for what the user cannot fix in the
 * file's text (an I/O error); everything else is a diagnostic.
 */
export async function readRecipe(modelJsonPath: string, context: RecipeContext = {}): Promise<RecipeFile> {
  const file = recipePathFor(modelJsonPath);
  const folder = path.dirname(file);
  const none = (diagnostics: RecipeDiagnostic[] = [], exists = false): RecipeFile => ({ file, exists, recipe: defaultRecipe(), diagnostics });
  let real: string;
  try {
    real = await fs.promises.realpath(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return none();
    throw new EngineError('bad-recipe', `${file} cannot be read (${(e as Error).message}); check its permissions.`);
  }
  const realFolder = await fs.promises.realpath(folder);
  const rel = path.relative(realFolder, real);
  if (rel.startsWith('..') || path.isAbsolute(rel)) {
    return none([{ message: `${recipeFileName} is a link to ${real}, outside the model folder; Layer Lens does not read it. Replace the link with the file itself.`, path: [], severity: 'error' }], true);
  }
  const st = await fs.promises.stat(real);
  if (!st.isFile()) return none([{ message: `${recipeFileName} is not a regular file; remove it or replace it with the recipe.`, path: [], severity: 'error' }], true);
  if (st.size > maxRecipeBytes) {
    return none(
      [{ message: `${recipeFileName} is ${st.size} bytes, more than a recipe needs (limit ${maxRecipeBytes}); Layer Lens uses the default recipe. Is it the right file?`, problem: `${recipeFileName} is ${st.size} bytes, more than a recipe needs (limit ${maxRecipeBytes}); is it the right file?`, path: [], severity: 'error' }],
      true,
    );
  }
  // As io/safeRead.ts reads: the size stat gave, with a time limit (a recipe on a hung network drive).
  const text = Buffer.from(await readRegularFile(real, { shown: file, maxBytes: maxRecipeBytes })).toString('utf8');
  return { file, exists: true, ...parseRecipe(text, { modelName: path.basename(modelJsonPath), ...context }) };
}

// ---------------------------------------------------------------------------
// Writing a recipe.

function deepEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * The object to write: every key of the previous file kept in its order with
 * its exact value where the recipe did not change it (an unknown key, a typo,
 * even a refused value stays until the user fixes it: the diagnostics point
 * at it), changed values written, and settings never written before added
 * only when they differ from the default.
 */
function merge(prevRaw: unknown, prevParsed: unknown, next: unknown, def: unknown, schema: SchemaNode | undefined): unknown {
  if (!isRecord(next)) return deepEqual(prevParsed, next) && prevRaw !== undefined ? prevRaw : next;
  const raw = isRecord(prevRaw) ? prevRaw : {};
  const parsed = isRecord(prevParsed) ? prevParsed : {};
  const defaults = isRecord(def) ? def : {};
  const known = schema?.properties ?? {};
  const out: Record<string, unknown> = {};
  const put = (k: string, v: unknown) => Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  const order = [...Object.keys(raw), ...Object.keys(next).filter((k) => !(k in raw))];
  for (const k of order) {
    const inRaw = Object.prototype.hasOwnProperty.call(raw, k);
    if (!(k in known) && !(k in next)) {
      if (inRaw) put(k, raw[k]); // unknown to this version: not ours to delete
      continue;
    }
    const v = next[k as keyof typeof next];
    if (v === undefined) {
      // Refused on reading (so absent from the recipe, not removed by the caller): keep it for the user to fix.
      if (inRaw && parsed[k] === undefined) put(k, raw[k]);
      continue;
    }
    const sub = known[k];
    if (!inRaw && deepEqual(v, defaults[k] ?? sub?.default)) continue;
    const branch = sub?.oneOf?.find((b) => isRecord(v) && b.properties?.['kind']?.const === v['kind']) ?? sub;
    const merged = isRecord(v) ? merge(raw[k], parsed[k], v, defaults[k] ?? sub?.default, branch) : deepEqual(parsed[k], v) && inRaw ? raw[k] : v;
    if (!inRaw && isRecord(merged) && Object.keys(merged).length === 0) continue;
    put(k, merged);
  }
  return out;
}

/** JSON with 2-space indentation; lists of numbers on one line ("imageSize": [224, 224]). */
function stringify(v: unknown, indent = ''): string {
  const inner = indent + '  ';
  if (Array.isArray(v)) {
    if (v.length === 0) return '[]';
    if (v.every((x) => typeof x === 'number')) return `[${v.join(', ')}]`;
    return `[\n${v.map((x) => inner + stringify(x, inner)).join(',\n')}\n${indent}]`;
  }
  if (isRecord(v)) {
    const keys = Object.keys(v);
    if (keys.length === 0) return '{}';
    return `{\n${keys.map((k) => `${inner}${JSON.stringify(k)}: ${stringify(v[k], inner)}`).join(',\n')}\n${indent}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/**
 * The text of layerlens.json for a recipe: top-level keys in the order
 * $schema, freeze, finetune (then any unknown ones the file had), two-space
 * indentation, the previous file's line endings. With `previousText`, what
 * the user wrote is kept as far as the recipe did not change it (see merge).
 */
export function serializeRecipe(recipe: Recipe, previousText?: string): string {
  let prevRaw: unknown = {};
  let prevParsed: unknown = {};
  if (previousText !== undefined) {
    try {
      prevRaw = parseJsonWithSpans(previousText).value;
      prevParsed = parseRecipe(previousText).recipe;
    } catch {
      prevRaw = {};
    }
  }
  const merged = merge(isRecord(prevRaw) ? prevRaw : {}, prevParsed, recipe, defaultRecipe(), schemaRoot()) as Record<string, unknown>;
  // The freeze plan is what this file is for: always written, even when empty.
  const ordered: Record<string, unknown> = {};
  for (const k of ['$schema', 'freeze', 'finetune', ...Object.keys(merged)]) {
    if (k === 'freeze' && !(k in merged)) ordered[k] = recipe.freeze;
    else if (k in merged && !(k in ordered)) Object.defineProperty(ordered, k, { value: merged[k], enumerable: true, writable: true, configurable: true });
  }
  const eol = previousText?.includes('\r\n') ? '\r\n' : '\n';
  return (stringify(ordered) + '\n').replace(/\n/g, eol);
}

/**
 * Writes the recipe next to the model, atomically (a crash leaves the old
 * file or the new one). Refuses to overwrite a file that is not valid JSON:
 * the user is probably in the middle of editing it. Returns false when the
 * file already said exactly this (nothing written, so no watcher fires).
 */
export async function writeRecipe(modelJsonPath: string, recipe: Recipe): Promise<boolean> {
  const file = recipePathFor(modelJsonPath);
  let previous: string | undefined;
  try {
    // As io/safeRead.ts reads: a layerlens.json that is a FIFO or a device must not hang the save.
    previous = Buffer.from(await readRegularFile(file, { shown: file, maxBytes: maxRecipeBytes })).toString('utf8');
  } catch (e) {
    if (!(e instanceof UnreadableFile && e.kind === 'missing' && !(await fs.promises.lstat(file).then(() => true, () => false)))) {
      throw new EngineError('bad-recipe', `${file} cannot be read before saving (${e instanceof UnreadableFile ? e.detail : (e as Error).message}); check it, or remove it and Layer Lens will save the freeze plan there.`);
    }
  }
  if (previous !== undefined) {
    try {
      parseJsonWithSpans(previous);
    } catch (e) {
      if (!(e instanceof JsonSyntaxError)) throw e;
      const at = lineColumn(previous, e.offset);
      throw new EngineError(
        'bad-recipe',
        `${file} has a JSON error at line ${at.line}, column ${at.column} (${e.message}); fix it, or delete the file, and Layer Lens will save the freeze plan there.`,
      );
    }
  }
  const checked = recipeSchema.safeParse(recipe);
  if (!checked.success) {
    throw new EngineError('bad-recipe', `refusing to write ${file}: the recipe is invalid (${checked.error.issues.map((i) => `${pathText(i.path as JsonPath)}: ${i.message}`).join('; ')}).`);
  }
  const text = serializeRecipe(checked.data, previous);
  if (text === previous) return false;
  await cleanStaleTemps(file);
  await writeFileAtomic(file, text);
  return true;
}
