import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { before, describe, it } from 'node:test';
import { fixture } from '../fixtures/models';
import { setup } from './helpers';

const root = path.resolve(__dirname, '../..');

/** Runs the CLI from source as a user would run the built one. */
function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli/main.ts'), ...args], { cwd: root, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('layer-lens CLI', () => {
  before(setup);

  it('prints the layer table with totals', () => {
    const r = cli('summary', fixture('nested', 'model.json'));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^features\s+Sequential\s+\[\?, 4\]\s+160/m);
    assert.match(r.stdout, /^ {4}dw1\s+DepthwiseConv2D\s+\[\?, 8, 8, 4\]\s+36\s+yes$/m);
    assert.match(r.stdout, /Total params: 197 {3}Trainable: 189 {3}Non-trainable: 8/);
    assert.equal(r.stderr, '');
  });

  it('prints JSON with --json', () => {
    const r = cli('summary', fixture('tiny-cnn', 'model.json'), '--json', '--backend', 'cpu');
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as { layers: { name: string; depth: number }[]; totalParams: number };
    assert.equal(s.totalParams, 451);
    assert.deepEqual(s.layers.map((l) => l.name), ['conv1', 'bn1', 'pool1', 'conv2', 'gap', 'head']);
  });

  it('exits 1 with one clear line on a broken model', () => {
    const r = cli('summary', fixture('bad', 'missing-shard', 'model.json'));
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^layer-lens: weights shard group1-shard2of3\.bin is missing next to .*model\.json/);
    assert.equal(r.stderr.trim().split('\n').length, 1, 'one line, no stack trace');
  });

  for (const args of [[], ['frobnicate'], ['summary'], ['summary', 'a', 'b'], ['summary', 'x.json', '--bogus'], ['summary', 'x.json', '--backend', 'gpu'],
    ['finetune', 'm.json', 'data', '--freeze', 'all'], ['finetune', 'm.json', 'data', '--freeze', 'none', '--freeze-up-to', 'conv1'], ['finetune', 'm.json', 'data', '--memory-limit', '10']]) {
    it(`gives usage and exit 2 for: ${args.join(' ') || '(no arguments)'}`, () => {
      const r = cli(...args);
      assert.equal(r.code, 2);
      assert.match(r.stdout + r.stderr, /Usage: layer-lens <command>/);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    });
  }
});
