// Layer Lens in a real VS Code (code-server + Chromium, see harness.ts), the
// way a user meets it: the Models view in the Explorer, the command palette,
// quick picks, the inspector webview, the output channel and the files on
// disk. Every assertion is on what the user sees (or what lands on disk).
//
// Two sessions, each on its own fresh workspace (test/e2e/workspace.ts):
//   light: 1 Models view · 2 inspect + feature maps · 3 freeze from tree,
//          palette and disk · 6 the inspector after a page reload
//   dark:  5 a broken model, then a good one · 4 fine-tune
// Scenarios in a session build on each other only where the user's path does
// (the inspector opened in 2 is the one 3 and 6 look at).
//
// Needs `bash scripts/e2e/setup.sh` and `npm run build` first.
// LAYER_LENS_UPDATE_SCREENSHOTS=1 also copies the inspector screenshots to
// media/screenshots/inspector-{light,dark}.png (the README's pictures).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Frame, Locator, Page } from 'playwright-core';
import { startSession, type Session } from './harness';
import { debug, REPO_ROOT, TIMEOUT, waitUntil, type Theme } from './util';
import { openView, pickQuickItem, readOutputChannel, runCommand, saveWorkbenchState, viewPane, waitForNotification, waitForWorkbench, webviewFrame } from './workbench';
import { FINETUNE_RECIPE, makeLayerLensWorkspace, type LayerLensWorkspace } from './workspace';

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
const SLOW = 90_000;
const SCENARIO_TIMEOUT = 180_000;

// tiny-cnn's parameters, counted from its architecture (test/fixtures/models.ts),
// not read from the extension: conv1 3x3x3x4+4, bn1 4x(gamma, beta, mean, variance)
// of which gamma and beta train, conv2 3x3x4x8+8, head 8x3+3.
const TINY = {
  layers: ['conv1', 'bn1', 'pool1', 'conv2', 'gap', 'head'],
  conv1: 3 * 3 * 3 * 4 + 4,
  bn1: 4 * 4,
  bn1Trainable: 2 * 4,
  conv2: 3 * 3 * 4 * 8 + 8,
  head: 8 * 3 + 3,
  labels: ['circle', 'square', 'triangle'],
};
const TINY_TOTAL = TINY.conv1 + TINY.bn1 + TINY.conv2 + TINY.head; // 451
const TINY_TRAINABLE = TINY_TOTAL - (TINY.bn1 - TINY.bn1Trainable); // 443

const fmt = (n: number) => n.toLocaleString('en-US');
const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const exactly = (s: string) => new RegExp(`^\\s*${escapeRegExp(s)}\\s*$`);

// ---------------------------------------------------------------------------
// Sessions shared by the scenarios of one describe()

interface Shared {
  session: Session;
  ws: LayerLensWorkspace;
  page: Page;
}

/**
 * Starts one session for the scenarios of a describe() and tears it down
 * after them. A failing scenario leaves a screenshot and the logs in
 * test-results/e2e/<scenario>/.
 */
function sharedSession(name: string, theme: Theme): { get(): Shared; scenario(title: string, body: (s: Shared) => Promise<void>): void } {
  let shared: Shared | undefined;
  before(
    async () => {
      const ws = await makeLayerLensWorkspace();
      debug(`${name}: workspace ${ws.dir}`);
      try {
        const session = await startSession({ workspace: ws.dir, theme, viewport: { width: 1400, height: 900 } });
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
async function closeLeftovers(page: Page): Promise<void> {
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

function modelsPane(page: Page): Locator {
  return viewPane(page, 'Models');
}

/** The row of a Models view item by its label (and tree depth, 1 = model). */
function treeRow(page: Page, label: string, level?: number): Locator {
  const levelAttr = level === undefined ? '' : `[aria-level="${level}"]`;
  return modelsPane(page)
    .locator(`.monaco-list-row${levelAttr}`, { has: page.locator('.label-name', { hasText: exactly(label) }) })
    .first();
}

async function rowDescription(row: Locator): Promise<string> {
  return ((await row.locator('.label-description').first().textContent({ timeout: 2_000 })) ?? '').trim();
}

/** Shows the Models view with room to spare: the workspace's file tree section collapsed. */
async function showModelsView(page: Page, ws: LayerLensWorkspace): Promise<void> {
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
async function expand(row: Locator): Promise<void> {
  await row.waitFor({ state: 'visible', timeout: SLOW });
  if ((await row.getAttribute('aria-expanded')) !== 'true') await row.locator('.monaco-tl-twistie').click();
  await waitUntil('the tree item to expand', async () => ((await row.getAttribute('aria-expanded')) === 'true' ? true : undefined));
}

async function collapse(row: Locator): Promise<void> {
  if ((await row.getAttribute('aria-expanded')) === 'true') await row.locator('.monaco-tl-twistie').click();
  await waitUntil('the tree item to collapse', async () => ((await row.getAttribute('aria-expanded')) === 'false' ? true : undefined));
}

/** Labels of the rows right under `parent` (the next rows one level deeper, in order). */
async function childLabels(page: Page, parent: Locator): Promise<string[]> {
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

function treeCheckbox(row: Locator): Locator {
  return row.locator('.custom-view-tree-node-item-checkbox');
}

async function waitForTreeCheckbox(row: Locator, checked: boolean): Promise<void> {
  await waitUntil(`the tree checkbox to be ${checked ? 'checked' : 'unchecked'}`, async () =>
    (await treeCheckbox(row).getAttribute('aria-checked')) === String(checked) ? true : undefined,
  SLOW);
}

// ---------------------------------------------------------------------------
// The inspector webview

/** The inspector's content frame, once its layer rows show. */
async function inspectorFrame(page: Page, selector = '.layer-row'): Promise<Frame> {
  return webviewFrame(page, { selector, timeout: SLOW });
}

async function text(locator: Locator): Promise<string> {
  return ((await locator.textContent({ timeout: 5_000 })) ?? '').replace(/\s+/g, ' ').trim();
}

/** Waits until the locator's text matches. */
async function waitForText(locator: Locator, expected: string | RegExp, timeout = SLOW): Promise<string> {
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
function countsText(trainable: number): { params: string; totals: string } {
  return {
    params: `${fmt(TINY_TOTAL)} params (${fmt(trainable)} trainable)`,
    totals: `${TINY.layers.length} layers · ${fmt(trainable)} of ${fmt(TINY_TOTAL)} parameters trainable`,
  };
}

async function waitForCounts(frame: Frame, trainable: number): Promise<void> {
  const want = countsText(trainable);
  await waitForText(frame.locator('header .params'), want.params);
  await waitForText(frame.locator('.totals'), want.totals);
}

/** The inspector's layer names, in the order of the list. */
async function inspectorLayers(frame: Frame): Promise<string[]> {
  const rows = await frame.locator('.layer-row').evaluateAll(
    (els: { dataset: Record<string, string | undefined>; checkVisibility(): boolean; style: { top: string } }[]) =>
      els.filter((e) => e.checkVisibility()).map((e) => ({ path: e.dataset['path'] ?? '', top: parseFloat(e.style.top) })),
  );
  return rows.sort((a, b) => a.top - b.top).map((r) => r.path);
}

function inspectorRow(frame: Frame, layer: string): Locator {
  return frame.locator(`.layer-row[data-path="${layer}"]`);
}

async function inspectorFrozen(frame: Frame, layer: string): Promise<boolean> {
  return inspectorRow(frame, layer)
    .locator('vscode-checkbox.freeze')
    .evaluate((c: CheckboxLike) => c.checked);
}

async function waitForInspectorFrozen(frame: Frame, layer: string, frozen: boolean): Promise<void> {
  await waitUntil(`${layer}'s freeze checkbox in the inspector to be ${frozen ? 'checked' : 'unchecked'}`, async () =>
    (await inspectorFrozen(frame, layer)) === frozen ? true : undefined,
  SLOW);
}

/** Size and number of distinct colours of the feature-map grid canvas, read from its pixels. */
async function gridPixels(frame: Frame): Promise<{ width: number; height: number; colours: number }> {
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

async function assertGridDrawn(frame: Frame, layer: string): Promise<void> {
  await waitForText(frame.locator('.maps-header strong'), layer);
  const grid = await gridPixels(frame);
  assert.ok(grid.width > 0 && grid.height > 0, `the feature-map grid has a size (${grid.width}x${grid.height})`);
  assert.ok(grid.colours > 1, `the feature-map grid is not blank: ${grid.colours} distinct colour(s) in ${grid.width}x${grid.height} pixels`);
}

/** The predictions list: every item a label of the model and a percentage; at least one. */
async function assertPredictions(frame: Frame, labels: readonly string[]): Promise<string[]> {
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
async function runModelCommand(page: Page, title: string, model: string): Promise<void> {
  await runCommand(page, title);
  await pickQuickItem(page, model);
}

/**
 * Runs a palette command about "the model of the active inspector". The
 * command may ask which model (a quick pick): then `model` is picked. Done
 * when the quick pick was answered or `done()` holds.
 */
async function runCommandForActiveModel(page: Page, title: string, model: string, done: () => Promise<boolean>): Promise<void> {
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

async function hashes(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await fs.readdir(dir)).sort()) {
    const file = path.join(dir, name);
    if ((await fs.stat(file)).isFile()) out[name] = createHash('sha256').update(await fs.readFile(file)).digest('hex');
  }
  return out;
}

async function readRecipeFile(file: string): Promise<{ freeze?: string[]; finetune?: { epochs?: number; batchSize?: number } }> {
  return JSON.parse(await fs.readFile(file, 'utf8')) as { freeze?: string[]; finetune?: { epochs?: number; batchSize?: number } };
}

/** Saves a screenshot of the workbench into test-results/e2e/ and, when asked to, into media/screenshots/. */
async function readmeScreenshot(session: Session, theme: Theme): Promise<void> {
  const file = await session.screenshot(`inspector-${theme}`);
  const size = (await fs.stat(file)).size;
  assert.ok(size > 20_000, `the ${theme} screenshot has content (${size} bytes)`);
  if (process.env.LAYER_LENS_UPDATE_SCREENSHOTS) {
    const target = path.join(REPO_ROOT, 'media', 'screenshots', `inspector-${theme}.png`);
    await fs.mkdir(path.dirname(target), { recursive: true });
    await fs.copyFile(file, target);
  }
}

const isCspViolation = (e: string) => /content security policy/i.test(e);

/**
 * No CSP violations (and no Models view errors) in the browser console; then
 * proof that the check can fail: an inline style attribute set in the
 * inspector, which its CSP blocks, must show up as a violation.
 */
async function assertCleanConsole(session: Session): Promise<void> {
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

describe('Layer Lens in VS Code, light theme: Models view, inspector, freezing, reload', { timeout: 15 * 60_000 }, () => {
  const { scenario } = sharedSession('light', 'light');

  scenario('1. the Models view lists the models, their layers (nested models nested) and a broken model\'s error', async ({ session, page, ws }) => {
    await showModelsView(page, ws);
    const models = modelsPane(page).locator('.monaco-list-row[aria-level="1"]');
    await waitUntil('the Models view to list the three models', async () => ((await models.count()) === 3 ? true : undefined), SLOW);
    assert.deepEqual(await models.locator('.label-name').allTextContents().then((l) => l.map((s) => s.trim())), ['missing-shard', 'nested', 'tiny-cnn']);

    // The broken model first: its error shows as a child item, the model says it failed.
    const broken = treeRow(page, 'missing-shard', 1);
    await expand(broken);
    const error = modelsPane(page).locator('.monaco-list-row[aria-level="2"]', { hasText: ws.missingShard }).first();
    await error.waitFor({ state: 'visible', timeout: SLOW });
    assert.match(await text(error), new RegExp(`${escapeRegExp(ws.missingShard)} is missing`));
    await waitUntil('the broken model to say "failed to load"', async () => ((await rowDescription(broken)) === 'failed to load' ? true : undefined), SLOW);

    // The rest keep working: tiny-cnn lists its layers, with class and output shape.
    const tiny = treeRow(page, 'tiny-cnn', 1);
    await expand(tiny);
    await treeRow(page, 'head', 2).waitFor({ state: 'visible', timeout: SLOW });
    assert.deepEqual(await childLabels(page, tiny), TINY.layers);
    assert.equal(await rowDescription(treeRow(page, 'bn1', 2)), 'BatchNormalization [?, 14, 14, 4]');
    assert.equal(await rowDescription(treeRow(page, 'conv1', 2)), 'Conv2D [?, 14, 14, 4]');
    await waitUntil('tiny-cnn to show its trainable parameters', async () =>
      (await rowDescription(tiny)) === `${fmt(TINY_TRAINABLE)} of ${fmt(TINY_TOTAL)} params trainable` ? true : undefined);
    // Layers with weights have a freeze checkbox, those without have none.
    assert.equal(await treeCheckbox(treeRow(page, 'conv1', 2)).count(), 1);
    assert.equal(await treeCheckbox(treeRow(page, 'pool1', 2)).count(), 0);

    // The nested model: nested models are nodes that expand to their own layers.
    const nested = treeRow(page, 'nested', 1);
    await expand(nested);
    const features = treeRow(page, 'features', 2);
    await features.waitFor({ state: 'visible', timeout: SLOW });
    assert.deepEqual(await childLabels(page, nested), ['features', 'head_seq']);
    assert.match(await rowDescription(features), /^Sequential /);
    await expand(features);
    const backbone = treeRow(page, 'backbone', 3);
    await expand(backbone);
    await treeRow(page, 'dw1', 4).waitFor({ state: 'visible', timeout: SLOW });
    assert.deepEqual(await childLabels(page, backbone), ['input_1', 'Conv1', 'bn_Conv1', 'Conv1_relu', 'dw1', 'gap']);
    await session.screenshot('light-1-models-view');

    // Tidy up for the next scenarios' screenshots: only tiny-cnn stays open.
    await collapse(nested);
    await collapse(broken);
  });

  scenario('2. Inspect Model and Pick Input Image from the palette: layer rows, a feature-map grid and predictions', async ({ session, page }) => {
    await runModelCommand(page, 'Layer Lens: Inspect Model', 'tiny-cnn');
    const frame = await inspectorFrame(page);
    await waitUntil('the inspector to list tiny-cnn\'s layers', async () => {
      const layers = await inspectorLayers(frame);
      return JSON.stringify(layers) === JSON.stringify(TINY.layers) ? true : undefined;
    }, SLOW);
    assert.equal(await text(frame.locator('header h1')), 'tiny-cnn');
    await waitForCounts(frame, TINY_TRAINABLE);
    assert.equal(await text(inspectorRow(frame, 'bn1').locator('.layer-class')), 'BatchNormalization');
    assert.equal(await text(inspectorRow(frame, 'conv1').locator('.layer-params')), fmt(TINY.conv1));
    // No image yet: the empty state says what to do.
    await waitForText(frame.locator('.side .empty'), /No image yet/);

    await runCommand(page, 'Layer Lens: Pick Input Image…');
    await pickQuickItem(page, 'photo.jpg');
    await waitForText(frame.locator('.side .image-path'), 'photo.jpg');
    // The first layer with channels is shown: conv1, 4 channels of 14x14.
    await assertGridDrawn(frame, 'conv1');
    await waitForText(frame.locator('.maps-header .muted'), '4 ch · 14×14');
    const predictions = await assertPredictions(frame, TINY.labels);
    assert.equal(predictions.length, TINY.labels.length, `one prediction per class: ${predictions.join(' | ')}`);
    assert.equal(await frame.locator('#tab-maps').getAttribute('aria-selected'), 'true');

    // Another layer: conv2's 8 channels.
    await inspectorRow(frame, 'conv2').locator('.layer-name').click();
    await assertGridDrawn(frame, 'conv2');
    await waitForText(frame.locator('.maps-header .muted'), '8 ch · 7×7');
    await inspectorRow(frame, 'conv1').locator('.layer-name').click();
    await assertGridDrawn(frame, 'conv1');

    await session.screenshot('light-2-inspector');
    await readmeScreenshot(session, 'light');
  });

  scenario('3. freezing: a tree checkbox, Unfreeze All from the palette and an edit of layerlens.json all reach the tree, the inspector and the file', async ({ session, page, ws }) => {
    const frame = await inspectorFrame(page);
    const tiny = treeRow(page, 'tiny-cnn', 1);
    const conv1 = treeRow(page, 'conv1', 2);
    const conv2 = treeRow(page, 'conv2', 2);
    await expand(tiny);
    await waitForCounts(frame, TINY_TRAINABLE);
    assert.equal(await treeCheckbox(conv1).getAttribute('aria-checked'), 'false');
    assert.equal(await inspectorFrozen(frame, 'conv1'), false);

    // The checkbox in the Models view freezes conv1 everywhere.
    await treeCheckbox(conv1).click();
    const withoutConv1 = TINY_TRAINABLE - TINY.conv1;
    await waitForCounts(frame, withoutConv1);
    await waitForInspectorFrozen(frame, 'conv1', true);
    await waitForTreeCheckbox(conv1, true);
    await waitUntil('the tree to count conv1 out', async () =>
      (await rowDescription(tiny)) === `${fmt(withoutConv1)} of ${fmt(TINY_TOTAL)} params trainable` ? true : undefined, SLOW);
    assert.match(await rowDescription(conv1), /· frozen$/);
    const frozenRecipe = await waitUntil('layerlens.json to name conv1', async () => {
      const r = await readRecipeFile(ws.recipe).catch(() => undefined);
      return r?.freeze?.includes('conv1') ? r : undefined;
    });
    assert.deepEqual(frozenRecipe.freeze, ['conv1']);
    assert.deepEqual(frozenRecipe.finetune, FINETUNE_RECIPE.finetune, 'the fine-tune settings the user wrote are kept');
    await session.screenshot('light-3a-frozen-from-tree');

    // Unfreeze All from the palette resets the inspector, the tree and the file.
    await runCommandForActiveModel(page, 'Layer Lens: Unfreeze All', 'tiny-cnn', async () => (await text(frame.locator('header .params'))) === countsText(TINY_TRAINABLE).params);
    await waitForCounts(frame, TINY_TRAINABLE);
    await waitForInspectorFrozen(frame, 'conv1', false);
    await waitForTreeCheckbox(conv1, false);
    const unfrozen = await waitUntil('layerlens.json to freeze nothing', async () => {
      const r = await readRecipeFile(ws.recipe).catch(() => undefined);
      return r && (r.freeze ?? []).length === 0 ? r : undefined;
    });
    assert.deepEqual(unfrozen.finetune, FINETUNE_RECIPE.finetune);

    // An edit of layerlens.json on disk (as a user or another tool makes it) shows up in both.
    await fs.writeFile(ws.recipe, `${JSON.stringify({ ...FINETUNE_RECIPE, freeze: ['conv2'] }, null, 2)}\n`);
    const withoutConv2 = TINY_TRAINABLE - TINY.conv2;
    await waitForTreeCheckbox(conv2, true);
    await waitForCounts(frame, withoutConv2);
    await waitForInspectorFrozen(frame, 'conv2', true);
    assert.equal(await inspectorFrozen(frame, 'conv1'), false);
    assert.equal(await treeCheckbox(conv1).getAttribute('aria-checked'), 'false');
    await waitUntil('the tree to count conv2 out', async () =>
      (await rowDescription(tiny)) === `${fmt(withoutConv2)} of ${fmt(TINY_TOTAL)} params trainable` ? true : undefined, SLOW);
    await session.screenshot('light-3b-frozen-from-disk');
  });

  scenario('6. after a page reload the inspector comes back with its layers, image and freeze plan', async ({ session, page }) => {
    const before = await inspectorFrame(page);
    const frozenBefore = Object.fromEntries(await Promise.all(TINY.layers.filter((l) => !['pool1', 'gap'].includes(l)).map(async (l) => [l, await inspectorFrozen(before, l)] as const)));
    const paramsBefore = await text(before.locator('header .params'));
    const totalsBefore = await text(before.locator('.totals'));
    const selectedBefore = await text(before.locator('.maps-header strong'));
    assert.ok(selectedBefore, 'a layer is shown before the reload');

    // VS Code for the Web saves the open editors (with the webview's state) on
    // focus loss, every minute and, best effort, on unload; without this the
    // reload restores an older state in about one run of three (see saveWorkbenchState).
    await saveWorkbenchState(page, ['photo.jpg', `"selected":"${selectedBefore}"`], { timeout: SLOW });
    await page.reload({ timeout: TIMEOUT.workbench });
    await waitForWorkbench(page);
    const frame = await inspectorFrame(page);
    assert.notEqual(frame, before, 'a new webview after the reload');
    await waitUntil('the restored inspector to list tiny-cnn\'s layers', async () =>
      JSON.stringify(await inspectorLayers(frame)) === JSON.stringify(TINY.layers) ? true : undefined, SLOW);
    await waitForText(frame.locator('header .params'), paramsBefore);
    await waitForText(frame.locator('.totals'), totalsBefore);
    for (const [layer, frozen] of Object.entries(frozenBefore)) assert.equal(await inspectorFrozen(frame, layer), frozen, `${layer} frozen: ${frozen}`);
    // Where it was: the same image, the same layer's grid.
    await waitForText(frame.locator('.side .image-path'), 'photo.jpg');
    await assertGridDrawn(frame, selectedBefore);
    await assertPredictions(frame, TINY.labels);
    await session.screenshot('light-6-after-reload');
  });

  scenario('the browser console shows no CSP violations from the inspector', async ({ session }) => {
    await assertCleanConsole(session);
  });
});

describe('Layer Lens in VS Code, dark theme: a broken model, then fine-tuning', { timeout: 15 * 60_000 }, () => {
  const { scenario } = sharedSession('dark', 'dark');

  scenario('5. Inspect Model on a broken model shows its error; a good model inspects fine afterwards', async ({ session, page, ws }) => {
    await runModelCommand(page, 'Layer Lens: Inspect Model', 'missing-shard');
    const broken = await inspectorFrame(page, '.error-box');
    await waitForText(broken.locator('.error-box strong'), 'The model failed to load');
    const message = await text(broken.locator('.error-box p'));
    assert.match(message, new RegExp(`${escapeRegExp(ws.missingShard)} is missing next to models/missing-shard/model.json`));
    assert.equal(await broken.locator('.layer-row').count(), 0, 'no layer rows for a model that failed to load');
    assert.equal(await broken.locator('header .params').count(), 0, 'no parameter counts for a model that failed to load');
    await session.screenshot('dark-5a-broken-model');
    await runCommand(page, 'View: Close Editor');

    // The extension keeps working: the good model inspects, with maps and predictions.
    await runModelCommand(page, 'Layer Lens: Inspect Model', 'tiny-cnn');
    const frame = await inspectorFrame(page);
    await waitForCounts(frame, TINY_TRAINABLE);
    await runCommand(page, 'Layer Lens: Pick Input Image…');
    await pickQuickItem(page, 'rgb.png');
    await waitForText(frame.locator('.side .image-path'), 'rgb.png');
    await assertGridDrawn(frame, 'conv1');
    await assertPredictions(frame, TINY.labels);

    await showModelsView(page, ws);
    await expand(treeRow(page, 'tiny-cnn', 1));
    await treeRow(page, 'head', 2).waitFor({ state: 'visible', timeout: SLOW });
    assert.equal(await rowDescription(treeRow(page, 'missing-shard', 1)), 'failed to load');
    await assertGridDrawn(frame, 'conv1');
    await session.screenshot('dark-5b-good-model-after-broken');
    await readmeScreenshot(session, 'dark');
  });

  scenario('4. Fine-Tune from the palette streams epochs to the output channel and the Training tab and writes a new model', async ({ session, page, ws }) => {
    const modelDir = path.dirname(ws.models.tinyCnn);
    const modelsDir = path.dirname(modelDir);
    const sourceBefore = await hashes(modelDir);
    assert.ok(sourceBefore['model.json'] && sourceBefore['weights.bin'], 'the source model has its files');

    await runCommand(page, 'Layer Lens: Fine-Tune…');
    await pickQuickItem(page, 'tiny-cnn');
    await pickQuickItem(page, 'stripes');
    const frame = await inspectorFrame(page);
    // The outcome, with its actions.
    const done = await waitForNotification(page, /Fine-tuned tiny-cnn saved to models\/tiny-cnn-finetuned-/, { timeout: 150_000 });
    assert.equal(await done.locator('.monaco-button', { hasText: 'Inspect' }).count(), 1, 'the outcome offers "Inspect"');

    // The Training tab opened by itself and shows the epoch log.
    await waitUntil('the Training tab to be selected', async () => ((await frame.locator('#tab-training').getAttribute('aria-selected')) === 'true' ? true : undefined), SLOW);
    const log = await waitForText(frame.locator('.training .epoch-log'), /Epoch 2\/2/);
    assert.match(log, /Epoch 1\/2 +\d+\/\d+ +loss [\d.]+ +acc [\d.]+ +val_loss [\d.]+ +val_acc [\d.]+/);
    assert.match(log, /Best val_loss [\d.]+ at epoch [12]/);
    // Where it went, as the workspace names it (not an absolute path).
    assert.match(await text(frame.locator('.training .train-status')), /Saved models\/tiny-cnn-finetuned-\d{8}-\d{4}(-\d+)?\/$/);
    assert.equal(await frame.locator('.training canvas.chart').count(), 1, 'the loss/accuracy chart');
    await session.screenshot('dark-4a-training-tab');

    // A new model folder next to the source; the source is byte for byte what it was.
    const outputs = (await fs.readdir(modelsDir)).filter((n) => /^tiny-cnn-finetuned-\d{8}-\d{4}(-\d+)?$/.test(n));
    assert.equal(outputs.length, 1, `one fine-tuned folder in ${modelsDir}: ${JSON.stringify(await fs.readdir(modelsDir))}`);
    const outDir = path.join(modelsDir, outputs[0]);
    const saved = JSON.parse(await fs.readFile(path.join(outDir, 'model.json'), 'utf8')) as {
      modelTopology?: unknown;
      weightsManifest?: { paths: string[] }[];
    };
    assert.ok(saved.modelTopology, 'the saved model.json has a topology');
    for (const group of saved.weightsManifest ?? []) for (const p of group.paths) assert.ok(existsSync(path.join(outDir, p)), `weights file ${p} saved`);
    assert.deepEqual(await hashes(modelDir), sourceBefore, 'the source model folder is unchanged');

    // The output channel is the record: every epoch, the best epoch and where it was saved.
    const channel = await readOutputChannel(page, 'Layer Lens', { timeout: SLOW });
    assert.match(channel, /Fine-tune of models\/tiny-cnn\/model\.json on data\/stripes started/);
    assert.match(channel, /Fine-tune: 3 classes \(checker 16, horizontal 16, vertical 16 images\)/);
    assert.match(channel, /Epoch 1\/2 +\d+\/\d+ +loss /);
    assert.match(channel, /Epoch 2\/2 +\d+\/\d+ +loss /);
    assert.ok(channel.indexOf('Epoch 1/2') < channel.indexOf('Epoch 2/2'), 'epochs in order');
    assert.match(channel, new RegExp(`Best val_loss [\\d.]+ at epoch [12].*Saved .*${escapeRegExp(outputs[0])}/`));
    // And the failure of scenario 5 (this session inspected the broken model), with its cause.
    assert.match(channel, new RegExp(`\\[error\\].*${escapeRegExp(ws.missingShard)} is missing`));
    await session.screenshot('dark-4b-output-channel');

    // The Models view picks the new model up.
    let listed: string[] = [];
    await waitUntil(`the Models view to list ${outputs[0]}`, async () => {
      listed = (await modelsPane(page).locator('.monaco-list-row[aria-level="1"] .label-name').allTextContents()).map((l) => l.trim());
      return listed.includes(outputs[0]) ? true : undefined;
    }, SLOW).catch((error: unknown) => {
      throw new Error(`${error instanceof Error ? error.message : String(error)}; the Models view lists ${JSON.stringify(listed)}`);
    });
    // ...and only the models there are (not the folder the result was built in).
    assert.deepEqual([...listed].sort(), ['missing-shard', 'nested', 'tiny-cnn', outputs[0]].sort());
  });

  scenario('7. a model the command line writes into the workspace appears in the Models view, and goes when its folder is deleted', async ({ page, ws }) => {
    const modelsDir = path.dirname(path.dirname(ws.models.tinyCnn));
    const out = path.join(modelsDir, 'from-terminal');
    // The CLI builds the result in a temporary folder and renames it into
    // place: the file watcher reports the folder, not the model.json inside.
    const cli = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [path.join(REPO_ROOT, 'dist', 'cli.js'), 'finetune', ws.models.tinyCnn, ws.dataset, '--epochs', '1', '--out', out], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.once('error', reject);
      child.once('exit', (code) => resolve({ code, stderr }));
    });
    assert.equal(cli.code, 0, cli.stderr);
    assert.ok(existsSync(path.join(out, 'model.json')), 'the CLI wrote its model');
    await showModelsView(page, ws);
    await treeRow(page, 'from-terminal', 1).waitFor({ state: 'visible', timeout: SLOW });
    await fs.rm(out, { recursive: true });
    await treeRow(page, 'from-terminal', 1).waitFor({ state: 'detached', timeout: SLOW });
  });

  scenario('the browser console shows no CSP violations from the inspector', async ({ session }) => {
    await assertCleanConsole(session);
  });
});
