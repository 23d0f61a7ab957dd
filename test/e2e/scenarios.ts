// What the Layer Lens scenarios share: one session per describe(), and the
// steps a user takes in the Models view, the inspector and the output channel.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import type { Frame, Locator, Page } from 'playwright-core';
import { startSession, type Session } from './harness';
import { debug, REPO_ROOT, TIMEOUT, waitUntil, type Theme } from './util';
import { openView, pickQuickItem, runCommand, viewPane, webviewFrame } from './workbench';
import { makeLayerLensWorkspace, type LayerLensWorkspace } from './workspace';

// Browser-side shapes for the evaluate() callbacks (the project's lib has no DOM).
interface ImageDataLike {
  readonly data: ArrayLike<number>;
}
interface CanvasLike {
  readonly width: number;
  readonly height: number;
  getContext(kind: '2d'): { getImageData(x: number, y: number, w: number, h: number): ImageDataLike } | null;
}
interface CheckboxLike {
  readonly checked: boolean;
}

/** Timeouts for work the engine does (worker start, wasm init, inspection, training) on a busy 2-core machine. */
export const SLOW = 90_000;
export const SCENARIO_TIMEOUT = 180_000;

// tiny-cnn's parameters, counted from its architecture (test/fixtures/models.ts),
// not read from the extension: conv1 3x3x3x4+4, bn1 4x(gamma, beta, mean, variance)
// of which gamma and beta train, conv2 3x3x4x8+8, head 8x3+3.
export const TINY = {
  layers: ['conv1', 'bn1', 'pool1', 'conv2', 'gap', 'head'],
  conv1: 3 * 3 * 3 * 4 + 4,
  bn1: 4 * 4,
  bn1Trainable: 2 * 4,
  conv2: 3 * 3 * 4 * 8 + 8,
  head: 8 * 3 + 3,
  labels: ['circle', 'square', 'triangle'],
};
export const TINY_TOTAL = TINY.conv1 + TINY.bn1 + TINY.conv2 + TINY.head; // 451
export const TINY_TRAINABLE = TINY_TOTAL - (TINY.bn1 - TINY.bn1Trainable); // 443

export const fmt = (n: number) => n.toLocaleString('en-US');
export const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
export const exactly = (s: string) => new RegExp(`^\\s*${escapeRegExp(s)}\\s*$`);

// ---------------------------------------------------------------------------
// Sessions shared by the scenarios of one describe()

export interface Shared<W = LayerLensWorkspace> {
  session: Session;
  ws: W;
  page: Page;
}

/**
 * Starts one session for the scenarios of a describe() and tears it down
 * after them. A failing scenario leaves a screenshot and the logs in
 * test-results/e2e/<scenario>/.
 */
export function sharedSession<W extends { dir: string; remove(): Promise<void> } = LayerLensWorkspace>(
  name: string,
  theme: Theme,
  options: { viewport?: { width: number; height: number }; settings?: Record<string, unknown>; workspace?: () => Promise<W> } = {},
): { get(): Shared<W>; scenario(title: string, body: (s: Shared<W>) => Promise<void>): void } {
  let shared: Shared<W> | undefined;
  before(
    async () => {
      const ws = await (options.workspace ?? (makeLayerLensWorkspace as unknown as () => Promise<W>))();
      debug(`${name}: workspace ${ws.dir}`);
      try {
        const session = await startSession({ workspace: ws.dir, theme, viewport: options.viewport ?? { width: 1400, height: 900 }, settings: options.settings });
        shared = { session, ws, page: session.page };
      } catch (error) {
        await ws.remove();
        throw error;
      }
    },
    { timeout: TIMEOUT.server + TIMEOUT.workbench * 2 },
  );
  after(
    async () => {
      if (!shared) return;
      await shared.session.close();
      await shared.ws.remove();
    },
    { timeout: 60_000 },
  );
  const get = () => {
    if (!shared) throw new Error(`the ${name} session did not start`);
    return shared;
  };
  return {
    get,
    scenario(title, body) {
      test(title, { timeout: SCENARIO_TIMEOUT }, async () => {
        const s = get();
        const slug = `${name}-${title}`.replace(/[^\w.-]+/g, '_').slice(0, 60);
        const t0 = Date.now();
        try {
          await closeLeftovers(s.page);
          await body(s);
        } catch (error) {
          await s.session.screenshot(`${slug}-failure`).catch(() => undefined);
          const dir = await s.session.saveLogs(slug).catch(() => undefined);
          if (error instanceof Error && dir) error.message += `\n(screenshot and logs in ${path.relative(REPO_ROOT, dir)})`;
          throw error;
        } finally {
          debug(`${title}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
        }
      });
    },
  };
}

/** Closes what an earlier failed scenario may have left open (a modal dialog, a quick pick), so the next starts clean. */
export async function closeLeftovers(page: Page): Promise<void> {
  for (const selector of ['.monaco-dialog-box', '.quick-input-widget']) {
    const open = page.locator(selector).first();
    if (await open.isVisible()) {
      await page.keyboard.press('Escape');
      await open.waitFor({ state: 'hidden', timeout: 5_000 }).catch(() => undefined);
    }
  }
}

// ---------------------------------------------------------------------------
// The Models view

export function modelsPane(page: Page): Locator {
  return viewPane(page, 'Models');
}

/** The row of a Models view item by its label (and tree depth, 1 = model). */
export function treeRow(page: Page, label: string, level?: number): Locator {
  const levelAttr = level === undefined ? '' : `[aria-level="${level}"]`;
  return modelsPane(page)
    .locator(`.monaco-list-row${levelAttr}`, { has: page.locator('.label-name', { hasText: exactly(label) }) })
    .first();
}

export async function rowDescription(row: Locator): Promise<string> {
  return ((await row.locator('.label-description').first().textContent({ timeout: 2_000 })) ?? '').trim();
}

/** Shows the Models view with room to spare: the workspace's file tree section collapsed. */
export async function showModelsView(page: Page, ws: { dir: string }): Promise<void> {
  await openView(page, 'Models');
  await modelsPane(page).locator('.pane-header[aria-expanded="true"]').waitFor({ state: 'visible' });
  const folderHeader = page
    .locator('.pane-header[aria-expanded="true"]', {
      has: page.locator('.title', { hasText: new RegExp(`^\\s*${escapeRegExp(path.basename(ws.dir))}\\s*$`, 'i') }),
    })
    .first();
  if ((await folderHeader.count()) > 0) await folderHeader.click();
}

/** Expands a tree item (by its twistie) and waits until VS Code says it is expanded. */
export async function expand(row: Locator): Promise<void> {
  await row.waitFor({ state: 'visible', timeout: SLOW });
  if ((await row.getAttribute('aria-expanded')) !== 'true') await row.locator('.monaco-tl-twistie').click();
  await waitUntil('the tree item to expand', async () => ((await row.getAttribute('aria-expanded')) === 'true' ? true : undefined));
}

export async function collapse(row: Locator): Promise<void> {
  if ((await row.getAttribute('aria-expanded')) === 'true') await row.locator('.monaco-tl-twistie').click();
  await waitUntil('the tree item to collapse', async () => ((await row.getAttribute('aria-expanded')) === 'false' ? true : undefined));
}

/** Labels of the rows right under `parent` (the next rows one level deeper, in order). */
export async function childLabels(page: Page, parent: Locator): Promise<string[]> {
  const level = Number(await parent.getAttribute('aria-level'));
  const index = Number(await parent.getAttribute('data-index'));
  const rows = await modelsPane(page)
    .locator('.monaco-list-row')
    .evaluateAll((els: { getAttribute(n: string): string | null; querySelector(s: string): { textContent: string | null } | null }[]) =>
      els.map((e) => ({
        index: Number(e.getAttribute('data-index')),
        level: Number(e.getAttribute('aria-level')),
        label: (e.querySelector('.label-name')?.textContent ?? '').trim(),
      })),
    );
  rows.sort((a, b) => a.index - b.index);
  const out: string[] = [];
  for (const r of rows.filter((x) => x.index > index)) {
    if (r.level <= level) break;
    if (r.level === level + 1) out.push(r.label);
  }
  return out;
}

export function treeCheckbox(row: Locator): Locator {
  return row.locator('.custom-view-tree-node-item-checkbox');
}

export async function waitForTreeCheckbox(row: Locator, checked: boolean): Promise<void> {
  await waitUntil(`the tree checkbox to be ${checked ? 'checked' : 'unchecked'}`, async () =>
    (await treeCheckbox(row).getAttribute('aria-checked')) === String(checked) ? true : undefined,
  SLOW);
}

// ---------------------------------------------------------------------------
// The inspector webview

/** The inspector's content frame, once its layer rows show. */
export async function inspectorFrame(page: Page, selector = '.layer-row'): Promise<Frame> {
  return webviewFrame(page, { selector, timeout: SLOW });
}

export async function text(locator: Locator): Promise<string> {
  return ((await locator.textContent({ timeout: 5_000 })) ?? '').replace(/\s+/g, ' ').trim();
}

/** Waits until the locator's text matches. */
export async function waitForText(locator: Locator, expected: string | RegExp, timeout = SLOW): Promise<string> {
  let last = '';
  try {
    return await waitUntil(
      `text ${String(expected)}`,
      async () => {
        last = await text(locator.first());
        return (typeof expected === 'string' ? last === expected : expected.test(last)) ? last : undefined;
      },
      timeout,
      200,
    );
  } catch (error) {
    throw new Error(`${error instanceof Error ? error.message : String(error)} (last seen: ${JSON.stringify(last)})`);
  }
}

/** The header's "Y params (X trainable)" and the totals line for `trainable` of tiny-cnn's parameters. */
export function countsText(trainable: number): { params: string; totals: string } {
  return {
    params: `${fmt(TINY_TOTAL)} params (${fmt(trainable)} trainable)`,
    totals: `${TINY.layers.length} layers · ${fmt(trainable)} of ${fmt(TINY_TOTAL)} parameters trainable`,
  };
}

export async function waitForCounts(frame: Frame, trainable: number): Promise<void> {
  const want = countsText(trainable);
  await waitForText(frame.locator('header .params'), want.params);
  await waitForText(frame.locator('.totals'), want.totals);
}

/** The inspector's layer names, in the order of the list. */
export async function inspectorLayers(frame: Frame): Promise<string[]> {
  const rows = await frame.locator('.layer-row').evaluateAll(
    (els: { dataset: Record<string, string | undefined>; checkVisibility(): boolean; style: { top: string } }[]) =>
      els.filter((e) => e.checkVisibility()).map((e) => ({ path: e.dataset['path'] ?? '', top: parseFloat(e.style.top) })),
  );
  return rows.sort((a, b) => a.top - b.top).map((r) => r.path);
}

export function inspectorRow(frame: Frame, layer: string): Locator {
  return frame.locator(`.layer-row[data-path="${layer}"]`);
}

export async function inspectorFrozen(frame: Frame, layer: string): Promise<boolean> {
  return inspectorRow(frame, layer)
    .locator('vscode-checkbox.freeze')
    .evaluate((c: CheckboxLike) => c.checked);
}

export async function waitForInspectorFrozen(frame: Frame, layer: string, frozen: boolean): Promise<void> {
  await waitUntil(`${layer}'s freeze checkbox in the inspector to be ${frozen ? 'checked' : 'unchecked'}`, async () =>
    (await inspectorFrozen(frame, layer)) === frozen ? true : undefined,
  SLOW);
}

/** Size and number of distinct colours of the feature-map grid canvas, read from its pixels. */
export async function gridPixels(frame: Frame): Promise<{ width: number; height: number; colours: number }> {
  const grid = frame.locator('canvas.grid');
  await grid.waitFor({ state: 'visible', timeout: SLOW });
  return grid.evaluate((canvas: CanvasLike) => {
    const ctx = canvas.getContext('2d');
    if (!ctx || canvas.width === 0 || canvas.height === 0) return { width: canvas.width, height: canvas.height, colours: 0 };
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    const colours = new Set<number>();
    for (let i = 0; i < data.length; i += 4) colours.add((data[i] << 24) | (data[i + 1] << 16) | (data[i + 2] << 8) | data[i + 3]);
    return { width: canvas.width, height: canvas.height, colours: colours.size };
  });
}

export async function assertGridDrawn(frame: Frame, layer: string): Promise<void> {
  await waitForText(frame.locator('.maps-header strong'), layer);
  const grid = await gridPixels(frame);
  assert.ok(grid.width > 0 && grid.height > 0, `the feature-map grid has a size (${grid.width}x${grid.height})`);
  assert.ok(grid.colours > 1, `the feature-map grid is not blank: ${grid.colours} distinct colour(s) in ${grid.width}x${grid.height} pixels`);
}

/** The predictions list: every item a label of the model and a percentage; at least one. */
export async function assertPredictions(frame: Frame, labels: readonly string[]): Promise<string[]> {
  const items = frame.locator('.predictions li');
  await items.first().waitFor({ state: 'visible', timeout: SLOW });
  const texts = (await items.allTextContents()).map((t) => t.replace(/\s+/g, ' ').trim());
  assert.ok(texts.length >= 1, 'at least one prediction');
  for (const t of texts) {
    assert.match(t, /^(\S+) ?(\d+(\.\d+)?)%$/, `prediction ${JSON.stringify(t)} is "label NN.N%"`);
    assert.ok(labels.some((l) => t.startsWith(l)), `prediction ${JSON.stringify(t)} names one of ${labels.join(', ')}`);
  }
  const total = texts.reduce((sum, t) => sum + Number(/(\d+(\.\d+)?)%$/.exec(t)?.[1] ?? 0), 0);
  assert.ok(total > 0 && total <= 100.5, `the probabilities add up to at most 100% (${total})`);
  return texts;
}

// ---------------------------------------------------------------------------
// Commands through the palette

/** Runs a palette command that asks "which model?" in a quick pick, and picks `model`. */
export async function runModelCommand(page: Page, title: string, model: string): Promise<void> {
  await runCommand(page, title);
  await pickQuickItem(page, model);
}

/**
 * Runs a palette command about "the model of the active inspector". The
 * command may ask which model (a quick pick): then `model` is picked. Done
 * when the quick pick was answered or `done()` holds.
 */
export async function runCommandForActiveModel(page: Page, title: string, model: string, done: () => Promise<boolean>): Promise<void> {
  await runCommand(page, title);
  const asked = await waitUntil(
    `"${title}" to ask for the model or to take effect`,
    async () => {
      if (await done()) return 'done';
      const picker = page.locator('.quick-input-widget .quick-input-list .monaco-list-row', { has: page.locator('.label-name', { hasText: exactly(model) }) });
      return (await picker.count()) > 0 && (await picker.first().isVisible()) ? 'asked' : undefined;
    },
    SLOW,
    200,
  );
  if (asked === 'asked') await pickQuickItem(page, model);
}

// ---------------------------------------------------------------------------
// Files

export async function hashes(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await fs.readdir(dir)).sort()) {
    const file = path.join(dir, name);
    if ((await fs.stat(file)).isFile()) out[name] = createHash('sha256').update(await fs.readFile(file)).digest('hex');
  }
  return out;
}

export async function readRecipeFile(file: string): Promise<{ freeze?: string[]; finetune?: { epochs?: number; batchSize?: number } }> {
  return JSON.parse(await fs.readFile(file, 'utf8')) as { freeze?: string[]; finetune?: { epochs?: number; batchSize?: number } };
}

/** Saves a screenshot of the workbench into test-results/e2e/ and, when asked to, into media/screenshots/. */
export async function readmeScreenshot(session: Session, theme: Theme): Promise<void> {
  const file = await session.screenshot(`inspector-${theme}`);
  const size = (await fs.stat(file)).size;
  assert.ok(size > 20_000, `the ${theme} screenshot has content (${size} bytes)`);
  if (process.env.LAYER_LENS_UPDATE_SCREENSHOTS) {
    const target = path.join(REPO_ROOT, 'media', 'screenshots', `inspector-${theme}.png`);
    await fs.mkdir(path.dirname(target), { recursive: true });
    await fs.copyFile(file, target);
  }
}

export const isCspViolation = (e: string) => /content security policy/i.test(e);

/**
 * No CSP violations (and no Models view errors) in the browser console; then
 * proof that the check can fail: an inline style attribute set in the
 * inspector, which its CSP blocks, must show up as a violation.
 */
export async function assertCleanConsole(session: Session): Promise<void> {
  const csp = session.pageErrors.filter(isCspViolation);
  assert.deepEqual(csp, [], `CSP violations in the browser console:\n${csp.join('\n')}`);
  const tree = session.pageErrors.filter((e) => /already registered/.test(e));
  assert.deepEqual(tree, [], `Models view errors in the browser console:\n${tree.join('\n')}`);

  const frame = await inspectorFrame(session.page);
  await frame.locator('#root').evaluate((root: { setAttribute(name: string, value: string): void }) => root.setAttribute('style', 'outline: 1px solid red'));
  await waitUntil('the console to report the deliberate CSP violation', () => (session.pageErrors.some(isCspViolation) ? true : undefined));
}

// ---------------------------------------------------------------------------
// Scenarios
