/**
 * Freeze plans as plain data: which layers training must hold fixed, and what
 * the tree's checkboxes and the "N of M parameters trainable" line show. No
 * tfjs here: the host and the webview compute all of it from the layer table
 * (LayerRow[]) while the worker applies the plan to the real model
 * (src/engine/train/freeze.ts).
 *
 * A plan is a list of layer paths as in LayerRow.path ("outer/inner/layer").
 * Semantics, as in Keras where setting `trainable = False` on a model freezes
 * every layer inside it: a layer is frozen when its own path or the path of
 * any enclosing nested model is listed. A nested model is shown frozen when it
 * is listed or when all of its layers are frozen, partial when only some are.
 * Ancestors are followed through LayerRow.parent, never by splitting paths on
 * "/", because tfjs allows "/" inside a layer's own name.
 */
import type { LayerRow } from './model';

export type FreezeState = 'frozen' | 'partial' | 'trainable';

interface RowIndex {
  byPath: Map<string, LayerRow>;
  /** Direct children of each nested model, in table order. */
  children: Map<string, LayerRow[]>;
}

const indexCache = new WeakMap<readonly LayerRow[], RowIndex>();

function indexOf(rows: readonly LayerRow[]): RowIndex {
  let ix = indexCache.get(rows);
  if (ix) return ix;
  ix = { byPath: new Map(), children: new Map() };
  for (const r of rows) {
    ix.byPath.set(r.path, r);
    if (r.parent !== undefined) {
      const list = ix.children.get(r.parent) ?? [];
      list.push(r);
      ix.children.set(r.parent, list);
    }
  }
  indexCache.set(rows, ix);
  return ix;
}

/**
 * Input layers of a nested functional model carry no weights and cannot be
 * trained; they do not decide whether their model looks frozen.
 */
function counts(row: LayerRow): boolean {
  return row.className !== 'InputLayer';
}

/** Paths of the plan that name no layer of this model (kept out of everything else). */
export function unknownPaths(rows: readonly LayerRow[], plan: readonly string[]): string[] {
  const { byPath } = indexOf(rows);
  return [...new Set(plan.filter((p) => !byPath.has(p)))];
}

/**
 * Every layer that training holds fixed under the plan: the listed ones and
 * everything inside a listed nested model. Parents precede their layers in
 * table order, so one pass suffices.
 */
export function frozenPaths(rows: readonly LayerRow[], plan: readonly string[]): Set<string> {
  const listed = new Set(plan);
  const out = new Set<string>();
  for (const r of rows) {
    if (listed.has(r.path) || (r.parent !== undefined && out.has(r.parent))) out.add(r.path);
  }
  return out;
}

/** Whether training holds this layer fixed (its path or an enclosing model's path is in the plan). */
export function isFrozen(rows: readonly LayerRow[], plan: readonly string[], path: string): boolean {
  return frozenPaths(rows, plan).has(path);
}

function stateIn(ix: RowIndex, frozen: ReadonlySet<string>, path: string, memo: Map<string, FreezeState>): FreezeState {
  const known = memo.get(path);
  if (known) return known;
  let state: FreezeState;
  if (frozen.has(path)) state = 'frozen';
  else {
    const kids = (ix.children.get(path) ?? []).filter(counts);
    if (kids.length === 0) state = 'trainable';
    else {
      const states = kids.map((k) => stateIn(ix, frozen, k.path, memo));
      state = states.every((s) => s === 'frozen') ? 'frozen' : states.every((s) => s === 'trainable') ? 'trainable' : 'partial';
    }
  }
  memo.set(path, state);
  return state;
}

/**
 * What a layer's checkbox shows: 'frozen' (checked), 'trainable' (unchecked),
 * or, for a nested model with some frozen layers inside, 'partial'. Works for
 * plain layers too (never 'partial'). An unknown path is 'trainable'.
 */
export function containerState(rows: readonly LayerRow[], frozen: readonly string[], path: string): FreezeState {
  return stateIn(indexOf(rows), frozenPaths(rows, frozen), path, new Map());
}

/** The state of every row at once (for drawing a whole tree or table). */
export function freezeStates(rows: readonly LayerRow[], frozen: readonly string[]): Map<string, FreezeState> {
  const ix = indexOf(rows);
  const fz = frozenPaths(rows, frozen);
  const memo = new Map<string, FreezeState>();
  for (const r of rows) stateIn(ix, fz, r.path, memo);
  return memo;
}

/**
 * The shortest plan with the same effect, in table order: unknown paths and
 * duplicates dropped, layers inside a listed model dropped, and a nested model
 * whose layers are all frozen listed instead of its layers. This is the form
 * written to layerlens.json.
 */
export function normalizePlan(rows: readonly LayerRow[], plan: readonly string[]): string[] {
  const states = freezeStates(rows, plan);
  const out: string[] = [];
  const covered = new Set<string>();
  for (const r of rows) {
    const underCovered = r.parent !== undefined && covered.has(r.parent);
    if (underCovered || states.get(r.path) === 'frozen') {
      if (!underCovered) out.push(r.path);
      covered.add(r.path);
    }
  }
  return out;
}

function descendants(ix: RowIndex, path: string, out: string[] = []): string[] {
  for (const k of ix.children.get(path) ?? []) {
    out.push(k.path);
    descendants(ix, k.path, out);
  }
  return out;
}

/**
 * Sets one layer frozen or trainable and returns the new (normalized) plan.
 * Freezing a nested model freezes everything inside it. Unfreezing a layer
 * inside a frozen model unfreezes that model (it can no longer be wholly
 * frozen) but keeps its other layers frozen. Unknown paths in the plan are
 * kept, so that a recipe naming a layer of another model version survives
 * the edit; an unknown `path` changes nothing.
 */
export function setFrozen(plan: readonly string[], path: string, frozen: boolean, rows: readonly LayerRow[]): string[] {
  const ix = indexOf(rows);
  const unknown = unknownPaths(rows, plan);
  if (!ix.byPath.has(path)) return [...plan];
  const states = freezeStates(rows, plan);
  const set = new Set([...states].filter(([, s]) => s === 'frozen').map(([p]) => p));
  if (frozen) set.add(path);
  else {
    set.delete(path);
    for (const d of descendants(ix, path)) set.delete(d);
    for (let p = ix.byPath.get(path)?.parent; p !== undefined; p = ix.byPath.get(p)?.parent) set.delete(p);
  }
  return [...normalizePlan(rows, [...set]), ...unknown];
}

/**
 * A checkbox click: a frozen layer becomes trainable; a trainable layer, or a
 * partly frozen nested model, becomes frozen (with everything inside it).
 */
export function toggle(plan: readonly string[], path: string, rows: readonly LayerRow[]): string[] {
  return setFrozen(plan, path, containerState(rows, plan, path) !== 'frozen', rows);
}

/**
 * "Freeze up to layer": that layer and every layer before it in table order,
 * as `for layer in model.layers[:k]: layer.trainable = False` does in Keras.
 * For a layer inside nested models that means the layers before it inside
 * each enclosing model plus all earlier top-level layers; the enclosing models
 * themselves are not frozen whole, since that would freeze the layers after
 * it too. Replaces the plan. Throws a RangeError for an unknown path.
 */
export function freezeUpTo(rows: readonly LayerRow[], path: string): string[] {
  const ix = indexOf(rows);
  const target = ix.byPath.get(path);
  if (!target) throw new RangeError(`"${path}" is not a layer of this model; pick one from the layer table.`);
  const enclosing = new Set<string>();
  for (let p = target.parent; p !== undefined; p = ix.byPath.get(p)?.parent) enclosing.add(p);
  const plan: string[] = [];
  for (const r of rows) {
    if (!enclosing.has(r.path)) plan.push(r.path);
    if (r.path === path) break;
  }
  return normalizePlan(rows, plan);
}

export function isBatchNorm(row: LayerRow): boolean {
  return row.className === 'BatchNormalization';
}

/**
 * "Freeze All BatchNorm Layers": the plan with every BatchNormalization layer
 * (nested ones included) added. Fine-tuning on a small dataset should not
 * re-estimate their statistics from a few batches.
 */
export function freezeAllBatchNorm(rows: readonly LayerRow[], plan: readonly string[] = []): string[] {
  const unknown = unknownPaths(rows, plan);
  return [...normalizePlan(rows, [...plan, ...rows.filter(isBatchNorm).map((r) => r.path)]), ...unknown];
}

/**
 * Params a layer's training would update when it is not frozen. Rows from
 * layerRows() carry it as freezableParams; older rows fall back to
 * trainableParams, which is right while the layer is still trainable.
 */
function freezable(row: LayerRow): number {
  return row.freezableParams ?? row.trainableParams;
}

/**
 * "N of M parameters trainable" under a plan, without tfjs: M counts every
 * weight (BatchNormalization's moving statistics included, as Keras's summary
 * does), N the weights that training under the plan updates. Equals what the
 * engine's applyFreezePlan reports for the real model.
 */
export function trainableCounts(rows: readonly LayerRow[], frozen: readonly string[]): { trainable: number; total: number } {
  const fz = frozenPaths(rows, frozen);
  let total = 0;
  let trainable = 0;
  for (const r of rows) {
    if (r.depth === 0) total += r.params;
    if (!r.isContainer && !fz.has(r.path)) trainable += freezable(r);
  }
  return { trainable, total };
}

/**
 * Whether training can change `path`'s output: some layer with weights at or
 * before it (in the layer table's order) is not frozen. A frozen prefix's
 * maps stay as they were, so live maps of it show nothing happening.
 */
export function outputCanChange(rows: readonly LayerRow[], frozen: readonly string[], path: string): boolean {
  const off = frozenPaths(rows, frozen);
  for (const r of rows) {
    if (!r.isContainer && r.params > 0 && !off.has(r.path)) return true;
    if (r.path === path) return false;
  }
  return false;
}

/** The first layer with spatial maps that training can change (live maps' default), if any. */
export function firstChangingMapLayer(rows: readonly LayerRow[], frozen: readonly string[]): string | undefined {
  const off = frozenPaths(rows, frozen);
  let training = false;
  for (const r of rows) {
    if (!r.isContainer && r.params > 0 && !off.has(r.path)) training = true;
    if (training && !r.isContainer && r.outputShape.length === 4) return r.path;
  }
  return undefined;
}

/**
 * Params of one row that training updates under the plan: none when it is
 * frozen, its own trainable weights otherwise; for a nested model, those of
 * the layers inside it that the plan leaves trainable. What a tooltip says
 * next to "N params", so it never contradicts the row's freeze state.
 */
export function trainableUnder(rows: readonly LayerRow[], plan: readonly string[], path: string): number {
  const ix = indexOf(rows);
  const row = ix.byPath.get(path);
  if (!row) return 0;
  const fz = frozenPaths(rows, plan);
  if (!row.isContainer) return fz.has(path) ? 0 : freezable(row);
  let n = 0;
  for (const p of descendants(ix, path)) {
    const r = ix.byPath.get(p);
    if (r && !r.isContainer && !fz.has(p)) n += freezable(r);
  }
  return n;
}
