/**
 * The Latent tab: a folder's embeddings at one layer, projected to 2-D (PCA
 * or UMAP, computed in the worker) and drawn on one canvas, coloured by class
 * folder. Hover shows the image's thumbnail and path (fetched on demand);
 * click opens the image and lists its nearest neighbours by cosine similarity
 * in the original embedding space. Wheel zooms, drag pans, double-click
 * resets.
 *
 * Built for 10,000 points: no DOM per point; each class is one path of small
 * squares filled once; hit-testing goes through a uniform grid of screen
 * cells rebuilt when the view changes (O(n)), so a hover looks at a few
 * points, not all of them. `drawPoints` and `GridIndex` are exported for
 * scripts/benchLatent.ts, which times them in Chromium.
 */
import type { LatentMap, LatentState, Neighbor, ProjectionMethod, Thumbnail, EmbedProgress } from '../src/protocol/embed';
import { latentPalette } from '../src/protocol/embed';
import type { ModelSummary, Normalization } from '../src/protocol/model';
import { button, dropdown, progressRing } from './components/toolkit';
import { clear, h } from './dom';
import { type View, fitView, toScreen, groupByLabel, drawPoints, GridIndex } from './latentDraw';

export interface LatentSettings {
  datasetDir: string | null;
  method: ProjectionMethod;
  /** null: the last feature layer. */
  layerPath: string | null;
}

export interface LatentRequests {
  state(): Promise<LatentState>;
  pickFolder(): Promise<string | null>;
  map(params: { datasetDir: string; method: ProjectionMethod; layerPath?: string; normalization: Normalization }, onProgress: (p: EmbedProgress) => void, signal: AbortSignal): Promise<LatentMap>;
  neighbors(index: number, k: number): Promise<Neighbor[]>;
  thumbnail(index: number): Promise<Thumbnail>;
  exportTsv(): Promise<string | null>;
  openImage(absPath: string): void;
  normalization(): Normalization;
  onSettings(s: LatentSettings): void;
  /** The host asked for this tab (a command): show it. */
  focus(): void;
}

const pct = (x: number) => `${(x * 100).toFixed(0)}%`;

export class LatentMapView {
  readonly element = h('div', { class: 'latent' });
  private readonly toolbar = h('div', { class: 'latent-bar' });
  private readonly status = h('div', { class: 'latent-status muted', role: 'status' });
  private readonly canvas = h('canvas', { class: 'latent-canvas', role: 'img', 'aria-label': 'Latent-space map', tabindex: 0 });
  private readonly legend = h('div', { class: 'latent-legend' });
  private readonly info = h('div', { class: 'latent-info' });
  private readonly body = h('div', { class: 'latent-body' });
  private settingsNow: LatentSettings;
  private summary: ModelSummary | null = null;
  private map: LatentMap | null = null;
  private groups: number[][] = [];
  private screen: Float32Array = new Float32Array(0);
  private grid: GridIndex | undefined;
  private base: View = { scale: 1, ox: 0, oy: 0 };
  private zoom: View = { scale: 1, ox: 0, oy: 0 };
  private hover = -1;
  private selected = -1;
  private neighborList: Neighbor[] = [];
  private readonly hidden = new Set<number>();
  private readonly thumbs = new Map<number, Thumbnail>();
  private frame = 0;
  private visible = false;
  private busy: AbortController | undefined;
  private drag: { x: number; y: number; ox: number; oy: number; moved: boolean } | undefined;
  private hoverTimer: number | undefined;
  private width = 0;
  private height = 0;
  lastDrawMs = 0;

  constructor(
    private readonly requests: LatentRequests,
    saved: Partial<LatentSettings> | undefined,
  ) {
    this.settingsNow = { datasetDir: saved?.datasetDir ?? null, method: saved?.method === 'umap' ? 'umap' : 'pca', layerPath: saved?.layerPath ?? null };
    this.body.append(h('div', { class: 'latent-plot' }, this.canvas, this.legend), this.info);
    this.element.append(this.toolbar, this.status, this.body);
    this.wireCanvas();
    new ResizeObserver(() => this.resize()).observe(this.canvas);
    this.renderToolbar();
    this.renderEmpty();
  }

  settings(): LatentSettings {
    return { ...this.settingsNow };
  }

  setModel(summary: ModelSummary | null): void {
    const changed = summary?.modelPath !== this.summary?.modelPath || summary?.layers.length !== this.summary?.layers.length;
    this.summary = summary;
    if (changed) this.renderToolbar();
  }

  setVisible(on: boolean): void {
    this.visible = on;
    if (on) {
      this.resize();
      if (!this.map && !this.busy && this.settingsNow.datasetDir) void this.compute();
    }
  }

  /** On load: a map the host asked for (the command) wins over the saved folder. */
  async start(): Promise<void> {
    try {
      const s = await this.requests.state();
      if (s.pending) this.show(s.pending.datasetDir, s.pending.layerPath);
    } catch {
      // An older host: nothing pending.
    }
  }

  /** Shows the map of `datasetDir` at `layerPath` (from the host's event). */
  show(datasetDir: string, layerPath: string | null): void {
    this.settingsNow = { ...this.settingsNow, datasetDir, layerPath };
    this.requests.onSettings(this.settings());
    this.renderToolbar();
    this.requests.focus();
    void this.compute();
  }

  private update(s: Partial<LatentSettings>, recompute = true): void {
    this.settingsNow = { ...this.settingsNow, ...s };
    this.requests.onSettings(this.settings());
    this.renderToolbar();
    if (recompute && this.settingsNow.datasetDir) void this.compute();
  }

  private renderToolbar(): void {
    clear(this.toolbar);
    const dir = this.settingsNow.datasetDir;
    const layers = (this.summary?.layers ?? []).filter((r) => r.className !== 'InputLayer');
    const layerOptions = [{ value: '', label: 'last feature layer' }, ...layers.map((r) => ({ value: r.path, label: `${'· '.repeat(r.depth)}${r.name} (${r.className})` }))];
    this.toolbar.append(
      h('span', { class: 'latent-folder', title: dir ?? 'No folder chosen' }, dir ? (dir.split(/[\\/]/).pop() ?? dir) : 'No folder'),
      button('Choose Folder…', () => void this.pickFolder(), { secondary: true, title: 'Choose the images to map (one sub-folder per class colours them)' }),
      h('label', { class: 'latent-field' }, 'layer ', dropdown('Layer', layerOptions, this.settingsNow.layerPath ?? '', (v) => this.update({ layerPath: v === '' ? null : v }))),
      h('label', { class: 'latent-field' }, 'projection ', dropdown<ProjectionMethod>('Projection', [{ value: 'pca', label: 'PCA' }, { value: 'umap', label: 'UMAP' }], this.settingsNow.method, (v) => this.update({ method: v }))),
      h('span', { class: 'spacer' }),
      button('Export TSV…', () => void this.exportTsv(), { secondary: true, title: 'vectors.tsv + metadata.tsv for the TensorBoard Embedding Projector' }),
    );
  }

  private renderEmpty(): void {
    clear(this.info);
    if (!this.settingsNow.datasetDir) {
      this.status.textContent = '';
      this.info.append(h('div', { class: 'empty' }, h('p', {}, 'No images yet: choose a folder to see where this model puts them.'), button('Choose Folder…', () => void this.pickFolder())));
    }
  }

  private async pickFolder(): Promise<void> {
    const dir = await this.requests.pickFolder();
    if (dir) this.update({ datasetDir: dir });
  }

  private async exportTsv(): Promise<void> {
    try {
      const out = await this.requests.exportTsv();
      if (out) this.status.textContent = `Exported vectors.tsv and metadata.tsv next to ${out}`;
    } catch (e) {
      this.status.textContent = e instanceof Error ? e.message : String(e);
    }
  }

  private async compute(): Promise<void> {
    const dir = this.settingsNow.datasetDir;
    if (!dir) return;
    this.busy?.abort();
    const controller = new AbortController();
    this.busy = controller;
    clear(this.status);
    const text = h('span', {}, 'Computing embeddings…');
    this.status.append(progressRing('Computing the map'), text);
    try {
      const map = await this.requests.map(
        { datasetDir: dir, method: this.settingsNow.method, ...(this.settingsNow.layerPath ? { layerPath: this.settingsNow.layerPath } : {}), normalization: this.requests.normalization() },
        (p) => {
          if (p.type === 'embed') text.textContent = `Embedding ${p.done}/${p.total} images${p.reused ? ` (${p.reused} from the cache)` : ''}…`;
          else if (p.type === 'project') text.textContent = `${p.method.toUpperCase()} ${Math.round((p.done / p.total) * 100)}%…`;
          else if (p.type === 'scan') text.textContent = `${p.files} images found…`;
        },
        controller.signal,
      );
      if (this.busy !== controller) return;
      this.setMap(map);
    } catch (e) {
      if (this.busy !== controller) return;
      clear(this.status);
      this.status.append(h('span', { class: 'error' }, e instanceof Error ? e.message : String(e)));
    } finally {
      if (this.busy === controller) this.busy = undefined;
    }
  }

  private setMap(map: LatentMap): void {
    this.map = map;
    this.groups = groupByLabel(map.labels);
    this.hidden.clear();
    this.thumbs.clear();
    this.selected = -1;
    this.hover = -1;
    this.neighborList = [];
    this.zoom = { scale: 1, ox: 0, oy: 0 };
    const s = map.summary;
    const classes = s.classes ? `${s.classes.length} classes` : 'no classes';
    const explained = map.explained ? ` (axes explain ${pct(map.explained[0])} and ${pct(map.explained[1])} of the variance)` : '';
    this.status.textContent = `${s.count.toLocaleString('en-US')} images · ${classes} · ${s.dim}-d at ${s.layer}${s.pooling === 'mean' ? ' (averaged over space)' : ''} · ${map.method.toUpperCase()} ${map.projectionMs} ms${explained} · ${s.computed} computed, ${s.reused} cached`;
    this.canvas.setAttribute('aria-label', `Latent-space map of ${s.count} images at ${s.layer}, ${map.method.toUpperCase()}`);
    this.renderLegend();
    this.renderInfo();
    this.resize();
  }

  private renderLegend(): void {
    clear(this.legend);
    const s = this.map?.summary;
    if (!s) return;
    const names = s.classes ?? ['images'];
    names.forEach((name, c) => {
      const sw = h('span', { class: 'swatch' });
      sw.style.background = latentPalette[c % latentPalette.length];
      const item = h('button', { class: 'legend-item', 'aria-pressed': String(!this.hidden.has(c)), title: `Show or hide ${name}` }, sw, `${name} ${s.counts[c] ?? ''}`);
      item.classList.toggle('off', this.hidden.has(c));
      item.addEventListener('click', () => {
        if (this.hidden.has(c)) this.hidden.delete(c);
        else this.hidden.add(c);
        this.renderLegend();
        this.layout();
      });
      this.legend.append(item);
    });
  }

  private resize(): void {
    if (!this.visible) return;
    const rect = this.canvas.getBoundingClientRect();
    if (rect.width === 0) return;
    const dpr = window.devicePixelRatio || 1;
    this.width = rect.width;
    this.height = rect.height;
    this.canvas.width = Math.round(rect.width * dpr);
    this.canvas.height = Math.round(rect.height * dpr);
    if (this.map) this.base = fitView(this.map.xy, this.width, this.height);
    this.layout();
  }

  private viewNow(): View {
    const b = this.base;
    const z = this.zoom;
    return { scale: b.scale * z.scale, ox: b.ox * z.scale + z.ox, oy: b.oy * z.scale + z.oy };
  }

  /** Screen positions and the hit grid for the current view, then a redraw. */
  private layout(): void {
    if (!this.map) {
      this.draw();
      return;
    }
    this.screen = toScreen(this.map.xy, this.viewNow(), this.screen.length === this.map.xy.length ? this.screen : undefined);
    const labels = this.map.labels;
    this.grid = new GridIndex(this.screen, 8, this.hidden.size ? (i) => !this.hidden.has(Math.max(0, labels[i])) : undefined);
    this.draw();
  }

  private draw(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      const t0 = performance.now();
      const ctx = this.canvas.getContext('2d');
      if (!ctx) return;
      const dpr = window.devicePixelRatio || 1;
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, this.width, this.height);
      if (!this.map) return;
      const n = this.map.labels.length;
      const radius = n > 5000 ? 1.5 : n > 1000 ? 2 : 3;
      drawPoints(ctx, this.screen, this.groups, { colors: latentPalette, radius, hidden: this.hidden }, this.width, this.height);
      const css = getComputedStyle(this.element);
      const ring = (i: number, color: string, r: number) => {
        ctx.strokeStyle = color;
        ctx.lineWidth = 1.5;
        ctx.beginPath();
        ctx.arc(this.screen[2 * i], this.screen[2 * i + 1], r, 0, 2 * Math.PI);
        ctx.stroke();
      };
      const fg = css.getPropertyValue('--vscode-foreground').trim() || '#888';
      for (const nb of this.neighborList) ring(nb.index, fg, radius + 3);
      if (this.selected >= 0) ring(this.selected, css.getPropertyValue('--vscode-focusBorder').trim() || '#0078d4', radius + 5);
      if (this.hover >= 0) ring(this.hover, fg, radius + 4);
      this.lastDrawMs = performance.now() - t0;
    });
  }

  private pointAt(e: MouseEvent): number {
    const rect = this.canvas.getBoundingClientRect();
    return this.grid ? this.grid.nearest(e.clientX - rect.left, e.clientY - rect.top, 8) : -1;
  }

  private wireCanvas(): void {
    const c = this.canvas;
    c.addEventListener('mousemove', (e) => {
      if (this.drag) {
        const dx = e.clientX - this.drag.x;
        const dy = e.clientY - this.drag.y;
        if (Math.abs(dx) + Math.abs(dy) > 3) this.drag.moved = true;
        this.zoom = { ...this.zoom, ox: this.drag.ox + dx, oy: this.drag.oy + dy };
        this.layout();
        return;
      }
      const i = this.pointAt(e);
      if (i === this.hover) return;
      this.hover = i;
      c.style.cursor = i >= 0 ? 'pointer' : 'default';
      this.draw();
      window.clearTimeout(this.hoverTimer);
      this.hoverTimer = window.setTimeout(() => this.renderInfo(), 40);
    });
    c.addEventListener('mouseleave', () => {
      this.hover = -1;
      this.drag = undefined;
      this.draw();
      this.renderInfo();
    });
    c.addEventListener('mousedown', (e) => {
      this.drag = { x: e.clientX, y: e.clientY, ox: this.zoom.ox, oy: this.zoom.oy, moved: false };
    });
    c.addEventListener('mouseup', (e) => {
      const moved = this.drag?.moved;
      this.drag = undefined;
      if (moved) return;
      const i = this.pointAt(e);
      if (i >= 0) void this.pick(i, true);
    });
    c.addEventListener('dblclick', () => {
      this.zoom = { scale: 1, ox: 0, oy: 0 };
      this.layout();
    });
    c.addEventListener(
      'wheel',
      (e) => {
        if (!this.map) return;
        e.preventDefault();
        const rect = c.getBoundingClientRect();
        const mx = e.clientX - rect.left;
        const my = e.clientY - rect.top;
        const f = Math.exp(-e.deltaY * 0.0015);
        const k = Math.min(200, Math.max(0.5, this.zoom.scale * f));
        const g = k / this.zoom.scale;
        // Keep the point under the cursor in place.
        this.zoom = { scale: k, ox: mx - (mx - this.zoom.ox) * g, oy: my - (my - this.zoom.oy) * g };
        this.layout();
      },
      { passive: false },
    );
    c.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') {
        this.selected = -1;
        this.neighborList = [];
        this.draw();
        this.renderInfo();
      }
    });
  }

  /** Selects point i: its neighbours are listed and ringed; `open` also opens the image beside. */
  private async pick(i: number, open: boolean): Promise<void> {
    this.selected = i;
    this.neighborList = [];
    this.draw();
    this.renderInfo();
    const thumb = await this.thumb(i);
    if (open && thumb) this.requests.openImage(thumb.absPath);
    try {
      this.neighborList = await this.requests.neighbors(i, 8);
    } catch (e) {
      this.status.textContent = e instanceof Error ? e.message : String(e);
    }
    if (this.selected !== i) return;
    this.draw();
    this.renderInfo();
  }

  private async thumb(i: number): Promise<Thumbnail | undefined> {
    const known = this.thumbs.get(i);
    if (known) return known;
    try {
      const t = await this.requests.thumbnail(i);
      if (this.thumbs.size > 500) this.thumbs.clear();
      this.thumbs.set(i, t);
      return t;
    } catch {
      return undefined;
    }
  }

  private className(i: number): string {
    const s = this.map?.summary;
    const l = this.map?.labels[i] ?? -1;
    return s?.classes && l >= 0 ? s.classes[l] : '';
  }

  private card(i: number, title: string): HTMLElement {
    const img = h('img', { class: 'latent-thumb', alt: '' });
    const path = this.map?.paths[i] ?? '';
    const known = this.thumbs.get(i);
    if (known) img.src = known.dataUrl;
    else
      void this.thumb(i).then((t) => {
        if (t) img.src = t.dataUrl;
      });
    const sw = h('span', { class: 'swatch' });
    sw.style.background = latentPalette[Math.max(0, this.map?.labels[i] ?? 0) % latentPalette.length];
    return h('div', { class: 'latent-card' }, h('div', { class: 'muted' }, title), img, h('div', { class: 'latent-path', title: path }, path), h('div', {}, sw, ` ${this.className(i)}`));
  }

  private renderInfo(): void {
    if (!this.map) {
      this.renderEmpty();
      return;
    }
    clear(this.info);
    if (this.hover >= 0 && this.hover !== this.selected) this.info.append(this.card(this.hover, 'Under the cursor'));
    if (this.selected >= 0) {
      this.info.append(this.card(this.selected, 'Picked (click opens it)'));
      const list = h('ol', { class: 'latent-neighbors', 'aria-label': 'Nearest neighbours by cosine similarity' });
      for (const nb of this.neighborList) {
        const sw = h('span', { class: 'swatch' });
        sw.style.background = latentPalette[Math.max(0, nb.label) % latentPalette.length];
        const b = h('button', { class: 'neighbor', title: `${nb.path}: open it and list its neighbours` }, sw, h('span', { class: 'nb-sim' }, nb.similarity.toFixed(3)), h('span', { class: 'nb-path' }, nb.path));
        b.addEventListener('click', () => void this.pick(nb.index, true));
        list.append(h('li', {}, b));
      }
      this.info.append(h('h2', {}, 'Nearest neighbours (cosine)'), this.neighborList.length ? list : progressRing('Finding neighbours…'));
    } else if (this.hover < 0) {
      this.info.append(h('p', { class: 'muted' }, 'Hover a point to see its image; click to open it and list its nearest neighbours. Wheel zooms, drag pans, double-click resets.'));
    }
  }
}
