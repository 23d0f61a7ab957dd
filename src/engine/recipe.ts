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
 * where a syntax error is, so a small strict JSON parser here records both.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { EngineError } from './errors';
import { cleanStaleTemps, writeFileAtomic } from './io/atomic';
import { defaultRecipe, recipeFileName, recipeSchema, type Recipe } from '../protocol/recipe';
import type { LayerRow } from '../protocol/model';

export type JsonPath = (string | number)[];
export type RecipeSeverity = 'error' | 'warning' | 'info';

export interface RecipeDiagnostic {
  message: string;
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

/** The model a recipe file belongs to: model.json for layerlens.json, else the Keras file named by its stem. */
export function modelPathsForRecipe(recipePath: string): string[] {
  const dir = path.dirname(recipePath);
  const base = path.basename(recipePath);
  if (base === recipeFileName) return [path.join(dir, 'model.json')];
  const stem = base.slice(0, -(recipeFileName.length + 1));
  return [path.join(dir, `${stem}.h5`), path.join(dir, `${stem}.keras`), path.join(dir, `${stem}.hdf5`)];
}

/** "layerlens.json:3:14: error: …", as compilers print them (for the CLI and the log). */
export function formatDiagnostic(file: string, d: RecipeDiagnostic): string {
  const at = d.line !== undefined ? `:${d.line}:${d.column ?? 1}` : '';
  return `${file}${at}: ${d.severity}: ${d.message}`;
}

// ---------------------------------------------------------------------------
// A strict JSON parser (RFC 8259) that records where every value is.

interface Span {
  start: number;
  end: number;
  /** The property name's span, for values inside objects. */
  keyStart?: number;
  keyEnd?: number;
}

interface ParsedJson {
  value: unknown;
  spans: Map<string, Span>;
  /** Keys that appear twice in one object (the last one wins, as in JSON.parse). */
  duplicates: JsonPath[];
}

class JsonSyntaxError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
  }
}

const spanKey = (p: JsonPath): string => JSON.stringify(p);
const maxDepth = 64;

function describeChar(c: string | undefined): string {
  if (c === undefined) return 'end of the file'; // "unexpected end of the file", not "unexpected the end…"
  if (c === '\n' || c === '\r') return 'a line break';
  return `'${c}'`;
}

export function parseJsonWithSpans(text: string): ParsedJson {
  const spans = new Map<string, Span>();
  const duplicates: JsonPath[] = [];
  let i = 0;

  const ws = () => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  };
  const fail = (expected: string): never => {
    const c = text[i];
    if (c === '/') throw new JsonSyntaxError('comments are not allowed in JSON; remove them', i);
    if (c === "'") throw new JsonSyntaxError('strings must be in double quotes (") in JSON', i);
    throw new JsonSyntaxError(`unexpected ${describeChar(c)}; expected ${expected}`, i);
  };

  const str = (): string => {
    const start = i;
    i++; // opening quote
    let out = '';
    for (;;) {
      const c = text[i];
      if (c === undefined) throw new JsonSyntaxError('a string is not closed: add the missing "', start);
      if (c === '"') {
        i++;
        return out;
      }
      if (c < ' ') throw new JsonSyntaxError('a line break or control character inside a string must be escaped (\\n, \\t)', i);
      if (c === '\\') {
        const e = text[i + 1];
        const simple: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
        if (e !== undefined && e in simple) {
          out += simple[e];
          i += 2;
        } else if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) {
          out += String.fromCharCode(parseInt(text.slice(i + 2, i + 6), 16));
          i += 6;
        } else throw new JsonSyntaxError(`invalid escape \\${e ?? ''} in a string`, i);
      } else {
        out += c;
        i++;
      }
    }
  };

  const value = (p: JsonPath, depth: number, key?: { start: number; end: number }): unknown => {
    if (depth > maxDepth) throw new JsonSyntaxError(`nested deeper than ${maxDepth} levels`, i);
    ws();
    const start = i;
    const c = text[i];
    let v: unknown;
    if (c === '{') {
      i++;
      const obj: Record<string, unknown> = {};
      ws();
      if (text[i] === '}') i++;
      else {
        for (;;) {
          ws();
          if (text[i] !== '"') {
            if (text[i] === '}') throw new JsonSyntaxError("a trailing comma before '}' is not allowed in JSON; remove it", i);
            if (/[A-Za-z_$]/.test(text[i] ?? '')) throw new JsonSyntaxError('property names must be in double quotes in JSON', i);
            fail('a property name in double quotes');
          }
          const ks = i;
          const k = str();
          const ke = i;
          ws();
          if (text[i] !== ':') fail(`':' after "${k}"`);
          i++;
          const child = [...p, k];
          if (Object.prototype.hasOwnProperty.call(obj, k)) duplicates.push(child);
          // defineProperty, not assignment: a key "__proto__" must stay a plain key.
          Object.defineProperty(obj, k, { value: value(child, depth + 1, { start: ks, end: ke }), enumerable: true, writable: true, configurable: true });
          ws();
          if (text[i] === ',') {
            i++;
            continue;
          }
          if (text[i] === '}') {
            i++;
            break;
          }
          fail("',' or '}'");
        }
      }
      v = obj;
    } else if (c === '[') {
      i++;
      const arr: unknown[] = [];
      ws();
      if (text[i] === ']') i++;
      else {
        for (;;) {
          ws();
          if (text[i] === ']') throw new JsonSyntaxError("a trailing comma before ']' is not allowed in JSON; remove it", i);
          arr.push(value([...p, arr.length], depth + 1));
          ws();
          if (text[i] === ',') {
            i++;
            continue;
          }
          if (text[i] === ']') {
            i++;
            break;
          }
          fail("',' or ']'");
        }
      }
      v = arr;
    } else if (c === '"') {
      v = str();
    } else {
      const m = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/.exec(text.slice(i, i + 400));
      const word = /^(true|false|null)\b/.exec(text.slice(i, i + 6));
      if (m && m[0].length > 0) {
        v = Number(m[0]);
        i += m[0].length;
      } else if (word) {
        v = word[1] === 'true' ? true : word[1] === 'false' ? false : null;
        i += word[1].length;
      } else fail('a value (an object, array, string, number, true, false or null)');
    }
    spans.set(spanKey(p), { start, end: i, ...(key ? { keyStart: key.start, keyEnd: key.end } : {}) });
    return v;
  };

  if (text.charCodeAt(0) === 0xfeff) i = 1; // a BOM, as some editors write
  ws();
  if (i >= text.length) throw new JsonSyntaxError('the file is empty; write {} for the defaults, or delete it', 0);
  const root = value([], 0);
  ws();
  if (i < text.length) throw new JsonSyntaxError(`unexpected ${describeChar(text[i])} after the end of the JSON value`, i);
  return { value: root, spans, duplicates };
}

/** 1-based line and column of a UTF-16 offset. */
function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let k = 0; k < offset && k < text.length; k++) {
    if (text[k] === '\n') {
      line++;
      lineStart = k + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

// ---------------------------------------------------------------------------
// Reading a recipe.

/** The schema as JSON Schema, for bounds, choices and known keys in messages (zod's issues carry only the violated bound). */
type SchemaNode = {
  type?: string;
  default?: unknown;
  properties?: Record<string, SchemaNode>;
  items?: SchemaNode | SchemaNode[];
  oneOf?: SchemaNode[];
  anyOf?: SchemaNode[];
  enum?: unknown[];
  const?: unknown;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  minLength?: number;
  minItems?: number;
  maxItems?: number;
};
let schemaJson: SchemaNode | undefined;
function schemaRoot(): SchemaNode {
  schemaJson ??= z.toJSONSchema(recipeSchema, { target: 'draft-7', io: 'input' }) as SchemaNode;
  return schemaJson;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function getAt(root: unknown, p: JsonPath): { found: boolean; value: unknown } {
  let v = root;
  for (const seg of p) {
    if (typeof seg === 'number' ? Array.isArray(v) && seg < v.length : isRecord(v) && Object.prototype.hasOwnProperty.call(v, seg)) {
      v = (v as Record<string | number, unknown>)[seg];
    } else return { found: false, value: undefined };
  }
  return { found: true, value: v };
}

/** The sub-schema for a path; for a union, the branch whose `kind` matches the value. */
function schemaAt(p: JsonPath, value: unknown): SchemaNode | undefined {
  let s: SchemaNode | undefined = schemaRoot();
  for (let k = 0; k <= p.length && s; k++) {
    const branches: SchemaNode[] | undefined = s.oneOf ?? s.anyOf;
    if (branches) {
      const here = getAt(value, p.slice(0, k)).value;
      const kind = isRecord(here) ? here['kind'] : undefined;
      s = branches.find((b) => b.properties?.['kind']?.const === kind) ?? (k === p.length ? s : branches[0]);
    }
    if (k === p.length || !s) break;
    const seg = p[k];
    if (typeof seg === 'number') s = Array.isArray(s.items) ? s.items[seg] : s.items;
    else s = s.properties?.[seg];
  }
  return s;
}

/** "finetune.imageSize[0]" */
function pathText(p: JsonPath): string {
  let out = '';
  for (const seg of p) out += typeof seg === 'number' ? `[${seg}]` : out ? `.${seg}` : seg;
  return out || 'the file';
}

function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return 'a list';
  if (isRecord(v)) return 'an object';
  return String(v);
}

function rangeText(s: SchemaNode | undefined): string | undefined {
  if (!s) return undefined;
  const whole = s.type === 'integer' ? 'a whole number' : 'a number';
  const lo = s.exclusiveMinimum !== undefined ? `greater than ${s.exclusiveMinimum}` : s.minimum !== undefined ? `${s.minimum}` : undefined;
  const hi = s.maximum;
  if (s.exclusiveMinimum !== undefined) return `${whole} ${lo}${hi !== undefined ? ` and at most ${hi}` : ''}`;
  if (lo !== undefined && hi !== undefined) return `${whole} from ${lo} to ${hi}`;
  if (lo !== undefined) return `${whole} of at least ${lo}`;
  if (hi !== undefined) return `${whole} of at most ${hi}`;
  return whole;
}

function expectedText(s: SchemaNode | undefined, zodExpected: string): string {
  if (s?.type === 'integer' || s?.type === 'number') return rangeText(s) ?? 'a number';
  if (s?.enum) return `one of ${s.enum.map((e) => JSON.stringify(e)).join(', ')}`;
  if (s?.type === 'boolean') return 'true or false';
  if (s?.type === 'string') return 'a text in double quotes';
  if (s?.type === 'array' && Array.isArray(s.items)) return `a list of ${s.items.length} numbers`;
  if (s?.type === 'array') return 'a list';
  if (s?.type === 'object' || s?.oneOf) return 'an object { … }';
  return zodExpected === 'int' ? 'a whole number' : `a ${zodExpected}`;
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, k) => k);
  for (let x = 1; x <= a.length; x++) {
    let prev = d[0];
    d[0] = x;
    for (let y = 1; y <= b.length; y++) {
      const keep = d[y];
      d[y] = Math.min(d[y] + 1, d[y - 1] + 1, prev + (a[x - 1] === b[y - 1] ? 0 : 1));
      prev = keep;
    }
  }
  return d[b.length];
}

/** The closest candidate, if close enough to be a likely typo ("learning_rate" → "learningRate"). */
function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  const squash = (s: string) => s.toLowerCase().replace(/[_\-\s]/g, '');
  const same = candidates.find((c) => squash(c) === squash(word));
  if (same) return same;
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const dist = editDistance(squash(word), squash(c));
    if (dist < bestD) {
      bestD = dist;
      best = c;
    }
  }
  return best !== undefined && bestD <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined;
}

type Issue = z.core.$ZodIssue;

/** A message that says what is wrong, what was found and what is allowed. */
function issueMessage(issue: Issue, value: unknown): string {
  const p = issue.path as JsonPath;
  const where = pathText(p);
  const found = getAt(value, p);
  const s = schemaAt(p, value);
  switch (issue.code) {
    case 'invalid_type':
      if (!found.found) return `${where} is missing; it must be ${expectedText(s, issue.expected)}`;
      return `${where} must be ${expectedText(s, issue.expected)}; found ${show(found.value)}`;
    case 'too_small':
    case 'too_big':
      if (issue.origin === 'string') return `${where} must not be empty`;
      if (issue.origin === 'array') {
        const n = Array.isArray(found.value) ? found.value.length : 0;
        return s?.minItems !== undefined && s.minItems === s.maxItems
          ? `${where} must have exactly ${s.minItems} items${p[p.length - 1] === 'imageSize' ? ' ([height, width])' : ''}; found ${n}`
          : `${where} has ${n} items, too ${issue.code === 'too_small' ? 'few' : 'many'}`;
      }
      return `${where} must be ${rangeText(s) ?? 'in range'}; found ${show(found.value)}`;
    case 'invalid_value': {
      const hint = typeof found.value === 'string' ? didYouMean(found.value, issue.values.map(String)) : undefined;
      return `${where} must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}; found ${show(found.value)}${hint ? ` (did you mean "${hint}"?)` : ''}`;
    }
    case 'invalid_union': {
      const options = (issue as { options?: unknown[] }).options;
      if (options) return `${where} must be one of ${options.map((o) => JSON.stringify(o)).join(', ')}; found ${show(found.value)}`;
      return `${where} matches none of the allowed forms`;
    }
    default:
      return `${where}: ${issue.message}`;
  }
}

/** What reading does instead of the refused value, said after the problem. */
function fallbackText(dropped: JsonPath): string {
  const def = getAt(defaultRecipe(), dropped);
  if (dropped.length === 0) return 'Using the default recipe until it is fixed.';
  if (typeof dropped[dropped.length - 1] === 'number') return 'This entry is ignored.';
  if (def.found && !isRecord(def.value)) return `Using the default (${JSON.stringify(def.value)}) until it is fixed.`;
  if (def.found) return `Using the defaults for ${pathText(dropped)} until it is fixed.`;
  return `${pathText(dropped)} is ignored until it is fixed.`;
}

function deleteAt(root: unknown, p: JsonPath): void {
  const parent = getAt(root, p.slice(0, -1)).value;
  const last = p[p.length - 1];
  if (Array.isArray(parent) && typeof last === 'number') parent.splice(last, 1);
  else if (isRecord(parent) && typeof last === 'string') delete parent[last];
}

/**
 * What to drop for an issue: the value itself when it is there (its default
 * then applies), else the nearest enclosing value that is (a missing required
 * field makes its object invalid). Only `freeze` loses single entries; any
 * other list (imageSize) goes whole, since half a tuple is no better.
 */
function dropTarget(root: unknown, p: JsonPath): JsonPath {
  let t = [...p];
  while (t.length > 0 && !getAt(root, t).found) t = t.slice(0, -1);
  const numAt = t.findIndex((seg) => typeof seg === 'number');
  if (numAt >= 0 && !(numAt === 1 && t[0] === 'freeze')) t = t.slice(0, numAt);
  return t;
}

function comparePathsDesc(a: JsonPath, b: JsonPath): number {
  for (let k = 0; k < Math.min(a.length, b.length); k++) {
    if (a[k] === b[k]) continue;
    if (typeof a[k] === 'number' && typeof b[k] === 'number') return (b[k] as number) - (a[k] as number);
    return String(b[k]).localeCompare(String(a[k]));
  }
  return b.length - a.length;
}

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
  const report = (severity: RecipeSeverity, p: JsonPath, message: string, onKey = false) =>
    diagnostics.push({ message, path: p, ...place(p, onKey), severity });

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
            report(
              'error',
              [...p, key],
              `unknown setting "${key}" ${inside}${hint ? `; did you mean "${hint}"?` : `; known settings: ${known.join(', ')}.`} It is ignored.`,
              true,
            );
          }
          drops.push([...p, key]);
        }
        continue;
      }
      const target = dropTarget(work, p);
      if (round === 0) report('error', p, `${issueMessage({ ...issue, path: p } as Issue, work)}. ${fallbackText(target)}`);
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
    report('error', [], `${recipeFileName} could not be repaired; Layer Lens uses the default recipe until it is fixed.`);
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
    return none([{ message: `${recipeFileName} is ${st.size} bytes, more than a recipe needs (limit ${maxRecipeBytes}); Layer Lens uses the default recipe. Is it the right file?`, path: [], severity: 'error' }], true);
  }
  const text = await fs.promises.readFile(real, 'utf8');
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
    previous = await fs.promises.readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new EngineError('bad-recipe', `${file} cannot be read before saving (${(e as Error).message}); check its permissions.`);
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
