// ONNX models in a real VS Code (code-server + Chromium, see harness.ts), the
// way a user meets one: the Models view lists the .onnx with its nodes, the
// inspector shows any node's maps, the predictions with the labels beside the
// model and a Score-CAM, in the light, dark and high-contrast themes; and
// Fine-Tune trains a new head and writes one .onnx next to the source.
//
// Needs `bash scripts/e2e/setup.sh` and `npm run build` first.
// LAYER_LENS_UPDATE_SCREENSHOTS=1 also copies the inspector screenshots to
// media/screenshots/onnx-inspector-{light,dark,hc}.png (the README's pictures).
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { describe } from 'node:test';
import { decodeModel } from '../../src/engine/onnx/proto';
import { makeOnnxWorkspace, ONNX_LABELS, ONNX_NODES, type OnnxWorkspace } from './onnxWorkspace';
import { REPO_ROOT, waitUntil, type Theme } from './util';
import { pickQuickItem, readOutputChannel, runCommand, waitForNotification } from './workbench';
import { SLOW, assertCleanConsole, assertGridDrawn, assertPredictions, childLabels, expand, hashes, inspectorFrame, inspectorLayers, inspectorRow, modelsPane, rowDescription, sharedSession, showModelsView, text, treeCheckbox, treeRow, waitForText, type Shared } from './scenarios';

/** The color theme picker's labels for the themes the sessions start with (util.ts THEMES). */
const PICKER_LABELS: Record<Theme, string> = { light: 'Light Modern', dark: 'Dark Modern', hc: 'Dark High Contrast' };
/** The class VS Code gives the workbench and each webview's body in that theme. */
const WORKBENCH_CLASS: Record<Theme, string> = { light: 'vs', dark: 'vs-dark', hc: 'hc-black' };
const WEBVIEW_CLASS: Record<Theme, string> = { light: 'vscode-light', dark: 'vscode-dark', hc: 'vscode-high-contrast' };

async function themeScreenshot(s: Shared<OnnxWorkspace>, theme: Theme): Promise<void> {
  if (theme !== 'light') {
    await runCommand(s.page, 'Preferences: Color Theme');
    await pickQuickItem(s.page, PICKER_LABELS[theme]);
  }
  // The workbench and the webview have switched (a theme applies a moment after the pick).
  await s.page.locator(`.monaco-workbench.${WORKBENCH_CLASS[theme]}`).waitFor({ state: 'attached', timeout: SLOW });
  const frame = await inspectorFrame(s.page);
  await frame.locator(`body.${WEBVIEW_CLASS[theme]}`).waitFor({ state: 'attached', timeout: SLOW });
  await assertGridDrawn(frame, 'relu1');
  const file = await s.session.screenshot(`onnx-inspector-${theme}`);
  assert.ok((await fs.stat(file)).size > 20_000, `the ${theme} screenshot has content`);
  if (process.env.LAYER_LENS_UPDATE_SCREENSHOTS) await fs.copyFile(file, path.join(REPO_ROOT, 'media', 'screenshots', `onnx-inspector-${theme}.png`));
}

describe('ONNX models in VS Code: Models view, inspector, Score-CAM, fine-tuning a new head', { timeout: 15 * 60_000 }, () => {
  const { scenario } = sharedSession('onnx', 'light', { workspace: makeOnnxWorkspace });

  scenario('1. the Models view lists the .onnx with its nodes (op type and output shape), without freeze checkboxes', async ({ session, page, ws }) => {
    await showModelsView(page, ws);
    const model = treeRow(page, 'twin.onnx', 1);
    await model.waitFor({ state: 'visible', timeout: SLOW });
    await expand(model);
    await treeRow(page, 'softmax', 2).waitFor({ state: 'visible', timeout: SLOW });
    assert.deepEqual(await childLabels(page, model), ONNX_NODES);
    assert.equal(await rowDescription(treeRow(page, 'conv1', 2)), 'Conv [?, 8, 32, 32]');
    assert.equal(await rowDescription(treeRow(page, 'dense', 2)), 'Gemm [?, 4]');
    await waitUntil('the model to say its opset and parameters', async () => (/^ONNX opset 13 · 446 params$/.test(await rowDescription(model)) ? true : undefined), SLOW);
    // Nothing to freeze: ONNX Runtime cannot train the backbone.
    assert.equal(await treeCheckbox(treeRow(page, 'conv1', 2)).count(), 0);
    await session.screenshot('onnx-1-models-view');
  });

  scenario('2. the inspector: every node, a node\'s feature maps, labelled predictions and a Score-CAM', async ({ session, page }) => {
    // The workspace's one model: no quick pick asks which.
    await runCommand(page, 'Layer Lens: Inspect Model');
    const frame = await inspectorFrame(page);
    await waitUntil('the inspector to list the nodes', async () => (JSON.stringify(await inspectorLayers(frame)) === JSON.stringify(ONNX_NODES) ? true : undefined), SLOW);
    assert.equal(await text(frame.locator('header h1')), 'twin');
    await waitForText(frame.locator('header'), /ONNX opset 13 · ONNX Runtime 1\.\d+/);
    await runCommand(page, 'Layer Lens: Pick Input Image…');
    await pickQuickItem(page, 'stripe.png');
    await waitForText(frame.locator('.side .image-path'), 'stripe.png');
    await assertGridDrawn(frame, 'conv1');
    await waitForText(frame.locator('.maps-header .muted'), '8 ch · 32×32');
    const predictions = await assertPredictions(frame, ONNX_LABELS);
    assert.equal(predictions.length, ONNX_LABELS.length);
    // A depthwise node, by a click in the list: 8 channels at half size.
    await inspectorRow(frame, 'dw').locator('.layer-name').click();
    await assertGridDrawn(frame, 'dw');
    await waitForText(frame.locator('.maps-header .muted'), '8 ch · 16×16');
    await inspectorRow(frame, 'relu1').locator('.layer-name').click();
    await assertGridDrawn(frame, 'relu1');

    // Score-CAM, where TF.js models get Grad-CAM: computed as the tab shows.
    await frame.locator('#tab-gradcam').click();
    await waitForText(frame.locator('.gradcam .gradcam-caption'), /^Score-CAM of “\w+” at \w+ \(its \d+ strongest channels/);
    await session.screenshot('onnx-2-score-cam');
    await frame.locator('#tab-maps').click();
  });

  scenario('3. the inspector on an ONNX model in the light, dark and high-contrast themes', async (s) => {
    for (const theme of ['light', 'dark', 'hc'] as const) await themeScreenshot(s, theme);
    await runCommand(s.page, 'Preferences: Color Theme');
    await pickQuickItem(s.page, PICKER_LABELS.light);
  });

  scenario('4. Fine-Tune trains a new head and writes one .onnx (with labels) next to the source, which the Models view lists', async ({ session, page, ws }) => {
    const sourceDir = path.dirname(ws.model);
    const before = await hashes(sourceDir);
    // The model of the active inspector (the workspace's one model); then the dataset.
    await runCommand(page, 'Layer Lens: Fine-Tune…');
    await pickQuickItem(page, 'stripes');
    // The form: an ONNX model trains the head only; start.
    await waitUntil('the form to say the head only', async () => ((await page.locator('.quick-input-widget', { hasText: 'the head only' }).count()) > 0 ? true : undefined), SLOW);
    await pickQuickItem(page, 'Start training');
    const done = await waitForNotification(page, /Fine-tuned twin saved to models\/pets\/twin-finetuned-/, { timeout: 150_000 });
    // Compare with the original (the outcome's action, while its toast shows): the backbone's nodes matched with zero drift, the replaced head listed.
    await done.locator('.monaco-button', { hasText: 'Compare with original' }).click();
    // The compared model's panel: the one whose Compare tab has a reference (the first panel's webview is torn down when hidden).
    const frame = await inspectorFrame(page, '.cmp-head .cmp-ab strong[title]');
    await waitUntil('the Compare tab to list the matched nodes', async () => ((await frame.locator('.cmp-rows .cmp-name').count()) >= 9 ? true : undefined), SLOW);
    const matched = (await frame.locator('.cmp-rows .cmp-name').allTextContents()).map((t) => t.trim());
    assert.deepEqual(matched, ONNX_NODES.slice(0, 9));
    const conv1Drift = await text(frame.locator('.cmp-rows [role="listitem"]', { has: frame.locator('.cmp-name', { hasText: /^conv1$/ }) }).locator('.cmp-val').first());
    assert.match(conv1Drift, /0 · unchanged/);
    const unmatched = await text(frame.locator('.cmp-unmatched'));
    for (const n of ['dense', 'softmax', 'layerlens_head/logits', 'probabilities']) assert.ok(unmatched.includes(n), `${n} listed as unmatched: ${unmatched}`);
    await session.screenshot('onnx-5-compare');

    const outputs = (await fs.readdir(sourceDir)).filter((n) => /^twin-finetuned-\d{8}-\d{4}(-\d+)?$/.test(n));
    assert.equal(outputs.length, 1, `one result folder: ${JSON.stringify(await fs.readdir(sourceDir))}`);
    const out = path.join(sourceDir, outputs[0]);
    assert.deepEqual((await fs.readdir(out)).sort(), ['labels.txt', 'metadata.json', 'metrics.csv', 'metrics.json', 'twin.onnx']);
    const saved = decodeModel(await fs.readFile(path.join(out, 'twin.onnx')));
    assert.deepEqual(saved.graph!.node!.slice(-2).map((n) => n.opType), ['Gemm', 'Softmax']);
    assert.equal((await fs.readFile(path.join(out, 'labels.txt'), 'utf8')).trim(), ws.classes.join('\n'));
    const after = await hashes(sourceDir);
    for (const [file, hash] of Object.entries(before)) assert.equal(after[file], hash, `${file} is unchanged`);

    const channel = await readOutputChannel(page, 'Layer Lens', { timeout: SLOW });
    assert.match(channel, /Head: new Dense\(3, softmax\) after flatten/);
    assert.match(channel, /backbone outputs cached after epoch 1/);
    assert.match(channel, /Epoch 2\/2 /);

    await showModelsView(page, ws);
    // The run is named as every fine-tune Layer Lens writes: its parent and time, with its val accuracy first.
    await waitUntil('the Models view to list the fine-tuned twin.onnx as a run', async () =>
      (await modelsPane(page).locator('.monaco-list-row[aria-level="1"] .label-name', { hasText: /^twin · \d+ \w{3} \d{2}:\d{2}/ }).count()) === 1 ? true : undefined, SLOW);
    await session.screenshot('onnx-4-finetuned');
  });

  scenario('the browser console shows no CSP violations from the inspector', async ({ session }) => {
    await assertCleanConsole(session);
  });
});
