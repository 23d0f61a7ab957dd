/**
 * How long the inspector takes to draw a feature-map grid in Chromium: the
 * webview's own FeatureMapsView (colormap, scaling, canvas) on a synthetic
 * 64-channel layer, full size 112x112 and as sent for the grid (64x64).
 * Target: a 64-channel 112x112 grid in under 100 ms.
 *
 * Usage: npx tsx scripts/benchGridDraw.ts   (needs /usr/bin/chromium: npm run e2e:setup)
 */
import * as esbuild from 'esbuild';
import * as path from 'node:path';
import { chromium } from 'playwright-core';
import { median } from './stats';

const root = path.resolve(__dirname, '..');

void (async () => {
  const bundle = await esbuild.build({
    entryPoints: [path.join(root, 'webview/bench/gridDrawEntry.ts')],
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
    await page.setContent('<!DOCTYPE html><html><body style="width:900px"></body></html>');
    await page.addScriptTag({ content: bundle.outputFiles[0].text });
    for (const [channels, size] of [
      [64, 112],
      [64, 64],
      [256, 28],
    ] as const) {
      const times = await page.evaluate(([c, s]) => (globalThis as unknown as { runBench(c: number, s: number, r: number): Promise<number[]> }).runBench(c, s, 12), [channels, size] as const);
      const warm = times.slice(2);
      process.stdout.write(`${channels} channels ${size}x${size}: median ${median(warm).toFixed(1)} ms, max ${Math.max(...warm).toFixed(1)} ms (target < 100 ms)\n`);
    }
  } finally {
    await browser.close();
  }
})();
