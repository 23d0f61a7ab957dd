/**
 * The Models view tells Layer Lens's trained models apart by their val
 * accuracy and time (src/views/modelOrigin.ts), and cuts long layer names in
 * the middle (middleEllipsis).
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { middleEllipsis } from '../../src/protocol/model';
import { modelOrigin, originDescription, originTooltip, readModelOrigin, runLabel } from '../../src/views/modelOrigin';

const created = new Date(2026, 11, 3, 18, 42).toISOString();
const epochs = [1, 2, 3].map((epoch) => ({ epoch, loss: 1, acc: 0.5, val_loss: 1, val_acc: [0.4, 0.7, 0.55][epoch - 1], lr: 0.001, imagesPerSec: 100, seconds: 1 }));

describe('what sets a trained model apart in the Models view', () => {
  it('takes the val accuracy of the weights that were saved: the best epoch when restored, else the last', () => {
    const meta = { createdBy: 'Layer Lens', created, dataset: '../datasets/glyphs' };
    const kept = modelOrigin(meta, { bestEpoch: 2, restored: true, epochs })!;
    assert.equal(kept.valAcc, 0.7);
    assert.equal(kept.epoch, 2);
    assert.equal(originDescription(kept), 'val acc 70% · fine-tuned · 3 Dec 18:42');
    assert.equal(originDescription(kept, false), 'val acc 70% · fine-tuned');
    assert.equal(originTooltip(kept), 'Fine-tuned by Layer Lens 3 Dec 18:42 on ../datasets/glyphs: val acc 70.0% at epoch 2 of 3');
    assert.equal(modelOrigin(meta, { bestEpoch: 2, restored: true, epochs, evaluation: { split: 'validation', accuracy: 0.72 } })!.valAcc, 0.72, 'the saved model\'s evaluation when there is one');
    assert.equal(modelOrigin(meta, { bestEpoch: 2, restored: true, epochs, evaluation: { split: 'all', accuracy: 0.9 } })!.valAcc, 0.7, 'not an evaluation on every image');
    const last = modelOrigin(meta, { bestEpoch: 2, restored: false, epochs })!;
    assert.equal(last.valAcc, 0.55);
    assert.equal(originDescription(modelOrigin(meta, undefined)!), 'fine-tuned · 3 Dec 18:42', 'no metrics.json: no accuracy');
  });

  it('reads a rotation pretext\'s accuracy from its metadata, and nothing from models Layer Lens did not make', () => {
    const pretext = modelOrigin({ createdBy: 'Layer Lens', created, pretext: { val_acc: 0.9, epochsRun: 5, images: '../images' } }, undefined)!;
    assert.equal(originDescription(pretext), 'rotation val acc 90% · rotation-pretrained · 3 Dec 18:42');
    assert.equal(modelOrigin({ tmVersion: '2.4.10', labels: ['a'] }, undefined), undefined);
    assert.equal(modelOrigin('not an object', { epochs }), undefined);
    assert.equal(modelOrigin({ createdBy: 'Layer Lens', created: 'garbage' }, { epochs: 'x' })!.valAcc, undefined);
  });

  it('reads the files next to model.json, and ignores broken ones', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'origin-'));
    try {
      fs.writeFileSync(path.join(dir, 'model.json'), '{}');
      assert.equal(await readModelOrigin(path.join(dir, 'model.json')), undefined, 'no metadata.json');
      fs.writeFileSync(path.join(dir, 'metadata.json'), JSON.stringify({ createdBy: 'Layer Lens', created }));
      fs.writeFileSync(path.join(dir, 'metrics.json'), '{"epochs": [');
      const o = await readModelOrigin(path.join(dir, 'model.json'));
      assert.equal(o?.kind, 'fine-tuned');
      assert.equal(o?.valAcc, undefined, 'a truncated metrics.json counts as none');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names a run\'s folder by its parent and time', () => {
    assert.deepEqual(runLabel('shapes-cnn-finetuned-20261203-1842'), { label: 'shapes-cnn · 3 Dec 18:42', kind: 'fine-tuned' });
    assert.deepEqual(runLabel('shapes-cnn-finetuned-20261203-1842-2'), { label: 'shapes-cnn · 3 Dec 18:42 (2)', kind: 'fine-tuned' });
    assert.equal(runLabel('mobilenet_v2_teachable-rotation-pretrained-20260101-0905')?.label, 'mobilenet_v2_… · 1 Jan 09:05');
    assert.equal(runLabel('shapes-cnn'), undefined);
    assert.equal(runLabel('shapes-cnn-finetuned-latest'), undefined);
  });

  it('cuts long names in the middle, keeping the end that tells a depthwise layer from its BatchNormalization', () => {
    assert.equal(middleEllipsis('conv1', 10), 'conv1');
    const dw = middleEllipsis('block_16_depthwise_expanded_conv', 20);
    const bn = middleEllipsis('block_16_depthwise_expanded_conv_BN', 20);
    assert.equal(dw.length, 20);
    assert.notEqual(dw, bn);
    assert.ok(bn.endsWith('_BN') && bn.startsWith('block_'), bn);
    assert.equal(middleEllipsis('tiny-cnn-finetuned-20261203-1842', 22), 'tiny-cnn…20261203-1842', 'a run keeps its parent\'s name and its time');
    assert.equal(middleEllipsis('abcdef', 1), '…');
  });
});
