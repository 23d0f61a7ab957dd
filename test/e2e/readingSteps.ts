// The workspace and page probes of readingWideModels.test.ts: a wide,
// long-named model and two fine-tuned siblings next to the usual workspace,
// and what the scenarios read from the inspector (focus, accessible names,
// pixels, colours).
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { Frame, Locator, Page } from 'playwright-core';
import { fixture } from '../fixtures/models';
import { waitUntil } from './util';
import { makeLayerLensWorkspace, type LayerLensWorkspace } from './workspace';

// Browser-side shapes for evaluate() callbacks (the project's lib has no DOM).
interface El {
  readonly tagName: string;
  readonly dataset: Record<string, string | undefined>;
  readonly scrollWidth: number;
  readonly clientWidth: number;
  readonly textContent: string | null;
  readonly parentElement: El | null;
  value: string;
  closest(selector: string): El | null;
  getAttribute(name: string): string | null;
  dispatchEvent(e: unknown): boolean;
}
interface Canvas {
  readonly width: number;
  readonly height: number;
  getContext(kind: '2d'): { getImageData(x: number, y: number, w: number, h: number): { data: ArrayLike<number> } } | null;
}
declare const document: { activeElement: El | null; getElementById(id: string): El | null };
declare function getComputedStyle(el: El): { color: string; backgroundColor: string };
declare const Event: new (type: string, init?: { bubbles?: boolean }) => unknown;

/** The wide model: a TM-like Sequential(mobilenet_mini, gap, head) with a 1280-channel backbone output. */
export const WIDE = {
  first: 'mobilenet_mini/Conv1',
  wideLayer: 'mobilenet_mini/out_relu',
  depthwise: 'mobilenet_mini/block_1_depthwise_expanded_conv',
  depthwiseBn: 'mobilenet_mini/block_1_depthwise_expanded_conv_BN',
  rows: ['mobilenet_mini', 'mobilenet_mini/input_1', 'mobilenet_mini/Conv1'],
  last: 'head',
  total: 19_555,
  head: 1280 * 3 + 3,
};

/** Two fine-tuned children of tiny-cnn from one afternoon: the same name up to the time. */
export const SIBLINGS = [
  { name: 'tiny-cnn-finetuned-20261203-1842', label: 'tiny-cnn · 3 Dec 18:42', created: new Date(2026, 11, 3, 18, 42), valAcc: [0.5, 0.7, 0.6], lead: 'val acc 70% · fine-tuned · ' },
  { name: 'tiny-cnn-finetuned-20261203-1907', label: 'tiny-cnn · 3 Dec 19:07', created: new Date(2026, 11, 3, 19, 7), valAcc: [0.4, 0.45, 0.55], lead: 'val acc 55% · fine-tuned · ' },
];

export interface ReadingWorkspace extends LayerLensWorkspace {
  readonly wide: string;
  readonly wideRecipe: string;
}

export async function makeReadingWorkspace(): Promise<ReadingWorkspace> {
  const ws = await makeLayerLensWorkspace();
  const at = (...p: string[]) => path.join(ws.dir, ...p);
  await fs.cp(fixture('wide'), at('models', 'wide'), { recursive: true });
  for (const [i, s] of SIBLINGS.entries()) {
    const dir = at('models', s.name);
    await fs.cp(fixture('tiny-cnn'), dir, { recursive: true });
    const meta = JSON.parse(await fs.readFile(path.join(dir, 'metadata.json'), 'utf8')) as Record<string, unknown>;
    await fs.writeFile(path.join(dir, 'metadata.json'), JSON.stringify({ ...meta, createdBy: 'Layer Lens', created: s.created.toISOString(), dataset: '../../data/stripes' }));
    const epochs = s.valAcc.map((v, k) => ({ epoch: k + 1, loss: 1, acc: 0.5, val_loss: 1, val_acc: v, lr: 0.001, imagesPerSec: 100, seconds: 1 }));
    // The first kept its best epoch (2), the second its last.
    await fs.writeFile(path.join(dir, 'metrics.json'), JSON.stringify({ monitor: 'val_loss', bestEpoch: 2, restored: i === 0, epochs }));
  }
  return { ...ws, wide: at('models', 'wide', 'model.json'), wideRecipe: at('models', 'wide', 'layerlens.json') };
}

/** What has the keyboard focus in the frame: the tag, the layer row it is in (if any), and whether it is the list itself. */
export async function focused(frame: Frame): Promise<{ tag: string; inList: boolean; isList: boolean; inRow: boolean }> {
  return frame.evaluate(() => {
    const a = document.activeElement;
    return {
      tag: a?.tagName.toLowerCase() ?? '',
      isList: !!a && a.getAttribute('role') === 'listbox',
      inList: !!a?.closest('.layer-viewport'),
      inRow: !!a?.closest('.layer-row'),
    };
  });
}

/** The layer the list's active option (aria-activedescendant) stands for, and that option's accessible name. */
export async function activeOption(frame: Frame): Promise<{ path: string; label: string }> {
  return frame.locator('.layer-viewport').evaluate((list: El) => {
    const id = list.getAttribute('aria-activedescendant');
    const opt = id ? document.getElementById(id) : null;
    return { path: opt?.dataset['path'] ?? '', label: opt?.getAttribute('aria-label') ?? '' };
  });
}

export async function waitForActive(frame: Frame, layerPath: string): Promise<string> {
  return waitUntil(`the list's active option to be ${layerPath}`, async () => {
    const a = await activeOption(frame);
    return a.path === layerPath ? a.label : undefined;
  });
}

/** A name cell's shown text, its title, and whether the text fits its cell. */
export async function nameCell(frame: Frame, layerPath: string): Promise<{ text: string; title: string; fits: boolean }> {
  return frame.locator(`.layer-row[data-path="${layerPath}"] .layer-name`).evaluate((el: El) => ({
    text: el.textContent ?? '',
    title: el.getAttribute('title') ?? '',
    fits: el.scrollWidth <= el.clientWidth + 1,
  }));
}

/** The largest spread between a pixel's channels on a canvas (0 for a grey picture). */
export async function canvasChroma(canvas: Locator): Promise<number> {
  return canvas.evaluate((c: Canvas) => {
    const ctx = c.getContext('2d');
    if (!ctx || c.width === 0) return 0;
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let most = 0;
    for (let i = 0; i < d.length; i += 4) most = Math.max(most, Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]));
    return most;
  });
}

/** Sets a range input as a user dragging it does (value, then an input event). */
export async function setRange(input: Locator, value: number): Promise<void> {
  await input.evaluate((el: El, v: number) => {
    el.value = String(v);
    el.dispatchEvent(new Event('input', { bubbles: true }));
  }, value);
}

/** The colours of an element and of the first opaque background behind it, as [r, g, b]. */
export async function barAndBackground(bar: Locator): Promise<{ bar: number[]; background: number[] }> {
  const raw = await bar.evaluate((el: El) => {
    let bg = 'rgba(0, 0, 0, 0)';
    for (let p: El | null = el.parentElement?.parentElement ?? null; p; p = p.parentElement) {
      const c = getComputedStyle(p).backgroundColor;
      if (!/rgba\(.*,\s*0\)$/.test(c) && c !== 'transparent') {
        bg = c;
        break;
      }
    }
    return { bar: getComputedStyle(el).backgroundColor, background: bg };
  });
  const rgb = (c: string) => (c.match(/[\d.]+/g) ?? []).slice(0, 3).map(Number);
  return { bar: rgb(raw.bar), background: rgb(raw.background) };
}

/** WCAG contrast ratio of two sRGB colours. */
export function contrast(a: number[], b: number[]): number {
  const lum = (c: number[]) => {
    const [r, g, bl] = c.map((v) => {
      const s = v / 255;
      return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

/** The text of the hover VS Code shows for a tree row (its tooltip). */
export async function treeTooltip(page: Page, row: Locator, expected: RegExp): Promise<string> {
  return waitUntil('the tree item\'s tooltip', async () => {
    await page.mouse.move(0, 0);
    await row.locator('.label-name').hover();
    const hover = page.locator('.monaco-hover, .workbench-hover').filter({ hasText: expected }).first();
    try {
      await hover.waitFor({ state: 'visible', timeout: 4_000 });
    } catch {
      return undefined;
    }
    return ((await hover.textContent()) ?? '').replace(/\s+/g, ' ').trim();
  }, 40_000);
}
