/**
 * The feature-map grid of one layer: channels tiled on a canvas with a
 * perceptual colormap, normalised per channel or across the layer, sortable
 * by mean activation or by fraction of zeros; a layer wider than a page (64)
 * shows its most active channels first, a page at a time, with a count of
 * the rest. Tiles fill the width (+/- zoom). Hover shows a channel's
 * statistics; click (or Enter) opens it full size with an overlay slider on
 * the input image; `[` and `]` step through channels. Dense outputs draw as
 * bars. Data arrives quantised (1 byte per value) with per-channel min/max.
 */
import type { Colormap, InspectResult, LayerInfo, LayerMaps } from '../src/protocol/inspect';
import { colormapLut } from '../src/protocol/colormap';
import { button, dropdown, progressRing } from './components/toolkit';
import { clear, fmt, h, num } from './dom';
import { rgbCanvas } from './canvas';
import { gridCanvas, gridLayout, layerRange, paintChannel, value, widePage } from './mapsGrid';

/** 'auto': channel order, but the most active first in a layer wider than one page. */
export type SortMode = 'auto' | 'index' | 'mean' | 'zeros';
export type NormMode = 'channel' | 'layer';

export interface MapsSettings {
  colormap: Colormap;
  sort: SortMode;
  norm: NormMode;
  /** Tile size steps from the size that fills the width (each ×1.4). */
  zoom?: number;
}

export interface MapsRequests {
  layerMaps(layerPath: string, maxSize: number): Promise<LayerMaps>;
  exportPng(fileName: string, png: Uint8Array): Promise<void>;
  onSettings(s: MapsSettings): void;
}

const gridMaxSize = 64;
const maxZoom = 4;

export class FeatureMapsView {
  readonly element = h('div', { class: 'maps' });
  private maps: LayerMaps | undefined;
  private full: LayerMaps | undefined;
  private layer: LayerInfo | undefined;
  private result: InspectResult | undefined;
  private order: number[] = [];
  /** How many channels of `order` the grid shows (a page at a time for wide layers). */
  private shown = 0;
  private zoomed: number | undefined;
  private overlay = 0;
  private loadSeq = 0;
  private lastWidth = 0;

  constructor(
    private readonly requests: MapsRequests,
    private settings: MapsSettings,
  ) {
    this.element.tabIndex = -1;
    this.element.addEventListener('keydown', (e) => this.onKey(e));
    // Fill the width as it changes (a narrower editor group, a closed side bar).
    new ResizeObserver(() => {
      const w = this.element.clientWidth;
      if (w > 0 && Math.abs(w - this.lastWidth) > 24 && this.maps && this.zoomed === undefined) this.render();
    }).observe(this.element);
  }

  clear(message: HTMLElement | string): void {
    this.maps = undefined;
    this.layer = undefined;
    clear(this.element);
    this.element.append(typeof message === 'string' ? h('p', { class: 'empty' }, message) : message);
  }

  async show(layer: LayerInfo, result: InspectResult): Promise<void> {
    this.layer = layer;
    this.result = result;
    this.zoomed = undefined;
    this.full = undefined;
    if (layer.kind === 'other') {
      this.clear(`${layer.path} outputs shape [${layer.shape.join(', ')}]: no channel grid for this layer.`);
      return;
    }
    const seq = ++this.loadSeq;
    clear(this.element);
    this.element.append(this.header(), progressRing(`Loading ${layer.path}…`));
    try {
      const maps = await this.requests.layerMaps(layer.path, gridMaxSize);
      if (seq !== this.loadSeq) return;
      this.maps = maps;
      this.sortChannels();
      this.shown = Math.min(maps.channels, widePage);
      this.render();
    } catch (e) {
      if (seq === this.loadSeq) this.clear(h('p', { class: 'error' }, e instanceof Error ? e.message : String(e)));
    }
  }

  private header(): HTMLElement {
    const l = this.layer;
    const m = this.maps;
    const dims = m ? (m.kind === 'map' ? `${fmt(m.channels)} ch · ${m.fullHeight}×${m.fullWidth}` : `${fmt(m.channels)} units`) : l ? `[${l.shape.join(', ')}]` : '';
    const zoom = this.settings.zoom ?? 0;
    const grid = m?.kind === 'map' && this.zoomed === undefined;
    return h(
      'div',
      { class: 'maps-header' },
      h(
        'div',
        { class: 'maps-title' },
        h('strong', { title: l?.path ?? '' }, l?.path ?? ''),
        h('span', { class: 'muted' }, dims),
        h('span', { class: 'spacer' }),
        grid
          ? h(
              'span',
              { class: 'zoom-buttons', role: 'group', 'aria-label': 'Tile size' },
              button('−', () => this.setZoom(zoom - 1), { secondary: true, title: 'Smaller tiles (-)' }),
              button('+', () => this.setZoom(zoom + 1), { secondary: true, title: 'Larger tiles (+)' }),
            )
          : null,
        m?.kind === 'map' ? button('Export PNG', () => void this.exportPng(), { secondary: true, title: 'Export every channel of this layer as a PNG file' }) : null,
      ),
      h(
        'div',
        { class: 'maps-tools' },
        dropdown<Colormap>('Colormap', [
          { value: 'viridis', label: 'viridis' },
          { value: 'magma', label: 'magma' },
          { value: 'gray', label: 'gray' },
        ], this.settings.colormap, (v) => this.update({ colormap: v })),
        dropdown<SortMode>('Sort channels', [
          { value: 'auto', label: 'auto (wide: most active)' },
          { value: 'index', label: 'channel order' },
          { value: 'mean', label: 'by mean activation' },
          { value: 'zeros', label: 'by fraction of zeros' },
        ], this.settings.sort, (v) => this.update({ sort: v })),
        dropdown<NormMode>('Normalise', [
          { value: 'channel', label: 'per channel' },
          { value: 'layer', label: 'across the layer' },
        ], this.settings.norm, (v) => this.update({ norm: v })),
      ),
    );
  }

  private setZoom(z: number): void {
    const zoom = Math.max(-maxZoom, Math.min(maxZoom, z));
    if (zoom === (this.settings.zoom ?? 0)) return;
    this.update({ zoom });
  }

  private update(s: Partial<MapsSettings>): void {
    this.settings = { ...this.settings, ...s };
    this.requests.onSettings(this.settings);
    if (!this.maps) return;
    this.sortChannels();
    this.render();
  }

  /** The sort in effect: 'auto' is channel order, or by mean activation for a layer wider than a page. */
  private sortMode(): Exclude<SortMode, 'auto'> {
    const s = this.settings.sort;
    if (s !== 'auto') return s;
    return this.maps && this.maps.kind === 'map' && this.maps.channels > widePage ? 'mean' : 'index';
  }

  private sortChannels(): void {
    const m = this.maps;
    if (!m) return;
    const idx = Array.from({ length: m.channels }, (_, i) => i);
    const mode = this.sortMode();
    if (m.kind === 'map' && mode !== 'index') {
      const key = mode === 'mean' ? (i: number) => -m.stats[i].mean : (i: number) => -m.stats[i].zeros;
      idx.sort((a, b) => key(a) - key(b) || a - b);
    }
    this.order = idx;
  }

  private render(): void {
    const m = this.maps;
    if (!m) return;
    clear(this.element);
    this.element.append(this.header());
    if (m.kind === 'vector') {
      this.element.append(this.bars(m));
      return;
    }
    if (this.zoomed !== undefined) {
      this.element.append(this.zoomView(this.zoomed));
      return;
    }
    const t0 = performance.now();
    this.lastWidth = this.element.clientWidth;
    const order = this.order.slice(0, this.shown);
    const layout = gridLayout(order.length, m.width, m.height, this.lastWidth || 800, this.settings.zoom ?? 0);
    const canvas = gridCanvas(m, order, layout, this.settings.colormap, this.settings.norm, `${order.length} of ${m.channels} feature maps of ${m.path}`);
    const { cols, pitchX, pitchY } = layout;
    const stats = h('div', { class: 'channel-stats', 'aria-live': 'polite' }, 'Hover a channel for its statistics; click to open it.');
    const at = (e: MouseEvent): number | undefined => {
      const r = canvas.getBoundingClientRect();
      const x = Math.floor((((e.clientX - r.left) / r.width) * canvas.width) / pitchX);
      const y = Math.floor((((e.clientY - r.top) / r.height) * canvas.height) / pitchY);
      const k = y * cols + x;
      return k >= 0 && k < order.length && x < cols ? order[k] : undefined;
    };
    canvas.addEventListener('mousemove', (e) => {
      const c = at(e);
      stats.textContent = c === undefined ? '' : this.statsText(c);
    });
    canvas.addEventListener('click', (e) => {
      const c = at(e);
      if (c !== undefined) void this.zoom(c);
    });
    const page = this.pageBar(m);
    if (page) this.element.append(page);
    this.element.append(h('div', { class: 'grid-wrap' }, canvas), stats);
    this.element.dataset['drawMs'] = (performance.now() - t0).toFixed(1);
  }

  /** For a layer wider than a page: which channels show, how many do not, and buttons for more. */
  private pageBar(m: LayerMaps): HTMLElement | null {
    if (m.channels <= widePage) return null;
    const rest = m.channels - this.shown;
    const mode = this.sortMode();
    const which =
      mode === 'mean' ? `The ${fmt(this.shown)} most active of ${fmt(m.channels)} channels (by mean activation)`
      : mode === 'zeros' ? `The ${fmt(this.shown)} channels with most zeros of ${fmt(m.channels)}`
      : `Channels 1–${fmt(this.shown)} of ${fmt(m.channels)}`;
    const more = (n: number) => {
      this.shown = Math.min(m.channels, n);
      this.render();
    };
    return h(
      'div',
      { class: 'page-bar' },
      h('span', { class: 'page-count' }, rest > 0 ? `${which} · ${fmt(rest)} more` : `All ${fmt(m.channels)} channels`),
      // The buttons wrap as one group, never one alone.
      h(
        'span',
        { class: 'page-buttons' },
        rest > 0 ? button(`Show ${fmt(Math.min(widePage, rest))} more`, () => more(this.shown + widePage), { secondary: true }) : null,
        rest > widePage ? button(`Show all ${fmt(m.channels)}`, () => more(m.channels), { secondary: true }) : null,
        this.shown > widePage ? button(`Show ${widePage}`, () => more(widePage), { secondary: true }) : null,
      ),
    );
  }

  private statsText(c: number): string {
    const s = this.maps!.stats[c];
    return `channel ${c}: min ${num(s.min)} · max ${num(s.max)} · mean ${num(s.mean)} · std ${num(s.std)} · ${(s.zeros * 100).toFixed(0)}% zero`;
  }

  private bars(m: LayerMaps): HTMLElement {
    const n = m.channels;
    const W = Math.max(200, Math.min(1200, n * 6));
    const H = 160;
    const canvas = h('canvas', { width: W, height: H, class: 'bars', role: 'img', 'aria-label': `${n} unit activations of ${m.path}` });
    const ctx = canvas.getContext('2d');
    const s = m.stats[0];
    const style = getComputedStyle(document.body);
    if (ctx) {
      const zero = s.max > s.min ? Math.max(0, Math.min(1, (0 - s.min) / (s.max - s.min))) : 0;
      const y0 = H - zero * H;
      ctx.fillStyle = style.getPropertyValue('--vscode-charts-blue') || '#3794ff';
      const bw = W / n;
      for (let i = 0; i < n; i++) {
        const v = m.data[i] / 255;
        const y = H - v * H;
        ctx.fillRect(i * bw, Math.min(y, y0), Math.max(1, bw - 1), Math.abs(y0 - y) || 1);
      }
      ctx.fillStyle = style.getPropertyValue('--vscode-foreground') || '#888';
      ctx.fillRect(0, y0, W, 1);
    }
    const info = h('div', { class: 'channel-stats' }, `${n} units · min ${num(s.min)} · max ${num(s.max)} · mean ${num(s.mean)} · ${(s.zeros * 100).toFixed(0)}% zero`);
    canvas.addEventListener('mousemove', (e) => {
      const r = canvas.getBoundingClientRect();
      const i = Math.floor(((e.clientX - r.left) / r.width) * n);
      if (i >= 0 && i < n) info.textContent = `unit ${i}: ${num(value(s, m.data[i]))}`;
    });
    return h('div', { class: 'grid-wrap' }, canvas, info);
  }

  private async zoom(c: number): Promise<void> {
    this.zoomed = c;
    const m = this.maps!;
    if (!this.full && (m.height < m.fullHeight || m.width < m.fullWidth)) {
      this.render();
      try {
        this.full = await this.requests.layerMaps(m.path, 4096);
      } catch {
        this.full = undefined;
      }
      if (this.zoomed !== c) return;
    }
    this.render();
    (this.element.querySelector('.zoom') as HTMLElement | null)?.focus();
  }

  private zoomView(c: number): HTMLElement {
    const m = this.full ?? this.maps!;
    const canvas = h('canvas', { width: m.width, height: m.height, class: 'zoom-map', role: 'img', 'aria-label': `channel ${c} of ${m.path}` });
    const ctx = canvas.getContext('2d');
    if (ctx) {
      const img = ctx.createImageData(m.width, m.height);
      paintChannel(m, c, img.data, m.width, 0, 0, colormapLut(this.settings.colormap), this.settings.norm === 'layer' ? layerRange(m) : undefined);
      ctx.putImageData(img, 0, 0);
    }
    const stack = h('div', { class: 'zoom-stack' });
    const input = this.result?.input;
    if (input) {
      const under = rgbCanvas(input.width, input.height, input.rgb, { class: 'zoom-input' });
      stack.append(under);
    }
    canvas.style.opacity = String(1 - this.overlay);
    stack.append(canvas);
    const slider = h('input', { type: 'range', min: 0, max: 100, value: Math.round(this.overlay * 100), 'aria-label': 'Show the input image through the map' });
    slider.addEventListener('input', () => {
      this.overlay = Number((slider as HTMLInputElement).value) / 100;
      canvas.style.opacity = String(1 - this.overlay);
    });
    const pos = this.order.indexOf(c);
    const step = (d: number) => {
      const next = this.order[(pos + d + this.order.length) % this.order.length];
      void this.zoom(next);
    };
    const view = h(
      'div',
      { class: 'zoom', tabindex: 0 },
      h(
        'div',
        { class: 'zoom-bar' },
        button('← Grid', () => {
          this.zoomed = undefined;
          this.render();
        }, { secondary: true, title: 'Back to the grid (Escape)' }),
        button('[', () => step(-1), { secondary: true, title: 'Previous channel ([)' }),
        button(']', () => step(1), { secondary: true, title: 'Next channel (])' }),
        h('label', { class: 'overlay' }, 'overlay on input ', slider),
      ),
      stack,
      h('div', { class: 'channel-stats' }, this.statsText(c) + (m.height < m.fullHeight ? ' (downsampled)' : ` · ${m.height}×${m.width}`)),
    );
    return view;
  }

  private onKey(e: KeyboardEvent): void {
    if (!this.maps || this.maps.kind !== 'map') return;
    if (this.zoomed === undefined) {
      if (e.key === 'Enter') void this.zoom(this.order[0]);
      else if (e.key === '+' || e.key === '=') this.setZoom((this.settings.zoom ?? 0) + 1);
      else if (e.key === '-') this.setZoom((this.settings.zoom ?? 0) - 1);
      return;
    }
    const pos = this.order.indexOf(this.zoomed);
    if (e.key === '[' || e.key === ']') {
      const d = e.key === ']' ? 1 : -1;
      void this.zoom(this.order[(pos + d + this.order.length) % this.order.length]);
    } else if (e.key === 'Escape') {
      this.zoomed = undefined;
      this.render();
    }
  }

  /** Opens the first channel of the grid (Enter from the layer list). */
  openFirst(): void {
    if (this.maps?.kind === 'map') void this.zoom(this.order[0]);
  }

  private async exportPng(): Promise<void> {
    const m = this.maps;
    if (!m || m.kind !== 'map') return;
    // Full resolution, one pixel per value, whatever the panel's width.
    const all = this.full ?? m;
    const canvas = gridCanvas(all, this.order, gridLayout(this.order.length, all.width, all.height, 0), this.settings.colormap, this.settings.norm, m.path);
    const blob = await new Promise<Blob | null>((resolve) => canvas.toBlob(resolve, 'image/png'));
    if (!blob) return;
    const bytes = new Uint8Array(await blob.arrayBuffer());
    await this.requests.exportPng(`${m.path.replace(/\//g, '_')}-${this.settings.colormap}.png`, bytes);
  }
}
