/**
 * The Latent tab at 10,000 points: projection time in the engine (as the
 * worker runs it: PCA and UMAP on the backend tfjs picks, wasm here) and
 * draw / hit-test time of the webview's own code (webview/latentMap.ts:
 * toScreen, GridIndex, drawPoints) in Chromium.
 *
 * Data: 10,000 embeddings in 10 Gaussian clusters (1,024 and 128 values
 * each), seeded. Usage:
 *   npx tsx scripts/benchLatent.ts [--points 10000] [--dim 1024] [--no-umap]
 * (Chromium at /usr/bin/chromium, or E2E_CHROMIUM: npm run e2e:setup)
 */
import * as esbuild from 'esbuild';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { initBackend } from '../src/engine/backend';
import { CosineIndex } from '../src/engine/embed/knn';
import { pca } from '../src/engine/embed/pca';
import { umap2d } from '../src/engine/embed/umap';
import { Rng } from '../src/engine/random';
import { median } from './stats';

const root = path.resolve(__dirname, '..');
const { values } = parseArgs({ options: { points: { type: 'string' }, dim: { type: 'string' }, 'no-umap': { type: 'boolean' } } });
const n = Number(values.points ?? 10000);
const dims = values.dim ? [Number(values.dim)] : [1024, 128];

function clusters(count: number, d: number, k: number, seed: number): { data: Float32Array; labels: Int32Array } {
  const rng = new Rng(seed);
  const centres = Array.from({ length: k }, () => Float32Array.from({ length: d }, () => 3 * rng.normal()));
  const data = new Float32Array(count * d);
  const labels = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const c = i % k;
    labels[i] = c;
    for (let j = 0; j < d; j++) data[i * d + j] = centres[c][j] + rng.normal();
  }
  return { data, labels };
}

const ms = (t0: number) => performance.now() - t0;
const out = (s: string) => process.stdout.write(s + '\n');

/** The page side: the webview's drawing code on a 900x560 canvas, timed. */
const entry = `
import { drawPoints, fitView, GridIndex, groupByLabel, toScreen } from './webview/latentDraw';
import { latentPalette } from './src/protocol/embed';
(globalThis as any).runDraw = (xyArr: number[], labelArr: number[], dpr: number, rounds: number) => {
  const xy = Float32Array.from(xyArr);
  const labels = Int32Array.from(labelArr);
  const w = 900, h = 560;
  const canvas = document.createElement('canvas');
  canvas.width = w * dpr; canvas.height = h * dpr;
  document.body.append(canvas);
  const ctx = canvas.getContext('2d')!;
  const groups = groupByLabel(labels);
  const res = { layout: [] as number[], draw: [] as number[], hit: 0 };
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    const view = fitView(xy, w, h);
    view.scale *= 1 + r * 0.05;
    const screen = toScreen(xy, view);
    const grid = new GridIndex(screen, 8);
    const t1 = performance.now();
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    drawPoints(ctx, screen, groups, { colors: latentPalette, radius: 1.5 }, w, h);
    ctx.getImageData(0, 0, 1, 1);
    const t2 = performance.now();
    res.layout.push(t1 - t0);
    res.draw.push(t2 - t1);
    if (r === rounds - 1) {
      const q0 = performance.now();
      let found = 0;
      for (let k = 0; k < 10000; k++) if (grid.nearest((k * 37) % w, (k * 53) % h, 8) >= 0) found++;
      res.hit = (performance.now() - q0) / 10000;
      (res as any).found = found;
    }
  }
  canvas.remove();
  return res;
};
`;

void (async () => {
  const backend = await initBackend({ prefer: 'auto' });
  out(`Backend: ${backend.name}; ${n} points`);
  let xyForDraw: Float32Array | undefined;
  let labelsForDraw: Int32Array | undefined;
  for (const d of dims) {
    const { data, labels } = clusters(n, d, 10, 5);
    let t0 = performance.now();
    const p = pca(data, n, d, 2, { seed: 7 });
    out(`PCA ${n} x ${d} -> 2: ${ms(t0).toFixed(0)} ms (${p.iterations + 1} iterations; axes explain ${(p.explained[0] * 100).toFixed(1)}% + ${(p.explained[1] * 100).toFixed(1)}%)`);
    t0 = performance.now();
    const index = new CosineIndex(data, d);
    const build = ms(t0);
    t0 = performance.now();
    for (let q = 0; q < 20; q++) index.neighbors(q * 97, 8);
    out(`kNN (cosine, exact) ${n} x ${d}: index ${build.toFixed(0)} ms, ${(ms(t0) / 20).toFixed(1)} ms per query`);
    xyForDraw ??= p.projection;
    labelsForDraw ??= labels;
    if (!values['no-umap']) {
      t0 = performance.now();
      const u = await umap2d(data, n, d, { seed: 7 });
      out(`UMAP ${n} x ${d} -> 2 (unit rows, PCA to 50, ${n >= 10000 ? 200 : 500} epochs): ${(ms(t0) / 1000).toFixed(1)} s`);
      xyForDraw = u;
    }
  }

  const bundle = await esbuild.build({
    stdin: { contents: entry, resolveDir: root, loader: 'ts', sourcefile: 'benchLatentEntry.ts' },
    bundle: true,
    write: false,
    format: 'iife',
    platform: 'browser',
    target: 'chrome120',
  });
  const browser = await chromium.launch({
    executablePath: process.env.E2E_CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.setContent('<!DOCTYPE html><html><body></body></html>');
    await page.addScriptTag({ content: bundle.outputFiles[0].text });
    for (const dpr of [1, 2]) {
      const r = await page.evaluate(
        ([xy, labels, scale]) => (globalThis as unknown as { runDraw(xy: number[], l: number[], dpr: number, rounds: number): { layout: number[]; draw: number[]; hit: number } }).runDraw(xy, labels, scale, 12),
        [Array.from(xyForDraw!), Array.from(labelsForDraw!), dpr] as const,
      );
      const warm = (xs: number[]) => xs.slice(2);
      out(
        `Chromium, ${n} points at ${dpr}x: layout (screen positions + hit grid) median ${median(warm(r.layout)).toFixed(1)} ms, draw median ${median(warm(r.draw)).toFixed(1)} ms (max ${Math.max(...warm(r.draw)).toFixed(1)}), hit test ${(r.hit * 1000).toFixed(1)} µs per hover`,
      );
    }
  } finally {
    await browser.close();
  }
})();
