/**
 * Which layer of model B corresponds to which layer of model A. A fine-tuned
 * child keeps its parent's layer paths for everything it did not replace, so
 * layers match by path first; a layer whose path changed (a backbone wrapped
 * differently) matches by its name when that name is unique on both sides.
 * Either way the two layers must be of the same class and have the same
 * output shape. What matches nothing (a replaced head, a new pooling layer)
 * is listed with the reason, never an error.
 */
import type { UnmatchedLayer } from '../../protocol/compare';
import { formatShape, type LayerRow } from '../../protocol/model';

export interface LayerPair {
  a: LayerRow;
  b: LayerRow;
  by: 'path' | 'name';
}

export interface LayerMatching {
  /** In A's order. */
  pairs: LayerPair[];
  onlyA: UnmatchedLayer[];
  onlyB: UnmatchedLayer[];
}

const shapeKey = (r: LayerRow) => JSON.stringify(r.outputShape);

/** Why `a` and `b` cannot be compared, or undefined when they can. */
function mismatch(a: LayerRow, b: LayerRow): string | undefined {
  if (a.className !== b.className) return `a ${a.className} in A, a ${b.className} in B`;
  if (shapeKey(a) !== shapeKey(b)) return `output shape ${formatShape(a.outputShape)} in A, ${formatShape(b.outputShape)} in B`;
  return undefined;
}

function counts(rows: readonly LayerRow[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const r of rows) m.set(r.name, (m.get(r.name) ?? 0) + 1);
  return m;
}

export function matchLayers(rowsA: readonly LayerRow[], rowsB: readonly LayerRow[]): LayerMatching {
  const byPathB = new Map(rowsB.map((r) => [r.path, r]));
  const pairOfA = new Map<string, LayerPair>();
  const usedB = new Set<string>();
  /** Reasons for rows that had a counterpart that did not fit. */
  const whyA = new Map<string, string>();
  const whyB = new Map<string, string>();

  for (const a of rowsA) {
    const b = byPathB.get(a.path);
    if (!b) continue;
    const why = mismatch(a, b);
    if (why) {
      whyA.set(a.path, `${a.path}: ${why}`);
      whyB.set(b.path, `${b.path}: ${why}`);
      usedB.add(b.path);
      continue;
    }
    pairOfA.set(a.path, { a, b, by: 'path' });
    usedB.add(b.path);
  }

  // By unique name, among the rows left on both sides.
  const leftA = rowsA.filter((r) => !pairOfA.has(r.path) && !whyA.has(r.path));
  const leftB = rowsB.filter((r) => !usedB.has(r.path));
  const nA = counts(rowsA);
  const nB = counts(rowsB);
  const leftByNameB = new Map(leftB.map((r) => [r.name, r]));
  for (const a of leftA) {
    const b = leftByNameB.get(a.name);
    if (!b || nA.get(a.name) !== 1 || nB.get(b.name) !== 1) continue;
    const why = mismatch(a, b);
    if (why) {
      whyA.set(a.path, `${b.path} in B has the same name, but ${why}`);
      whyB.set(b.path, `${a.path} in A has the same name, but ${why}`);
      usedB.add(b.path);
      continue;
    }
    pairOfA.set(a.path, { a, b, by: 'name' });
    usedB.add(b.path);
  }

  const pairs: LayerPair[] = [];
  const onlyA: UnmatchedLayer[] = [];
  for (const a of rowsA) {
    const p = pairOfA.get(a.path);
    if (p) pairs.push(p);
    else onlyA.push({ path: a.path, className: a.className, shape: a.outputShape, reason: whyA.get(a.path) ?? `B has no layer ${a.path} (nor another layer named ${a.name})` });
  }
  const matchedB = new Set(pairs.map((p) => p.b.path));
  const onlyB: UnmatchedLayer[] = rowsB
    .filter((b) => !matchedB.has(b.path))
    .map((b) => ({ path: b.path, className: b.className, shape: b.outputShape, reason: whyB.get(b.path) ?? `A has no layer ${b.path} (nor another layer named ${b.name})` }));
  return { pairs, onlyA, onlyB };
}
