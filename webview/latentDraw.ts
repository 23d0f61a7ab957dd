/** The latent map's geometry and drawing, without the DOM around it: fitting the points to the canvas, drawing them by class, and a grid index for hover hit tests. */

/** Screen transform: screen = data * scale + offset. */
export interface View {
  scale: number;
  ox: number;
  oy: number;
}

/** The view that fits every point into width x height with `pad` pixels to spare (y up, as in a plot). */
export function fitView(xy: Float32Array, width: number, height: number, pad = 12): View {
  let minX = Infinity;
  let maxX = -Infinity;
  let minY = Infinity;
  let maxY = -Infinity;
  for (let i = 0; i < xy.length; i += 2) {
    const x = xy[i];
    const y = xy[i + 1];
    if (x < minX) minX = x;
    if (x > maxX) maxX = x;
    if (y < minY) minY = y;
    if (y > maxY) maxY = y;
  }
  if (!Number.isFinite(minX)) return { scale: 1, ox: width / 2, oy: height / 2 };
  const spanX = maxX - minX || 1;
  const spanY = maxY - minY || 1;
  const scale = Math.min((width - 2 * pad) / spanX, (height - 2 * pad) / spanY);
  // y is flipped below (oy - y * scale), so oy centres the y range.
  return { scale, ox: width / 2 - ((minX + maxX) / 2) * scale, oy: height / 2 + ((minY + maxY) / 2) * scale };
}

/** Screen positions of every point under `view` (x right, y down). */
export function toScreen(xy: Float32Array, view: View, out: Float32Array = new Float32Array(xy.length)): Float32Array {
  for (let i = 0; i < xy.length; i += 2) {
    out[i] = xy[i] * view.scale + view.ox;
    out[i + 1] = view.oy - xy[i + 1] * view.scale;
  }
  return out;
}

/** Point indices grouped by label (label -1 is group 0), for one fill per colour. */
export function groupByLabel(labels: Int32Array): number[][] {
  const groups: number[][] = [];
  for (let i = 0; i < labels.length; i++) {
    const g = Math.max(0, labels[i]);
    (groups[g] ??= []).push(i);
  }
  return groups;
}

export interface DrawStyle {
  colors: readonly string[];
  radius: number;
  /** Groups (labels) not drawn. */
  hidden?: ReadonlySet<number>;
}

/** Draws every point as a small square, one path and one fill per group. */
export function drawPoints(ctx: CanvasRenderingContext2D, screen: Float32Array, groups: number[][], style: DrawStyle, width: number, height: number): void {
  const r = style.radius;
  const d = 2 * r;
  groups.forEach((members, g) => {
    if (!members || style.hidden?.has(g)) return;
    ctx.fillStyle = style.colors[g % style.colors.length];
    ctx.beginPath();
    for (const i of members) {
      const x = screen[2 * i];
      const y = screen[2 * i + 1];
      if (x < -d || y < -d || x > width + d || y > height + d) continue;
      ctx.rect(x - r, y - r, d, d);
    }
    ctx.fill();
  });
}

/** A uniform grid over screen positions: the nearest point to the cursor in O(points per cell). */
export class GridIndex {
  private readonly cells = new Map<number, number[]>();

  constructor(
    private readonly screen: Float32Array,
    private readonly cell = 8,
    visible?: (i: number) => boolean,
  ) {
    for (let i = 0; i * 2 < screen.length; i++) {
      if (visible && !visible(i)) continue;
      const key = this.key(Math.floor(screen[2 * i] / cell), Math.floor(screen[2 * i + 1] / cell));
      const list = this.cells.get(key);
      if (list) list.push(i);
      else this.cells.set(key, [i]);
    }
  }

  private key(cx: number, cy: number): number {
    return (cx + 32768) * 65536 + (cy + 32768);
  }

  /** The point nearest (x, y) within `max` pixels, or -1. Later points win ties (they are drawn on top). */
  nearest(x: number, y: number, max: number): number {
    const c = this.cell;
    const r = Math.ceil(max / c);
    const cx = Math.floor(x / c);
    const cy = Math.floor(y / c);
    let best = -1;
    let bestD = max * max;
    for (let gx = cx - r; gx <= cx + r; gx++) {
      for (let gy = cy - r; gy <= cy + r; gy++) {
        const list = this.cells.get(this.key(gx, gy));
        if (!list) continue;
        for (const i of list) {
          const dx = this.screen[2 * i] - x;
          const dy = this.screen[2 * i + 1] - y;
          const dd = dx * dx + dy * dy;
          if (dd <= bestD) {
            bestD = dd;
            best = i;
          }
        }
      }
    }
    return best;
  }
}
