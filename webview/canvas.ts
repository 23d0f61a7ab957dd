/** Pictures on canvases: RGB pixels from the host, and a layer's channel grid. */
import type { Colormap } from '../src/protocol/colormap';
import { channelGrid } from '../src/protocol/colormap';
import type { LayerMaps } from '../src/protocol/inspect';
import { h } from './dom';

/** A canvas showing `rgb` (3 bytes a pixel, row by row), with the given attributes. */
export function rgbCanvas(width: number, height: number, rgb: ArrayLike<number>, attrs: Record<string, string> = {}): HTMLCanvasElement {
  const canvas = h('canvas', { width, height, ...attrs });
  const ctx = canvas.getContext('2d');
  if (ctx) {
    const img = ctx.createImageData(width, height);
    for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
      img.data[j] = rgb[i];
      img.data[j + 1] = rgb[i + 1];
      img.data[j + 2] = rgb[i + 2];
      img.data[j + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }
  return canvas;
}

/** A channel grid as a canvas, each value `scale` px (crisp: CSS pixelated). */
export function mapsCanvas(maps: LayerMaps, colormap: Colormap, label: string, maxWidth = 360): HTMLCanvasElement {
  const g = channelGrid(maps, colormap);
  const canvas = h('canvas', { width: g.width, height: g.height, class: 'cmp-grid', role: 'img', 'aria-label': label });
  const ctx = canvas.getContext('2d');
  if (ctx) {
    const img = ctx.createImageData(g.width, g.height);
    img.data.set(g.rgba);
    ctx.putImageData(img, 0, 0);
  }
  const scale = Math.max(1, Math.min(8, Math.floor(maxWidth / g.width)));
  canvas.style.width = `${g.width * scale}px`;
  canvas.style.height = `${g.height * scale}px`;
  return canvas;
}
