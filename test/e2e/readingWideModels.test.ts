// Reading wide and deep models, by keyboard and mouse, in the high-contrast
// theme at 1000 px (issue 17's "Reading wide and deep models" and "Keyboard
// and screen readers"): the walkthrough on the first run, the Models view
// telling fine-tuned siblings apart with tooltips that agree with the freeze
// plan, the inspector on a wide, long-named, nested model (its first layer,
// a 1280-channel layer a page at a time, names cut in the middle, one Pick
// Image… before an image), keyboard-only freezing in a list that is one tab
// stop, Enter acting on the visible tab, Grad-CAM as soon as its tab shows,
// Freeze Up To a layer without weights, the Advisor's dataset picker, and
// then every surface again in the light, dark and high-contrast themes at
// 1000 and 1600 px (screenshots in test-results/e2e/reading-*.png).
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { describe } from 'node:test';
import { TIMEOUT, waitUntil } from './util';
import { pickQuickItem, quickInput, quickInputBox, quickInputLabels, runCommand } from './workbench';
import { SLOW, sharedSession, treeRow, rowDescription, showModelsView, expand, collapse, childLabels, treeCheckbox, waitForTreeCheckbox, inspectorFrame, text, waitForText, inspectorRow, assertGridDrawn, runModelCommand, runCommandForActiveModel, readRecipeFile, assertCleanConsole } from './scenarios';
import { SIBLINGS, WIDE, activeOption, barAndBackground, canvasChroma, contrast, focused, makeReadingWorkspace, nameCell, setRange, treeTooltip, waitForActive, type ReadingWorkspace } from './readingSteps';

// As `npm run demo:vscode` starts code-server (scripts/openDemo.ts): Layer Lens opens its walkthrough on its first run.
process.env['LAYER_LENS_WALKTHROUGH'] = '1';

const narrow = { width: 1000, height: 800 };
const wide = { width: 1600, height: 900 };

describe('Reading wide models, by keyboard too (high contrast, 1000 px)', { timeout: 20 * 60_000 }, () => {
  const { scenario } = sharedSession('reading', 'hc', { viewport: narrow, workspace: makeReadingWorkspace });
  const readingWs = (ws: unknown) => ws as ReadingWorkspace;

  scenario('a. the demo\'s first screen: on its first run Layer Lens opens its own walkthrough', async ({ page }) => {
    const walkthrough = page.locator('.gettingStartedContainer', { hasText: 'Get started with Layer Lens' }).first();
    await walkthrough.waitFor({ state: 'visible', timeout: SLOW });
    await runCommand(page, 'View: Close All Editors');
  });

  scenario('b. Models view: fine-tuned siblings lead with val accuracy and time; long names keep their ends; tooltips agree with the plan', async ({ session, page, ws }) => {
    await showModelsView(page, ws);
    for (const s of SIBLINGS) {
      // Named by its parent and time, its description leads with its val accuracy.
      const row = treeRow(page, s.label, 1);
      await row.waitFor({ state: 'visible', timeout: SLOW });
      await waitUntil(`${s.name} to lead with what sets it apart`, async () => ((await rowDescription(row)).startsWith(s.lead) ? true : undefined), SLOW);
    }

    const model = treeRow(page, 'wide', 1);
    await expand(model);
    const backbone = treeRow(page, 'mobilenet_mini', 2);
    await expand(backbone);
    await treeRow(page, 'out_relu', 3).waitFor({ state: 'visible', timeout: SLOW });
    const labels = await childLabels(page, backbone);
    const dw = labels.find((l) => l.startsWith('block_1') && l.includes('…') && !l.endsWith('_BN'));
    const bn = labels.find((l) => l.startsWith('block_1') && l.includes('…') && l.endsWith('_BN'));
    assert.ok(dw && bn && dw !== bn, `the depthwise layer and its BatchNormalization are told apart: ${JSON.stringify(labels)}`);
    assert.ok(bn.length <= 22 && bn.includes('…'), `a long name loses its middle, not its end: ${bn}`);

    // Freeze the depthwise layer: its tooltip says it trains nothing, the model's agrees with its description.
    const dwRow = treeRow(page, dw, 3);
    await treeCheckbox(dwRow).click();
    await waitForTreeCheckbox(dwRow, true);
    const dwTip = await treeTooltip(page, dwRow, /params/);
    assert.match(dwTip, /72 params · frozen/, dwTip);
    assert.doesNotMatch(dwTip, /trainable|72 trained/, `a frozen layer's tooltip does not call it trainable: ${dwTip}`);
    const description = await waitUntil('the model to count the frozen layer out', async () => {
      const d = await rowDescription(model);
      return /of 19,555 params trainable$/.test(d) && !d.startsWith('16,963') ? d : undefined;
    }, SLOW);
    const modelTip = await treeTooltip(page, model, /under the freeze plan/);
    assert.ok(modelTip.includes(description), `the model's tooltip (${modelTip}) says what its description says (${description})`);
    await session.screenshot('reading-b-models-view');
    await treeCheckbox(dwRow).click();
    await waitForTreeCheckbox(dwRow, false);
    await collapse(model);
  });

  scenario('c1. before an image: one Pick Image…, no activation bars that look like data', async ({ session, page }) => {
    await runModelCommand(page, 'Layer Lens: Inspect Model', 'wide');
    const frame = await inspectorFrame(page);
    await waitForText(frame.locator('header h1'), 'wide');
    await frame.locator('.maps .empty vscode-button').waitFor({ state: 'visible', timeout: SLOW });
    const buttons = await frame.locator('vscode-button', { hasText: 'Pick Image…' }).filter({ visible: true }).count();
    const bars = await frame.locator('.layer-row .act-bar').filter({ visible: true }).count();
    await session.screenshot('reading-c1-empty');
    // The image the next scenarios look at, whatever this one finds.
    await runCommand(page, 'Layer Lens: Pick Input Image…');
    await pickQuickItem(page, 'photo.jpg');
    await waitForText(frame.locator('.side .image-path'), 'photo.jpg');
    assert.equal(buttons, 1, 'one "Pick Image…" before an image');
    assert.equal(bars, 0, 'no activation bars before an image');
    // Once there is an image, the header offers to change it.
    await frame.locator('header vscode-button', { hasText: 'Pick Image…' }).waitFor({ state: 'visible' });
  });

  scenario('c2. a wide nested model: its first layer, 1,280 channels a page at a time (most active first), names that fit', async ({ session, page }) => {
    const frame = await inspectorFrame(page);
    // The first layer with maps, not the nested model's row (its output is the 1280-channel map).
    await assertGridDrawn(frame, WIDE.first);
    assert.ok((await frame.locator('.layer-row .act-bar').count()) > 0, 'bars once there is an image');

    await inspectorRow(frame, WIDE.wideLayer).locator('.layer-name').click();
    await assertGridDrawn(frame, WIDE.wideLayer);
    await waitForText(frame.locator('.page-count'), 'The 64 most active of 1,280 channels (by mean activation) · 1,216 more');
    const fill = await frame.locator('.maps').evaluate((maps: { clientWidth: number; querySelector(s: string): { getBoundingClientRect(): { width: number } } | null }) => ({
      panel: maps.clientWidth,
      grid: maps.querySelector('canvas.grid')?.getBoundingClientRect().width ?? 0,
    }));
    assert.ok(fill.grid >= 0.85 * fill.panel, `the grid fills the width: ${fill.grid} of ${fill.panel} px`);
    // Export PNG on the title's line, not wrapped alone.
    const title = await frame.locator('.maps-title strong').boundingBox();
    const exportButton = await frame.locator('.maps-title vscode-button', { hasText: 'Export PNG' }).boundingBox();
    assert.ok(title && exportButton && Math.abs(exportButton.y + exportButton.height / 2 - (title.y + title.height / 2)) < exportButton.height, 'Export PNG sits on the title line');
    await session.screenshot('reading-c2-wide-layer');
    await frame.locator('vscode-button', { hasText: 'Show all 1,280' }).click();
    await waitForText(frame.locator('.page-count'), 'All 1,280 channels');
    await frame.locator('vscode-button', { hasText: 'Show 64' }).click();
    await waitForText(frame.locator('.page-count'), /^The 64 most active/);

    // A depthwise layer and its BatchNormalization: told apart in a narrow column, the full path on hover.
    const dw = await nameCell(frame, WIDE.depthwise);
    const bn = await nameCell(frame, WIDE.depthwiseBn);
    assert.notEqual(dw.text, bn.text, `${dw.text} vs ${bn.text}`);
    assert.ok(bn.text.endsWith('_BN'), `the BN keeps its end: ${bn.text}`);
    assert.ok(dw.fits && bn.fits, 'the names fit their cells');
    assert.equal(bn.title, WIDE.depthwiseBn);
  });

  scenario('d. keyboard only: the list is one tab stop, arrows and Home/End move, Space freezes, Enter acts on the visible tab', async ({ session, page, ws }) => {
    const recipe = path.join(path.dirname(readingWs(ws).wide), 'layerlens.json');
    const frame = await inspectorFrame(page);
    await inspectorRow(frame, WIDE.first).locator('.layer-name').click();
    await page.keyboard.press('/');
    await waitUntil('the filter to take the focus', async () => ((await focused(frame)).tag === 'vscode-text-field' ? true : undefined));
    await page.keyboard.press('Tab');
    await waitUntil('Tab to reach the layer list', async () => ((await focused(frame)).isList ? true : undefined));
    await page.keyboard.press('Tab');
    const after = await focused(frame);
    assert.ok(!after.inList, `one Tab leaves the list (focus on a ${after.tag}${after.inRow ? ' in a row' : ''})`);
    await page.keyboard.press('Shift+Tab');
    await waitUntil('Shift+Tab to come back to the list', async () => ((await focused(frame)).isList ? true : undefined));

    await page.keyboard.press('End');
    await waitForActive(frame, WIDE.last);
    await page.keyboard.press('Home');
    await waitForActive(frame, WIDE.rows[0]);
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowDown');
    const label = await waitForActive(frame, WIDE.first);
    assert.match(label, /^Conv1, Conv2D, .*216 params, trainable$/);

    await page.keyboard.press('Space');
    const frozen = await waitUntil('layerlens.json to freeze Conv1', async () => {
      const r = await readRecipeFile(recipe).catch(() => undefined);
      return r?.freeze?.includes(WIDE.first) ? r : undefined;
    }, SLOW);
    assert.deepEqual(frozen.freeze, [WIDE.first]);
    await waitUntil('the option to be announced frozen', async () => ((await activeOption(frame)).label.endsWith(', frozen') ? true : undefined), SLOW);
    assert.ok((await focused(frame)).isList, 'the focus stays in the list after Space');
    await session.screenshot('reading-d-keyboard-frozen');
    await page.keyboard.press('Space');
    await waitUntil('layerlens.json to freeze nothing', async () => {
      const r = await readRecipeFile(recipe).catch(() => undefined);
      return r && (r.freeze ?? []).length === 0 ? true : undefined;
    }, SLOW);

    // Enter on the Training tab does not open a channel in the hidden Feature maps tab…
    await assertGridDrawn(frame, WIDE.first);
    await frame.locator('#tab-training').click();
    await page.keyboard.press('Shift+Tab');
    await waitUntil('Shift+Tab from the tabs to reach the list', async () => ((await focused(frame)).isList ? true : undefined));
    await page.keyboard.press('Enter');
    assert.equal(await frame.locator('#tab-training').getAttribute('aria-selected'), 'true');
    await frame.locator('#tab-maps').click();
    assert.equal(await frame.locator('.maps .zoom').count(), 0, 'no channel was opened behind the Training tab');
    await frame.locator('canvas.grid').waitFor({ state: 'visible' });
    // …and on the Feature maps tab it opens the first channel.
    await page.keyboard.press('Shift+Tab');
    await waitUntil('Shift+Tab from the tabs to reach the list', async () => ((await focused(frame)).isList ? true : undefined));
    await page.keyboard.press('Enter');
    await frame.locator('.maps .zoom').waitFor({ state: 'visible', timeout: SLOW });
    await page.keyboard.press('Escape');
    await frame.locator('canvas.grid').waitFor({ state: 'visible', timeout: SLOW });
    // The filter and the freeze checkboxes have names a screen reader reads (the toolkit's own were "Text field" and "Checkbox").
    assert.equal(await frame.getByRole('textbox', { name: 'Filter layers' }).count(), 1);
    assert.equal(await inspectorRow(frame, WIDE.first).locator('vscode-checkbox').getAttribute('aria-label'), 'Freeze Conv1');
  });

  scenario('e. Grad-CAM shows as soon as its tab opens, over the image, with its colour scale and opacity', async ({ session, page }) => {
    const frame = await inspectorFrame(page);
    await frame.locator('#tab-gradcam').click();
    await waitForText(frame.locator('.gradcam-caption'), /^Where mobilenet_mini\/Conv_1 looked for “(circle|square|triangle)”/);
    await frame.locator('canvas.gradcam-scale').waitFor({ state: 'visible' });
    const canvas = frame.locator('canvas.gradcam-canvas');
    assert.ok((await canvasChroma(canvas)) > 40, 'the heatmap shows in colour over the grey image');
    await session.screenshot('reading-e-gradcam');
    const slider = frame.getByRole('slider', { name: 'Heatmap opacity' });
    await setRange(slider, 0);
    await waitUntil('opacity 0 to show the grey image alone', async () => ((await canvasChroma(canvas)) <= 2 ? true : undefined));
    await setRange(slider, 60);
    await frame.locator('#tab-maps').click();
  });

  scenario('f. Freeze Up To offers layers without weights (the walkthrough\'s "up to gap"); the Advisor asks for a dataset of the workspace', async ({ page, ws }) => {
    const recipe = path.join(path.dirname(readingWs(ws).wide), 'layerlens.json');
    const frame = await inspectorFrame(page);
    const asking = (title: RegExp) => async () => page.locator('.quick-input-widget .quick-input-title', { hasText: title }).isVisible();
    await runCommandForActiveModel(page, 'Layer Lens: Freeze Up To Layer…', 'wide', asking(/^Freeze wide up to and including/));
    await pickQuickItem(page, 'gap');
    const plan = await waitUntil('layerlens.json to freeze up to gap', async () => {
      const r = await readRecipeFile(recipe).catch(() => undefined);
      return r?.freeze?.includes('gap') ? r.freeze : undefined;
    }, SLOW);
    assert.deepEqual(plan, ['mobilenet_mini', 'gap']);
    await waitForText(frame.locator('header .params'), `19,555 params (${WIDE.head.toLocaleString('en-US')} trainable)`);
    await runCommandForActiveModel(page, 'Layer Lens: Unfreeze All', 'wide', async () => (await text(frame.locator('header .params'))).startsWith('19,555 params (16,963'));

    await runCommandForActiveModel(page, 'Layer Lens: Advise Freeze or Fine-Tune…', 'wide', asking(/Advise — the dataset/));
    await waitUntil('the advisor to offer the workspace\'s dataset', async () => ((await quickInputLabels(page)).includes('stripes') ? true : undefined));
    await pickQuickItem(page, 'Browse…', { filter: 'Browse' });
    // The dialog first shows the parent of where it starts, then lists the folder it starts in.
    let shown = '';
    await waitUntil(`the folder dialog to start in the workspace (${ws.dir})`, async () => {
      shown = (await quickInput(page).isVisible()) ? await quickInputBox(page).inputValue() : '';
      return shown.startsWith(ws.dir) ? true : undefined;
    }, TIMEOUT.ui).catch((error: unknown) => {
      throw new Error(`${error instanceof Error ? error.message : String(error)}; it shows ${JSON.stringify(shown)}`);
    });
    await page.keyboard.press('Escape');
    await quickInput(page).waitFor({ state: 'hidden' });
  });

  scenario('g. every surface in light, dark and high contrast at 1000 and 1600 px; the selected row\'s bar stands out in each', async ({ session, page, ws }) => {
    const frame = await inspectorFrame(page);
    await inspectorRow(frame, WIDE.wideLayer).locator('.layer-name').click();
    await assertGridDrawn(frame, WIDE.wideLayer);
    for (const [theme, name] of [['hc', 'Dark High Contrast'], ['dark', 'Dark Modern'], ['light', 'Light Modern']] as const) {
      if (theme !== 'hc') {
        await runCommand(page, 'Preferences: Color Theme');
        await pickQuickItem(page, name);
      }
      for (const size of [narrow, wide]) {
        await page.setViewportSize(size);
        await frame.locator('#tab-maps').click();
        await waitUntil('the grid to be laid out for the new width', async () => {
          const w = await frame.locator('.maps').evaluate((m: { clientWidth: number; querySelector(s: string): { getBoundingClientRect(): { width: number } } | null }) => [m.clientWidth, m.querySelector('canvas.grid')?.getBoundingClientRect().width ?? 0]);
          return w[1] >= 0.8 * w[0] ? true : undefined;
        }, SLOW);
        const bar = frame.locator(`.layer-row.selected .act-bar`);
        const colours = await barAndBackground(bar);
        const ratio = contrast(colours.bar, colours.background);
        // As clear as text (4.5:1): the blue bar on the dark theme's blue selection (#3794ff on #04395e) is about 3.9:1 and was read as invisible.
        assert.ok(ratio >= 4.5, `${theme} at ${size.width} px: the selected row's bar (${colours.bar}) against its background (${colours.background}) has contrast ${ratio.toFixed(2)}`);
        await session.screenshot(`reading-g-${theme}-${size.width}-maps`);
        await frame.locator('#tab-gradcam').click();
        await frame.locator('.gradcam-caption').waitFor({ state: 'visible', timeout: SLOW });
        await session.screenshot(`reading-g-${theme}-${size.width}-gradcam`);
      }
    }
    await frame.locator('#tab-maps').click();
    await page.setViewportSize(narrow);
    await showModelsView(page, ws);
    await session.screenshot('reading-g-models-view-light');
  });

  scenario('the browser console shows no CSP violations from the inspector', async ({ session }) => {
    await assertCleanConsole(session);
  });
});
