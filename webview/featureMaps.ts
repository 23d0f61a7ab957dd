/**
 * The feature-map grid of one layer: channels tiled on a canvas with a
 * perceptual colormap, normalised per channel or across the layer, sortable
 * by mean activation or by fraction of zeros. Hover shows a channel's
 * statistics; click (or Enter) opens it full size with an overlay slider on
 * the input image; `[` and `]` step through channels. Dense outputs draw as
 * bars. Data arrives quantised (1 byte per value) with per-channel min/max.
 */
import type { ChannelStats, Colormap, InspectResult, LayerInfo, LayerMaps } from '../src/protocol/inspect';
import { colormapLut } from '../src/protocol/colormap';
import { button, dropdown, progressRing } from './components/toolkit';
import { clear, h, num } from './dom';
import { rgbCanvas } from './canvas';

export type SortMode = 'index' | 'mean' | 'zeros';
export type NormMode = 'channel' | 'layer';

export interface MapsSettings {
  colormap: Colormap;
  sort: SortMode;
  norm: NormMode;
}

export interface MapsRequests {
  layerMaps(layerPath: string, maxSize: number): Promise<LayerMaps>;
  exportPng(fileName: string, png: Uint8Array): Promise<void>;
  onSettings(s: MapsSettings): void;
}

const gridMaxSize = 64;

/** Value of byte `b` of a channel, undoing the per-channel quantisation. */
function value(s: ChannelStats, b: number): number {
  return s.min + (b / 255) * (s.max - s.min);
}

export class FeatureMapsView {
  readonly element = h('div', { class: 'maps' });
  private maps: LayerMaps | undefined;
  private full: LayerMaps | undefined;
  private layer: LayerInfo | undefined;
  private result: InspectResult | undefined;
  private order: number[] = [];
  private zoomed: number | undefined;
  private overlay = 0;
  private loadSeq = 0;

  constructor(
    private readonly requests: MapsRequests,
    private settings: MapsSettings,
  ) {
    this.element.tabIndex = -1;
    this.element.addEventListener('keydown', (e) => this.onKey(e));
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
      this.render();
    } catch (e) {
      if (seq === this.loadSeq) this.clear(h('p', { class: 'error' }, e instanceof Error ? e.message : String(e)));
    }
  }

  private header(): HTMLElement {
    const l = this.layer;
    const m = this.maps;
    const dims = m ? (m.kind === 'map' ? `${m.channels} ch · ${m.fullHeight}×${m.fullWidth}` : `${m.channels} units`) : l ? `[${l.shape.join(', ')}]` : '';
    return h(
      'div',
      { class: 'maps-header' },
      h('strong', {}, l?.path ?? ''),
      h('span', { class: 'muted' }, dims),
      h('span', { class: 'spacer' }),
      dropdown<Colormap>('Colormap', [
        { value: 'viridis', label: 'viridis' },
        { value: 'magma', label: 'magma' },
        { value: 'gray', label: 'gray' },
      ], this.settings.colormap, (v) => this.update({ colormap: v })),
      dropdown<SortMode>('Sort channels', [
        { value: 'index', label: 'channel order' },
        { value: 'mean', label: 'by mean activation' },
        { value: 'zeros', label: 'by fraction of zeros' },
      ], this.settings.sort, (v) => this.update({ sort: v })),
      dropdown<NormMode>('Normalise', [
        { value: 'channel', label: 'per channel' },
        { value: 'layer', label: 'across the layer' },
      ], this.settings.norm, (v) => this.update({ norm: v })),
      button('Export PNG', () => void this.exportPng(), { secondary: true, title: 'Export this grid as a PNG file' }),
    );
  }

  private update(s: Partial<MapsSettings>): void {
    this.settings = { ...this.settings, ...s };
    this.requests.onSettings(this.settings);
    if (!this.maps) return;
    this.sortChannels();
    this.render();
  }

  private sortChannels(): void {
    const m = this.maps;
    if (!m) return;
    const idx = Array.from({ length: m.channels }, (_, i) => i);
    if (m.kind === 'map' && this.settings.sort !== 'index') {
      const key = this.settings.sort === 'mean' ? (i: number) => -m.stats[i].mean : (i: number) => -m.stats[i].zeros;
      idx.sort((a, b) => key(a) - key(b) || a - b);
    }
    this.order = idx;
  }

  private layerRange(m: LayerMaps): [number, number] {
    let lo = Infinity;
    let hi = -Infinity;
    for (const s of m.stats) {
      lo = Math.min(lo, s.min);
      hi = Math.max(hi, s.max);
    }
    return [lo, hi];
  }

  /**
   * Colours one channel into `out` (RGBA) at (x0, y0) of an image `stride`
   * wide, each value as a `scale` × `scale` block (crisp at any zoom).
   */
  private paintChannel(m: LayerMaps, c: number, out: Uint8ClampedArray, stride: number, x0: number, y0: number, lut: Uint8Array, range: [number, number] | undefined, scale = 1): void {
    const s = m.stats[c];
    const base = c * m.height * m.width;
    const span = range ? range[1] - range[0] || 1 : 1;
    for (let y = 0; y < m.height; y++) {
      for (let x = 0; x < m.width; x++) {
        const b = m.data[base + y * m.width + x];
        const t = range ? Math.max(0, Math.min(255, Math.round(((value(s, b) - range[0]) / span) * 255))) : b;
        const r = lut[t * 3];
        const g = lut[t * 3 + 1];
        const bl = lut[t * 3 + 2];
        for (let dy = 0; dy < scale; dy++) {
          let o = ((y0 + y * scale + dy) * stride + x0 + x * scale) * 4;
          for (let dx = 0; dx < scale; dx++, o += 4) {
            out[o] = r;
            out[o + 1] = g;
            out[o + 2] = bl;
            out[o + 3] = 255;
          }
        }
      }
    }
  }

  /**
   * The grid as a canvas at display resolution: channels in a near-square
   * grid, each scaled by the largest whole factor that fits the panel width,
   * with 2 px gaps that stay 2 px whatever the zoom.
   */
  private gridCanvas(m: LayerMaps, fitWidth = this.element.clientWidth || 800): { canvas: HTMLCanvasElement; cols: number; pitchX: number; pitchY: number } {
    const gap = 2;
    const cols = Math.ceil(Math.sqrt(m.channels));
    const rows = Math.ceil(m.channels / cols);
    const scale = Math.max(1, Math.min(12, Math.floor((Math.min(fitWidth, 1200) - (cols - 1) * gap) / (cols * m.width))));
    const pitchX = m.width * scale + gap;
    const pitchY = m.height * scale + gap;
    const W = cols * pitchX - gap;
    const H = rows * pitchY - gap;
    const canvas = h('canvas', { width: W, height: H, class: 'grid', role: 'img', 'aria-label': `${m.channels} feature maps of ${m.path}` });
    const ctx = canvas.getContext('2d');
    if (!ctx) return { canvas, cols, pitchX, pitchY };
    const img = ctx.createImageData(W, H);
    const lut = colormapLut(this.settings.colormap);
    const range = this.settings.norm === 'layer' ? this.layerRange(m) : undefined;
    this.order.forEach((c, k) => {
      this.paintChannel(m, c, img.data, W, (k % cols) * pitchX, Math.floor(k / cols) * pitchY, lut, range, scale);
    });
    ctx.putImageData(img, 0, 0);
    return { canvas, cols, pitchX, pitchY };
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
    const { canvas, cols, pitchX, pitchY } = this.gridCanvas(m);
    const stats = h('div', { class: 'channel-stats', 'aria-live': 'polite' }, 'Hover a channel for its statistics; click to open it.');
    const at = (e: MouseEvent): number | undefined => {
      const r = canvas.getBoundingClientRect();
      const x = Math.floor((((e.clientX - r.left) / r.width) * canvas.width) / pitchX);
      const y = Math.floor((((e.clientY - r.top) / r.height) * canvas.height) / pitchY);
      const k = y * cols + x;
      return k >= 0 && k < this.order.length && x < cols ? this.order[k] : undefined;
    };
    canvas.addEventListener('mousemove', (e) => {
      const c = at(e);
      stats.textContent = c === undefined ? '' : this.statsText(c);
    });
    canvas.addEventListener('click', (e) => {
      const c = at(e);
      if (c !== undefined) void this.zoom(c);
    });
    this.element.append(h('div', { class: 'grid-wrap' }, canvas), stats);
    this.element.dataset['drawMs'] = (performance.now() - t0).toFixed(1);
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
      this.paintChannel(m, c, img.data, m.width, 0, 0, colormapLut(this.settings.colormap), this.settings.norm === 'layer' ? this.layerRange(m) : undefined);
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
    const { canvas } = this.gridCanvas(this.full ?? m, 0);
    const blob = await new Promise<Blob | null>((resolve) => canvas.toBlob(resolve, 'image/png'));
    if (!blob) return;
    const bytes = new Uint8Array(await blob.arrayBuffer());
    await this.requests.exportPng(`${m.path.replace(/\//g, '_')}-${this.settings.colormap}.png`, bytes);
  }
}
