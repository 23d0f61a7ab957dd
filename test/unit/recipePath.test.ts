import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { modelPathsForRecipe, recipePathFor } from '../../src/engine/recipe';

describe('which recipe belongs to which model', () => {
  it('a model.json owns layerlens.json in its folder', () => {
    assert.equal(recipePathFor('/w/m/model.json'), path.join('/w/m', 'layerlens.json'));
    assert.deepEqual(modelPathsForRecipe('/w/m/layerlens.json'), [path.join('/w/m', 'model.json')]);
  });
  it('Keras files sharing a folder each get their own recipe', () => {
    assert.equal(recipePathFor('/w/k/cnn.h5'), path.join('/w/k', 'cnn.layerlens.json'));
    assert.equal(recipePathFor('/w/k/mlp.keras'), path.join('/w/k', 'mlp.layerlens.json'));
    assert.ok(modelPathsForRecipe('/w/k/cnn.layerlens.json').includes(path.join('/w/k', 'cnn.h5')));
    assert.ok(modelPathsForRecipe('/w/k/mlp.layerlens.json').includes(path.join('/w/k', 'mlp.keras')));
  });
});
