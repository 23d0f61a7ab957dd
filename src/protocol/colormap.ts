/**
 * Colormaps and channel grids as plain bytes. No tfjs, no Node, no DOM: the
 * CLI's PNG export and the webview's canvas draw with the same code, so a
 * grid looks the same in both.
 *
 * viridis and magma are matplotlib's perceptually uniform maps, given here by
 * their colours at 0, 1/8, ..., 1 and interpolated linearly in between: 9
 * stops keep every entry within a few 8-bit steps of the 256-entry originals,
 * which is below what the eye separates in a heatmap, and the tables stay
 * small enough to read.
 */
import type { Colormap } from './inspect';

export type { Colormap };

type Rgb = readonly [number, number, number];

const stops: Record<Exclude<Colormap, 'gray'>, readonly Rgb[]> = {
  viridis: [
    [68, 1, 84],
    [71, 44, 122],
    [59, 81, 139],
    [44, 113, 142],
    [33, 144, 141],
    [39, 173, 129],
    [92, 200, 99],
    [170, 220, 50],
    [253, 231, 37],
  ],
  magma: [
    [0, 0, 4],
    [28, 16, 68],
    [79, 18, 123],
    [129, 37, 129],
    [181, 54, 122],
    [229, 80, 100],
    [251, 135, 97],
    [254, 194, 135],
    [252, 253, 191],
  ],
};

export const colormaps: readonly Colormap[] = ['viridis', 'magma', 'gray'];

export function isColormap(v: unknown): v is Colormap {
  return typeof v === 'string' && (colormaps as readonly string[]).includes(v);
}

const luts = new Map<Colormap, Uint8Array>();

/** 256 RGB triples: entry i is the colour of the value i / 255. */
export function colormapLut(name: Colormap): Uint8Array {
  const hit = luts.get(name);
  if (hit) return hit;
  const lut = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    if (name === 'gray') {
      lut.fill(i, i * 3, i * 3 + 3);
      continue;
    }
    const s = stops[name];
    const x = (i / 255) * (s.length - 1);
    const k = Math.min(s.length - 2, Math.floor(x));
    const f = x - k;
    for (let c = 0; c < 3; c++) lut[i * 3 + c] = Math.round(s[k][c] + (s[k + 1][c] - s[k][c]) * f);
  }
  luts.set(name, lut);
  return lut;
}

/** The part of LayerMaps a grid needs (structurally compatible with it). */
export interface QuantisedMaps {
  channels: number;
  height: number;
  width: number;
  /** channels × height × width bytes, channel-major, each channel scaled to its own min/max. */
  data: Uint8Array;
}

export interface GridImage {
  width: number;
  height: number;
  cols: number;
  rows: number;
  /** RGBA, row-major; the 1 px gaps are transparent. */
  rgba: Uint8Array;
}

/** Columns and rows of a near-square grid of n tiles (cols >= rows). */
export function gridShape(n: number): { cols: number; rows: number } {
  const cols = Math.max(1, Math.ceil(Math.sqrt(n)));
  return { cols, rows: Math.max(1, Math.ceil(n / cols)) };
}

/**
 * Tiles the channels in a near-square grid with 1 px transparent gaps,
 * coloured through `colormap`. `order` picks and orders channels (e.g. sorted
 * by mean); all channels in index order by default.
 */
export function channelGrid(maps: QuantisedMaps, colormap: Colormap, order?: readonly number[]): GridImage {
  const { height: h, width: w } = maps;
  const list = order ?? Array.from({ length: maps.channels }, (_, i) => i);
  const { cols, rows } = gridShape(list.length);
  const width = cols * w + (cols - 1);
  const height = rows * h + (rows - 1);
  const rgba = new Uint8Array(width * height * 4);
  const lut = colormapLut(colormap);
  list.forEach((ch, k) => {
    const x0 = (k % cols) * (w + 1);
    const y0 = Math.floor(k / cols) * (h + 1);
    const base = ch * h * w;
    for (let y = 0; y < h; y++) {
      let o = ((y0 + y) * width + x0) * 4;
      for (let x = 0; x < w; x++, o += 4) {
        const v = maps.data[base + y * w + x] * 3;
        rgba[o] = lut[v];
        rgba[o + 1] = lut[v + 1];
        rgba[o + 2] = lut[v + 2];
        rgba[o + 3] = 255;
      }
    }
  });
  return { width, height, cols, rows, rgba };
}
