// Layer Lens in a real VS Code, dark theme: a broken model, then fine-tuning,
// and a model the command line writes (see layerLens.test.ts for the light
// session and scenarios.ts for the shared steps).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { describe } from 'node:test';
import { runLabel } from '../../src/views/modelOrigin';
import { REPO_ROOT, waitUntil } from './util';
import { openFile, pickQuickItem, readOutputChannel, runCommand, waitForNotification } from './workbench';
import { SLOW, TINY, TINY_TRAINABLE, escapeRegExp, sharedSession, modelsPane, treeRow, rowDescription, showModelsView, expand, inspectorFrame, text, waitForText, waitForCounts, assertGridDrawn, assertPredictions, runModelCommand, hashes, readmeScreenshot, assertCleanConsole } from './scenarios';

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
    // The form shows what will be used before anything trains; Start is the first item.
    await pickQuickItem(page, 'Start training');
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
    // The toast's actions stay on the result card; the results on the validation images are below.
    const card = frame.locator('.training .result-card');
    await waitForText(card, /Fine-tuned tiny-cnn saved to models\/tiny-cnn-finetuned-/);
    for (const label of ['Inspect', 'Compare with original', 'Reveal in Explorer', 'Show Log']) assert.equal(await card.locator('vscode-button', { hasText: label }).count(), 1, `the card offers "${label}"`);
    await waitForText(frame.locator('.training .evaluation h3'), /^Validation: \d+\/\d+ correct/);
    const cells = frame.locator('.training .confusion .confusion-cell');
    assert.equal(await cells.count(), 9, 'a 3 x 3 confusion matrix');
    const counts = (await cells.allTextContents()).map(Number);
    const busiest = counts.indexOf(Math.max(...counts));
    await cells.nth(busiest).click();
    await waitForText(frame.locator('.training .eval-cell-images h4'), new RegExp(`: ${counts[busiest]} images?$`));
    await waitUntil('the cell\'s thumbnails to load', async () => ((await frame.locator('.training .eval-cell-images img.eval-thumb[src^="data:image/png"]').count()) === Math.min(counts[busiest], 48) ? true : undefined), SLOW);
    await session.screenshot('dark-4a-training-tab');

    // The run stays when its panel is hidden and shown again (the webview is rebuilt).
    await openFile(page, 'data/stripes/checker/checker-000.png');
    await page.locator('.editor-group-container .tab', { hasText: 'tiny-cnn' }).first().click();
    const again = await inspectorFrame(page);
    await waitForText(again.locator('.training .epoch-log'), /Epoch 2\/2/);
    await waitForText(again.locator('.training .result-card'), /Fine-tuned tiny-cnn saved to/);
    assert.equal(await again.locator('.training .confusion .confusion-cell').count(), 9, 'the results come back with the run');

    // "Compare with original": the original is A, the fine-tuned copy B.
    await again.locator('.training .result-card vscode-button', { hasText: 'Compare with original' }).click();
    // The comparison opens in the fine-tuned model's panel; the original's panel (whose Compare tab
    // also has a .cmp-head) goes hidden and its frame is detached: look for the frame that compares.
    await waitUntil('a Compare tab with the original as A', async () => {
      for (const f of page.frames()) {
        const a = await f.locator('.cmp-head .cmp-ab').first().textContent({ timeout: 500 }).catch(() => null);
        if (a && /^A\s*tiny-cnn$/.test(a.replace(/\s+/g, ' ').trim())) return true;
      }
      return undefined;
    }, SLOW);

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

    // The Models view picks the new model up, named by its parent and time ("tiny-cnn · 3 Dec 18:42").
    const label = runLabel(outputs[0])?.label ?? outputs[0];
    let listed: string[] = [];
    await waitUntil(`the Models view to list ${outputs[0]} as ${label}`, async () => {
      listed = (await modelsPane(page).locator('.monaco-list-row[aria-level="1"] .label-name').allTextContents()).map((l) => l.trim());
      return listed.includes(label) ? true : undefined;
    }, SLOW).catch((error: unknown) => {
      throw new Error(`${error instanceof Error ? error.message : String(error)}; the Models view lists ${JSON.stringify(listed)}`);
    });
    // ...and only the models there are (not the folder the result was built in).
    assert.deepEqual([...listed].sort(), ['missing-shard', 'nested', 'tiny-cnn', label].sort());
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
