/**
 * The layer list: one row per layer (nested models indented), a freeze
 * checkbox, class, output shape, params, and a thin bar with the layer's mean
 * activation for the current image. Only the visible rows exist in the DOM
 * (row elements are recycled), so models with hundreds of layers scroll
 * smoothly. Names that do not fit lose their middle, not their end, so that
 * "block_1_depthwise" and "block_1_depthwise_BN" stay apart; the full path is
 * on hover.
 *
 * Keyboard (the ARIA listbox pattern): the list is one tab stop; Up/Down,
 * PageUp/PageDown, Home/End move the selection, Space toggles the selected
 * layer's freeze, Enter asks the visible tab to act on it. The checkboxes are
 * for the mouse and never take the focus; each option's accessible name
 * carries the layer's name and its freeze state.
 */
import type { LayerInfo } from '../src/protocol/inspect';
import { freezeStates, type FreezeState } from '../src/protocol/freezePlan';
import { formatShape, middleEllipsis, type LayerRow } from '../src/protocol/model';
import { h, fmt } from './dom';
import { checkbox } from './components/toolkit';

const rowHeight = 26;
const indent = 14;

export interface LayerListCallbacks {
  onSelect(path: string): void;
  onToggleFreeze(paths: string[], frozen: boolean): void;
  /** Enter on the selected layer: the visible tab decides what that means. */
  onActivate(path: string): void;
}

function stateWord(state: FreezeState, canFreeze: boolean): string {
  if (!canFreeze) return 'no weights to freeze';
  return state === 'frozen' ? 'frozen' : state === 'partial' ? 'partly frozen' : 'trainable';
}

export class LayerList {
  readonly element: HTMLElement;
  private readonly viewport: HTMLElement;
  private readonly spacer: HTMLElement;
  private rows: LayerRow[] = [];
  private index = new Map<string, number>();
  private visible: LayerRow[] = [];
  private plan: string[] = [];
  private states = new Map<string, FreezeState>();
  private infos = new Map<string, LayerInfo>();
  private maxMean = 1;
  private filter = '';
  private selected: string | undefined;
  private readonly pool: HTMLElement[] = [];
  private editable = true;
  /** Width of the name column in px (0 until a row has been laid out), and the font to measure names in. */
  private nameWidth = 0;
  private font = '';
  private measurer: CanvasRenderingContext2D | null = null;

  constructor(private readonly callbacks: LayerListCallbacks) {
    this.spacer = h('div', { class: 'layer-spacer' });
    this.viewport = h('div', { class: 'layer-viewport', tabindex: 0, role: 'listbox', 'aria-label': 'Layers' }, this.spacer);
    this.element = this.viewport;
    this.viewport.addEventListener('scroll', () => this.render());
    this.viewport.addEventListener('keydown', (e) => this.onKey(e));
    this.viewport.addEventListener('focus', () => {
      // Tabbing in with nothing selected selects the first layer, so the arrows have somewhere to start.
      if (!this.selected && this.visible[0]) this.choose(this.visible[0].path);
    });
    new ResizeObserver(() => this.render()).observe(this.viewport);
  }

  setRows(rows: LayerRow[], editable: boolean): void {
    this.rows = rows;
    this.index = new Map(rows.map((r, i) => [r.path, i]));
    this.editable = editable;
    this.states = freezeStates(rows, this.plan);
    this.applyFilter();
  }

  /** The freeze plan (layer paths; a listed nested model freezes all inside). */
  setFrozen(plan: readonly string[]): void {
    this.plan = [...plan];
    this.states = freezeStates(this.rows, this.plan);
    this.render();
  }

  setInfos(infos: LayerInfo[]): void {
    this.infos = new Map(infos.map((i) => [i.path, i]));
    this.maxMean = Math.max(1e-9, ...infos.map((i) => Math.abs(i.mean)));
    this.render();
  }

  setFilter(text: string): void {
    this.filter = text.trim().toLowerCase();
    this.applyFilter();
  }

  select(path: string | undefined, scroll = true): void {
    this.selected = path;
    if (path && scroll) {
      const i = this.visible.findIndex((r) => r.path === path);
      if (i >= 0) {
        const top = i * rowHeight;
        if (top < this.viewport.scrollTop) this.viewport.scrollTop = top;
        else if (top + rowHeight > this.viewport.scrollTop + this.viewport.clientHeight) this.viewport.scrollTop = top + rowHeight - this.viewport.clientHeight;
      }
    }
    this.render();
  }

  focus(): void {
    this.viewport.focus();
  }

  stateOf(row: LayerRow): FreezeState {
    return this.states.get(row.path) ?? 'trainable';
  }

  private canFreeze(row: LayerRow): boolean {
    return this.editable && (row.params > 0 || row.isContainer);
  }

  private applyFilter(): void {
    const f = this.filter;
    this.visible = f ? this.rows.filter((r) => r.name.toLowerCase().includes(f) || r.className.toLowerCase().includes(f) || r.path.toLowerCase().includes(f)) : this.rows;
    this.spacer.style.height = `${this.visible.length * rowHeight}px`;
    this.render();
  }

  private choose(path: string): void {
    this.select(path);
    this.callbacks.onSelect(path);
  }

  private onKey(e: KeyboardEvent): void {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    const i = this.visible.findIndex((r) => r.path === this.selected);
    const last = this.visible.length - 1;
    const page = Math.max(1, Math.floor(this.viewport.clientHeight / rowHeight) - 1);
    const moves: Record<string, number> = { ArrowDown: i + 1, ArrowUp: i < 0 ? 0 : i - 1, PageDown: i + page, PageUp: i - page, Home: 0, End: last };
    if (e.key in moves) {
      e.preventDefault();
      const next = this.visible[Math.max(0, Math.min(last, moves[e.key]))];
      if (next && next.path !== this.selected) this.choose(next.path);
    } else if (e.key === ' ' && i >= 0) {
      // preventDefault also keeps a checkbox under the pointer from toggling a second time.
      e.preventDefault();
      const row = this.visible[i];
      if (this.canFreeze(row)) this.callbacks.onToggleFreeze([row.path], this.stateOf(row) !== 'frozen');
    } else if (e.key === 'Enter' && i >= 0) {
      e.preventDefault();
      this.callbacks.onActivate(this.visible[i].path);
    }
  }

  /** `name` cut in the middle to fit `width` px in the list's font. */
  private fit(name: string, width: number, bold: boolean): string {
    if (width <= 0 || !this.font) return name;
    this.measurer ??= document.createElement('canvas').getContext('2d');
    const ctx = this.measurer;
    if (!ctx) return name;
    ctx.font = bold ? `600 ${this.font}` : this.font;
    if (ctx.measureText(name).width <= width) return name;
    let lo = 1;
    let hi = name.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (ctx.measureText(middleEllipsis(name, mid)).width <= width) lo = mid;
      else hi = mid - 1;
    }
    return middleEllipsis(name, lo);
  }

  private render(): void {
    const top = this.viewport.scrollTop;
    const height = this.viewport.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / rowHeight) - 5);
    const last = Math.min(this.visible.length, Math.ceil((top + height) / rowHeight) + 5);
    const needed = last - first;
    while (this.pool.length < needed) {
      const el = h('div', { class: 'layer-row', role: 'option' });
      this.pool.push(el);
      this.spacer.append(el);
    }
    this.pool.forEach((el, k) => {
      const row = this.visible[first + k];
      if (k >= needed || !row) {
        el.style.display = 'none';
        el.removeAttribute('id');
        return;
      }
      el.style.display = '';
      el.style.top = `${(first + k) * rowHeight}px`;
      this.fill(el, row);
    });
    const active = this.selected !== undefined ? this.index.get(this.selected) : undefined;
    if (active !== undefined && this.visible.some((r) => r.path === this.selected)) this.viewport.setAttribute('aria-activedescendant', `layer-opt-${active}`);
    else this.viewport.removeAttribute('aria-activedescendant');
    // The name column's width is known once a row is laid out (and changes with the panel): refill to fit.
    const cell = this.pool.find((el) => el.style.display !== 'none')?.querySelector<HTMLElement>('.layer-name');
    if (cell) {
      const style = getComputedStyle(cell);
      const width = cell.clientWidth - 2;
      if (width > 0 && Math.abs(width - this.nameWidth) >= 1) {
        this.nameWidth = width;
        this.font = `${style.fontSize} ${style.fontFamily}`;
        this.render();
      }
    }
  }

  private fill(el: HTMLElement, row: LayerRow): void {
    el.id = `layer-opt-${this.index.get(row.path) ?? 0}`;
    // Skip rebuilding a row that shows the same thing (scrolling recycles rows).
    const info = this.infos.get(row.path);
    const state = this.stateOf(row);
    const key = `${row.path}|${state}|${this.selected === row.path}|${info?.mean ?? ''}|${this.editable}|${this.nameWidth}`;
    if (el.dataset['key'] === key) return;
    el.dataset['key'] = key;
    el.dataset['path'] = row.path;
    el.replaceChildren();
    el.classList.toggle('selected', this.selected === row.path);
    el.classList.toggle('frozen', state === 'frozen');
    el.classList.toggle('container', row.isContainer);
    el.setAttribute('aria-selected', String(this.selected === row.path));
    const canFreeze = this.canFreeze(row);
    const shape = formatShape(row.outputShape);
    el.setAttribute('aria-label', `${row.name}, ${row.className}, ${shape}, ${fmt(row.params)} params, ${stateWord(state, canFreeze)}`);
    const box = checkbox(`Freeze ${row.name}`, state === 'frozen', (checked) => this.callbacks.onToggleFreeze([row.path], checked));
    if (state === 'partial') (box as unknown as { indeterminate: boolean }).indeterminate = true;
    if (!canFreeze) box.setAttribute('disabled', '');
    box.classList.add('freeze');
    // A click must not move the focus out of the list (the row is rebuilt, and the focus would be lost).
    box.addEventListener('mousedown', (e) => {
      e.preventDefault();
      this.viewport.focus({ preventScroll: true });
    });
    const track = h('span', { class: 'act-track' });
    if (info) {
      const bar = h('span', { class: 'act-bar', title: `mean activation ${info.mean.toPrecision(3)}, ${(info.zeros * 100).toFixed(0)}% zeros` });
      bar.style.width = `${Math.round((Math.abs(info.mean) / this.maxMean) * 100)}%`;
      track.append(bar);
    } else track.classList.add('empty');
    // Room for the frozen mark (❄) when there is one.
    const room = this.nameWidth - row.depth * indent - (state === 'frozen' ? 16 : 0);
    // ONNX nodes: their attributes in the tooltip.
    const title = row.attributes && row.attributes.length > 0 ? `${row.path}\n${row.attributes.join('\n')}` : row.path;
    const name = h('span', { class: 'layer-name', title }, this.fit(row.name, room, row.isContainer));
    name.style.paddingLeft = `${row.depth * indent}px`;
    el.append(
      box,
      name,
      h('span', { class: 'layer-class', title: row.output !== undefined ? `${row.className}: makes output ${row.output + 1} of the model` : row.className }, row.output !== undefined ? `${row.className} · out ${row.output + 1}` : row.className),
      h('span', { class: 'layer-shape', title: shape }, shape),
      h('span', { class: 'layer-params' }, fmt(row.params)),
      track,
    );
    // The list is the one tab stop: the checkbox (a toolkit element that makes itself tabbable when connected) is not.
    box.setAttribute('tabindex', '-1');
    el.onclick = (e) => {
      if ((e.target as HTMLElement).closest('.freeze')) return;
      this.select(row.path, false);
      this.callbacks.onSelect(row.path);
    };
  }
}
