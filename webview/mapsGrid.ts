/**
 * The feature-map grid's geometry and pixels: how many columns and how large
 * a tile fills the panel's width, and the channels painted into one canvas
 * with a colormap (crisp at any whole zoom factor, 2 px gaps).
 */
import type { ChannelStats, Colormap, LayerMaps } from '../src/protocol/inspect';
import { colormapLut } from '../src/protocol/colormap';
import { h } from './dom';

/** Layers with more channels than this show a page of them, most active first (in the auto order). */
export const widePage = 64;
const gap = 2;
const minTile = 40;
const maxTile = 200;
const maxScale = 24;

/** Value of byte `b` of a channel, undoing the per-channel quantisation. */
export function value(s: ChannelStats, b: number): number {
  return s.min + (b / 255) * (s.max - s.min);
}

export function layerRange(m: LayerMaps): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const s of m.stats) {
    lo = Math.min(lo, s.min);
    hi = Math.max(hi, s.max);
  }
  return [lo, hi];
}

export interface GridLayout {
  cols: number;
  rows: number;
  /** Display pixels per value. */
  scale: number;
  pitchX: number;
  pitchY: number;
  width: number;
  height: number;
}

/**
 * The layout of `n` tiles of `tileW`×`tileH` values in `fitWidth` px: tiles
 * as large as fill the width in a near-square grid (between 40 and 200 px,
 * times 1.4 per `zoom` step), then the columns balanced so the last row is
 * not a straggler. `fitWidth` 0 means one pixel per value (for export).
 */
export function gridLayout(n: number, tileW: number, tileH: number, fitWidth: number, zoom = 0): GridLayout {
  let scale = 1;
  let cols = Math.max(1, Math.ceil(Math.sqrt(n)));
  if (fitWidth > 0) {
    const square = (fitWidth + gap) / Math.max(1, Math.ceil(Math.sqrt(n))) - gap;
    const tile = Math.max(minTile, Math.min(maxTile, square)) * 1.4 ** zoom;
    scale = Math.max(1, Math.min(maxScale, Math.round(tile / tileW)));
    const fit = Math.max(1, Math.floor((fitWidth + gap) / (tileW * scale + gap)));
    cols = Math.min(n, fit);
    cols = Math.max(1, Math.ceil(n / Math.ceil(n / Math.max(1, cols))));
  }
  const rows = Math.max(1, Math.ceil(n / cols));
  const pitchX = tileW * scale + gap;
  const pitchY = tileH * scale + gap;
  return { cols, rows, scale, pitchX, pitchY, width: cols * pitchX - gap, height: rows * pitchY - gap };
}

/**
 * Colours one channel into `out` (RGBA) at (x0, y0) of an image `stride`
 * wide, each value as a `scale` × `scale` block (crisp at any zoom).
 */
export function paintChannel(m: LayerMaps, c: number, out: Uint8ClampedArray, stride: number, x0: number, y0: number, lut: Uint8Array, range: [number, number] | undefined, scale = 1): void {
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

/** The channels `order` of `m` as one canvas laid out by `layout`. */
export function gridCanvas(m: LayerMaps, order: readonly number[], layout: GridLayout, colormap: Colormap, norm: 'channel' | 'layer', label: string): HTMLCanvasElement {
  const { width: W, height: H, cols, pitchX, pitchY, scale } = layout;
  const canvas = h('canvas', { width: W, height: H, class: 'grid', role: 'img', 'aria-label': label });
  const ctx = canvas.getContext('2d');
  if (!ctx) return canvas;
  const img = ctx.createImageData(W, H);
  const lut = colormapLut(colormap);
  const range = norm === 'layer' ? layerRange(m) : undefined;
  order.forEach((c, k) => paintChannel(m, c, img.data, W, (k % cols) * pitchX, Math.floor(k / cols) * pitchY, lut, range, scale));
  ctx.putImageData(img, 0, 0);
  return canvas;
}
