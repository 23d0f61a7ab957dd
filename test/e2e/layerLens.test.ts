// Layer Lens in a real VS Code (code-server + Chromium, see harness.ts), the
// way a user meets it: the Models view in the Explorer, the command palette,
// quick picks, the inspector webview, the output channel and the files on
// disk. Every assertion is on what the user sees (or what lands on disk).
//
// Two sessions, each on its own fresh workspace (test/e2e/workspace.ts):
//   light (this file): 1 Models view · 2 inspect + feature maps · 3 freeze
//          from tree, palette and disk · 6 the inspector after a page reload
//   dark (layerLensDark.test.ts): 5 a broken model, then a good one ·
//          4 fine-tune · 7 a model the CLI writes
// Scenarios in a session build on each other only where the user's path does
// (the inspector opened in 2 is the one 3 and 6 look at). Shared steps are in
// scenarios.ts.
//
// Needs `bash scripts/e2e/setup.sh` and `npm run build` first.
// LAYER_LENS_UPDATE_SCREENSHOTS=1 also copies the inspector screenshots to
// media/screenshots/inspector-{light,dark}.png (the README's pictures).
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { describe } from 'node:test';
import { TIMEOUT, waitUntil } from './util';
import { answerFolderDialog, pickQuickItem, runCommand, saveWorkbenchState, waitForWorkbench } from './workbench';
import { FINETUNE_RECIPE } from './workspace';
import { SLOW, TINY, TINY_TOTAL, TINY_TRAINABLE, fmt, escapeRegExp, sharedSession, modelsPane, treeRow, rowDescription, showModelsView, expand, collapse, childLabels, treeCheckbox, waitForTreeCheckbox, inspectorFrame, text, waitForText, countsText, waitForCounts, inspectorLayers, inspectorRow, inspectorFrozen, waitForInspectorFrozen, assertGridDrawn, assertPredictions, runModelCommand, runCommandForActiveModel, readRecipeFile, readmeScreenshot, assertCleanConsole } from './scenarios';

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

  scenario('8. the Latent tab maps a folder; a click on a point shows its image in the panel without splitting the editor, and a narrow panel keeps its layout', async ({ session, page, ws }) => {
    const frame = await inspectorFrame(page);
    await frame.locator('#tab-latent').click();
    // VS Code's folder dialog (a quick input in code-server), answered with the dataset. Under load
    // that dialog now and then accepts the folder it started in instead of the typed one (its value
    // is applied asynchronously); the tab then names that folder, and the dialog is answered again.
    const folder = frame.locator('.latent-bar .latent-folder');
    for (let attempt = 1; ; attempt++) {
      await frame.locator('.latent-bar vscode-button', { hasText: 'Choose Folder…' }).first().click();
      await answerFolderDialog(page, ws.dataset, { timeout: SLOW });
      const named = await waitUntil('the Latent tab to name the dataset', async () => ((await folder.getAttribute('title')) === ws.dataset ? true : undefined), 10_000).catch(() => false);
      if (named) break;
      assert.ok(attempt < 3, `the folder dialog gave ${await folder.getAttribute('title')}, not ${ws.dataset}, three times`);
    }
    // The map draws a point per image; find one on the canvas and click it.
    interface PlotCanvas {
      readonly width: number;
      readonly height: number;
      readonly clientWidth: number;
      getContext(kind: '2d'): { getImageData(x: number, y: number, w: number, h: number): { data: ArrayLike<number> } } | null;
    }
    const canvas = frame.locator('canvas.latent-canvas');
    const drawn = await waitUntil('the latent map to draw its points', async () => {
      // An error in the status ends the wait with its words, not a timeout.
      const error = frame.locator('.latent-status .error');
      if ((await error.count()) > 0) return { error: (await error.first().textContent()) ?? '' };
      return canvas.evaluate((c: PlotCanvas) => {
        const ctx = c.getContext('2d');
        if (!ctx || c.width < 50) return undefined;
        // No helper functions in here: the page has none of the bundler's helpers (__name).
        const d = ctx.getImageData(0, 0, c.width, c.height).data;
        const b = (6 * c.width + (c.width >> 1)) * 4;
        const scale = c.width / c.clientWidth;
        for (let y = 12; y < c.height - 12; y++) {
          for (let x = 12; x < c.width - 12; x++) {
            const i = (y * c.width + x) * 4;
            if (Math.abs(d[i] - d[b]) + Math.abs(d[i + 1] - d[b + 1]) + Math.abs(d[i + 2] - d[b + 2]) > 120) return { x: (x + 1) / scale, y: (y + 1) / scale };
          }
        }
        return undefined;
      });
    }, SLOW);
    if ('error' in drawn) assert.fail(`the Latent tab says: ${drawn.error}`);
    const point = drawn;
    const groupsBefore = await page.locator('.editor-group-container').count();
    await canvas.click({ position: point });
    const preview = frame.locator('.image-preview');
    await preview.waitFor({ state: 'visible', timeout: SLOW });
    await waitUntil('the preview to show the image', async () => ((await preview.locator('img[src^="data:image/png"]').count()) === 1 ? true : undefined), SLOW);
    assert.equal(await page.locator('.editor-group-container').count(), groupsBefore, 'no editor group was split off');
    const centre = (await frame.locator('.center').boundingBox())?.width ?? 0;
    assert.ok(centre > 400, `the centre keeps its width (${centre} px)`);
    await session.screenshot('light-8a-latent-preview');
    await page.keyboard.press('Escape');
    await preview.waitFor({ state: 'hidden', timeout: SLOW });

    // A narrow panel (about 520 px): the columns give way, the tabs stay usable.
    const full = page.viewportSize();
    await page.setViewportSize({ width: 860, height: full?.height ?? 900 });
    await waitUntil('the layout to follow the width', async () => {
      const panel = (await frame.locator('body').boundingBox())?.width ?? 0;
      const centre = (await frame.locator('.center').boundingBox())?.width ?? 0;
      const plot = (await canvas.boundingBox())?.width ?? 0;
      return panel < 640 && centre >= panel * 0.6 && plot >= 250 ? true : undefined;
    }, SLOW);
    await session.screenshot('light-8b-latent-narrow');
    if (full) await page.setViewportSize(full);
    await frame.locator('#tab-maps').click();
  });

  scenario('the browser console shows no CSP violations from the inspector', async ({ session }) => {
    await assertCleanConsole(session);
  });
});
