/**
 * The recipe schema as messages use it: where a path leads in the schema,
 * its bounds, choices and known keys, and the words for each zod issue
 * ("did you mean …?"), plus the small tree edits that drop a bad value so
 * that its default takes its place.
 */
import { z } from 'zod';
import { defaultRecipe, recipeSchema } from '../protocol/recipe';
import type { JsonPath } from './recipeJson';

/** The schema as JSON Schema, for bounds, choices and known keys in messages (zod's issues carry only the violated bound). */
export type SchemaNode = {
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
export function schemaRoot(): SchemaNode {
  schemaJson ??= z.toJSONSchema(recipeSchema, { target: 'draft-7', io: 'input' }) as SchemaNode;
  return schemaJson;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function getAt(root: unknown, p: JsonPath): { found: boolean; value: unknown } {
  let v = root;
  for (const seg of p) {
    if (typeof seg === 'number' ? Array.isArray(v) && seg < v.length : isRecord(v) && Object.prototype.hasOwnProperty.call(v, seg)) {
      v = (v as Record<string | number, unknown>)[seg];
    } else return { found: false, value: undefined };
  }
  return { found: true, value: v };
}

/** The sub-schema for a path; for a union, the branch whose `kind` matches the value. */
export function schemaAt(p: JsonPath, value: unknown): SchemaNode | undefined {
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
export function pathText(p: JsonPath): string {
  let out = '';
  for (const seg of p) out += typeof seg === 'number' ? `[${seg}]` : out ? `.${seg}` : seg;
  return out || 'the file';
}

export function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return 'a list';
  if (isRecord(v)) return 'an object';
  return String(v);
}

export function rangeText(s: SchemaNode | undefined): string | undefined {
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

export function expectedText(s: SchemaNode | undefined, zodExpected: string): string {
  if (s?.type === 'integer' || s?.type === 'number') return rangeText(s) ?? 'a number';
  if (s?.enum) return `one of ${s.enum.map((e) => JSON.stringify(e)).join(', ')}`;
  if (s?.type === 'boolean') return 'true or false';
  if (s?.type === 'string') return 'a text in double quotes';
  if (s?.type === 'array' && Array.isArray(s.items)) return `a list of ${s.items.length} numbers`;
  if (s?.type === 'array') return 'a list';
  if (s?.type === 'object' || s?.oneOf) return 'an object { … }';
  return zodExpected === 'int' ? 'a whole number' : `a ${zodExpected}`;
}

export function editDistance(a: string, b: string): number {
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
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
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

export type Issue = z.core.$ZodIssue;

/** A message that says what is wrong, what was found and what is allowed. */
export function issueMessage(issue: Issue, value: unknown): string {
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
export function fallbackText(dropped: JsonPath): string {
  const def = getAt(defaultRecipe(), dropped);
  if (dropped.length === 0) return 'Using the default recipe until it is fixed.';
  if (typeof dropped[dropped.length - 1] === 'number') return 'This entry is ignored.';
  if (def.found && !isRecord(def.value)) return `Using the default (${JSON.stringify(def.value)}) until it is fixed.`;
  if (def.found) return `Using the defaults for ${pathText(dropped)} until it is fixed.`;
  return `${pathText(dropped)} is ignored until it is fixed.`;
}

export function deleteAt(root: unknown, p: JsonPath): void {
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
export function dropTarget(root: unknown, p: JsonPath): JsonPath {
  let t = [...p];
  while (t.length > 0 && !getAt(root, t).found) t = t.slice(0, -1);
  const numAt = t.findIndex((seg) => typeof seg === 'number');
  if (numAt >= 0 && !(numAt === 1 && t[0] === 'freeze')) t = t.slice(0, numAt);
  return t;
}

export function comparePathsDesc(a: JsonPath, b: JsonPath): number {
  for (let k = 0; k < Math.min(a.length, b.length); k++) {
    if (a[k] === b[k]) continue;
    if (typeof a[k] === 'number' && typeof b[k] === 'number') return (b[k] as number) - (a[k] as number);
    return String(b[k]).localeCompare(String(a[k]));
  }
  return b.length - a.length;
}
