/**
 * Hostile recipes, settings and webview messages, each with the exact
 * message the user sees (see hostile.test.ts for model files).
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { before, describe, it } from 'node:test';
import { disposeModel, loadModel } from '../../src/engine/model';
import { parseRecipe, readRecipe, writeRecipe } from '../../src/engine/recipe';
import { finetune } from '../../src/engine/train/finetune';
import type { LayerRow } from '../../src/protocol/model';
import { defaultRecipe } from '../../src/protocol/recipe';
import { checkWebviewMessage } from '../../src/protocol/webviewApi';
import { fixture } from '../fixtures/models';
import { setup } from './helpers';
import { root, refuses } from './hostileHelpers';

describe('hostile recipes and settings', () => {
  let rows: LayerRow[] = [];
  before(async () => {
    await setup();
    const loaded = await loadModel(fixture('tiny-cnn', 'model.json'));
    rows = loaded.summary.layers;
    disposeModel(loaded);
  });

  it('bad JSON: one error placed at the fault, and the default recipe', () => {
    const r = parseRecipe('{\n  "freeze": ["conv1",]\n}', { rows, modelName: 'model.json' });
    assert.deepEqual(r.recipe, defaultRecipe());
    assert.deepEqual(
      r.diagnostics.map((d) => [d.severity, d.line, d.column, d.message]),
      [['error', 2, 22, "layerlens.json is not valid JSON: a trailing comma before ']' is not allowed in JSON; remove it. Layer Lens uses the default recipe (nothing frozen) until it is fixed."]],
    );
  });

  it('JSON nested 100 deep: refused by the recipe parser, no stack overflow', () => {
    const r = parseRecipe('['.repeat(100) + ']'.repeat(100));
    assert.deepEqual(
      r.diagnostics.map((d) => d.message),
      ['layerlens.json is not valid JSON: nested deeper than 64 levels. Layer Lens uses the default recipe (nothing frozen) until it is fixed.'],
    );
  });

  it('unknown layer names: warned with a suggestion, ignored', () => {
    const r = parseRecipe('{"freeze": ["conv_1", "nope"]}', { rows, modelName: 'model.json' });
    assert.deepEqual(r.diagnostics.map((d) => [d.severity, d.message]), [
      ['warning', 'freeze lists "conv_1", which is not a layer of model.json; it is ignored. Did you mean "conv1"? Layer paths are as in the Models view, nested ones as "outer/inner/layer".'],
      ['warning', 'freeze lists "nope", which is not a layer of model.json; it is ignored. Layer paths are as in the Models view, nested ones as "outer/inner/layer".'],
    ]);
  });

  it('out-of-range values: each named with what is allowed, and the default used', () => {
    const r = parseRecipe('{"finetune": {"epochs": 0, "batchSize": 1e9, "learningRate": 50, "validationFraction": 2, "optimizer": "adamw"}}');
    assert.deepEqual(r.recipe.finetune, defaultRecipe().finetune);
    assert.deepEqual(r.diagnostics.map((d) => d.message).sort(), [
      'finetune.batchSize must be a whole number from 1 to 4096; found 1000000000. Using the default (32) until it is fixed.',
      'finetune.epochs must be a whole number from 1 to 10000; found 0. Using the default (10) until it is fixed.',
      'finetune.learningRate must be a number greater than 0 and at most 10; found 50. Using the default (0.001) until it is fixed.',
      'finetune.optimizer must be one of "adam", "sgd", "rmsprop"; found "adamw" (did you mean "adam"?). Using the default ("adam") until it is fixed.',
      'finetune.validationFraction must be a number from 0 to 0.9; found 2. Using the default (0.2) until it is fixed.',
    ]);
  });

  it('a 2 MB layerlens.json is not read', async () => {
    const dir = path.join(root, 'recipe-huge');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'layerlens.json'), '{"freeze": [' + '"x",'.repeat(500_000) + '"x"]}');
    const r = await readRecipe(path.join(dir, 'model.json'));
    assert.deepEqual(r.diagnostics.map((d) => d.message), [
      `layerlens.json is ${fs.statSync(path.join(dir, 'layerlens.json')).size} bytes, more than a recipe needs (limit 1048576); Layer Lens uses the default recipe. Is it the right file?`,
    ]);
  });

  it('a layerlens.json linking outside the model folder is not read', async () => {
    const dir = path.join(root, 'recipe-link');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(root, 'secret.json'), '{"freeze": []}');
    fs.symlinkSync(path.join(root, 'secret.json'), path.join(dir, 'layerlens.json'));
    const r = await readRecipe(path.join(dir, 'model.json'));
    assert.deepEqual(r.diagnostics.map((d) => d.message), [
      `layerlens.json is a link to ${fs.realpathSync(path.join(root, 'secret.json'))}, outside the model folder; Layer Lens does not read it. Replace the link with the file itself.`,
    ]);
  });

  it('saving over a layerlens.json the user is editing (bad JSON) is refused, naming the line', async () => {
    const dir = path.join(root, 'recipe-editing');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'layerlens.json'), '{\n  "freeze": [\n');
    await refuses(
      writeRecipe(path.join(dir, 'model.json'), defaultRecipe()),
      'bad-recipe',
      `${path.join(dir, 'layerlens.json')} has a JSON error at line 3, column 1 (unexpected end of the file; expected a value (an object, array, string, number, true, false or null)); fix it, or delete the file, and Layer Lens will save the freeze plan there.`,
    );
  });

  it('fine-tune settings out of range (from a hostile message, not the recipe) are refused before anything loads', async () => {
    await refuses(
      finetune({ modelJsonPath: fixture('tiny-cnn', 'model.json'), datasetDir: root, settings: { epochs: -5, batchSize: 0 }, frozen: [], onProgress: () => undefined }),
      'bad-recipe',
      'the fine-tune settings are not valid (epochs: Too small: expected number to be >=1; batchSize: Too small: expected number to be >=1); fix them in layerlens.json.',
    );
  });
});

// ---------------------------------------------------------------------------

describe('hostile webview messages (checked before use)', () => {
  const cases: [string, unknown, string][] = [
    ['not an object', 42, 'not an object (number)'],
    ['an id that is not a safe integer', { kind: 'request', id: 2 ** 60, method: 'ready', params: {} }, 'no numeric id'],
    ['a method from the prototype', { kind: 'request', id: 1, method: 'constructor', params: {} }, 'unknown request "constructor"'],
    ['params that are not an object', { kind: 'request', id: 1, method: 'inspect', params: null }, 'malformed "inspect" request (params: Invalid input: expected object, received null)'],
    ['an extra key smuggled into params', { kind: 'request', id: 1, method: 'setFrozen', params: JSON.parse('{"paths": ["a"], "frozen": true, "__proto__": {"polluted": 1}}') }, 'malformed "setFrozen" request (params: Unrecognized key: "__proto__")'],
    ['a path list of 100001 entries', { kind: 'request', id: 1, method: 'setFrozen', params: { paths: Array(100001).fill('a'), frozen: true } }, 'malformed "setFrozen" request (paths: Too big: expected array to have <=100000 items)'],
    ['a 5000-character image path', { kind: 'request', id: 1, method: 'inspect', params: { imagePath: 'x'.repeat(5000), normalization: 'raw' } }, 'malformed "inspect" request (imagePath: Too big: expected string to have <=4096 characters)'],
  ];
  for (const [what, m, reason] of cases) {
    it(`drops ${what}`, () => {
      const r = checkWebviewMessage(m);
      assert.equal(r.ok, false);
      assert.equal((r as { reason: string }).reason, reason);
    });
  }
});
