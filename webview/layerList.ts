/**
 * The layer list: one row per layer (nested models indented), a freeze
 * checkbox, class, output shape, params, and a thin bar with the layer's mean
 * activation for the current image. Only the visible rows exist in the DOM
 * (row elements are recycled), so models with hundreds of layers scroll
 * smoothly. Keyboard: Up/Down select, Space toggles freeze.
 */
import type { LayerInfo } from '../src/protocol/inspect';
import { freezeStates, type FreezeState } from '../src/protocol/freezePlan';
import { formatShape, type LayerRow } from '../src/protocol/model';
import { h, fmt } from './dom';
import { checkbox } from './components/toolkit';

const rowHeight = 26;

export interface LayerListCallbacks {
  onSelect(path: string): void;
  onToggleFreeze(paths: string[], frozen: boolean): void;
}

export class LayerList {
  readonly element: HTMLElement;
  private readonly viewport: HTMLElement;
  private readonly spacer: HTMLElement;
  private rows: LayerRow[] = [];
  private visible: LayerRow[] = [];
  private plan: string[] = [];
  private states = new Map<string, FreezeState>();
  private infos = new Map<string, LayerInfo>();
  private maxMean = 1;
  private filter = '';
  private selected: string | undefined;
  private readonly pool: HTMLElement[] = [];
  private editable = true;

  constructor(private readonly callbacks: LayerListCallbacks) {
    this.spacer = h('div', { class: 'layer-spacer' });
    this.viewport = h('div', { class: 'layer-viewport', tabindex: 0, role: 'listbox', 'aria-label': 'Layers' }, this.spacer);
    this.element = this.viewport;
    this.viewport.addEventListener('scroll', () => this.render());
    this.viewport.addEventListener('keydown', (e) => this.onKey(e));
    new ResizeObserver(() => this.render()).observe(this.viewport);
  }

  setRows(rows: LayerRow[], editable: boolean): void {
    this.rows = rows;
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

  private applyFilter(): void {
    const f = this.filter;
    this.visible = f ? this.rows.filter((r) => r.name.toLowerCase().includes(f) || r.className.toLowerCase().includes(f) || r.path.toLowerCase().includes(f)) : this.rows;
    this.spacer.style.height = `${this.visible.length * rowHeight}px`;
    this.render();
  }

  private onKey(e: KeyboardEvent): void {
    const i = this.visible.findIndex((r) => r.path === this.selected);
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      const next = this.visible[Math.max(0, Math.min(this.visible.length - 1, i + (e.key === 'ArrowDown' ? 1 : -1)))];
      if (next) {
        this.select(next.path);
        this.callbacks.onSelect(next.path);
      }
    } else if (e.key === ' ' && i >= 0 && this.editable) {
      e.preventDefault();
      const row = this.visible[i];
      this.callbacks.onToggleFreeze([row.path], this.stateOf(row) !== 'frozen');
    }
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
        return;
      }
      el.style.display = '';
      el.style.top = `${(first + k) * rowHeight}px`;
      this.fill(el, row);
    });
  }

  private fill(el: HTMLElement, row: LayerRow): void {
    // Skip rebuilding a row that shows the same thing (scrolling recycles rows).
    const info = this.infos.get(row.path);
    const state = this.stateOf(row);
    const key = `${row.path}|${state}|${this.selected === row.path}|${info?.mean ?? ''}|${this.editable}`;
    if (el.dataset['key'] === key) return;
    el.dataset['key'] = key;
    el.dataset['path'] = row.path;
    el.replaceChildren();
    el.classList.toggle('selected', this.selected === row.path);
    el.classList.toggle('frozen', state === 'frozen');
    el.classList.toggle('container', row.isContainer);
    el.setAttribute('aria-selected', String(this.selected === row.path));
    const canFreeze = this.editable && (row.params > 0 || row.isContainer);
    const box = checkbox(`Freeze ${row.name}`, state === 'frozen', (checked) => this.callbacks.onToggleFreeze([row.path], checked));
    if (state === 'partial') (box as unknown as { indeterminate: boolean }).indeterminate = true;
    if (!canFreeze) box.setAttribute('disabled', '');
    box.classList.add('freeze');
    const bar = h('span', { class: 'act-bar', title: info ? `mean activation ${info.mean.toPrecision(3)}, ${(info.zeros * 100).toFixed(0)}% zeros` : '' });
    if (info) bar.style.width = `${Math.round((Math.abs(info.mean) / this.maxMean) * 100)}%`;
    const name = h('span', { class: 'layer-name', title: row.path }, row.name);
    name.style.paddingLeft = `${row.depth * 14}px`;
    el.append(
      box,
      name,
      h('span', { class: 'layer-class', title: row.output !== undefined ? `makes output ${row.output + 1} of the model` : row.className }, row.output !== undefined ? `${row.className} · out ${row.output + 1}` : row.className),
      h('span', { class: 'layer-shape' }, formatShape(row.outputShape)),
      h('span', { class: 'layer-params' }, fmt(row.params)),
      h('span', { class: 'act-track' }, bar),
    );
    el.onclick = (e) => {
      if ((e.target as HTMLElement).closest('.freeze')) return;
      this.select(row.path, false);
      this.callbacks.onSelect(row.path);
    };
  }
}
