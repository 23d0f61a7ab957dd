import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkWebviewMessage } from '../../src/protocol/webviewApi';

describe('webview messages are validated before use', () => {
  const ok = [
    { kind: 'request', id: 1, method: 'ready', params: {} },
    { kind: 'request', id: 2, method: 'inspect', params: { normalization: 'imagenet' } },
    { kind: 'request', id: 3, method: 'layerMaps', params: { layerPath: 'features/backbone/Conv1', maxSize: 64 } },
    { kind: 'request', id: 4, method: 'setFrozen', params: { paths: ['conv1'], frozen: true } },
    { kind: 'request', id: 5, method: 'exportPng', params: { fileName: 'x.png', png: new Uint8Array([1, 2]) } },
    { kind: 'cancel', id: 6 },
  ];
  for (const m of ok) it(`accepts ${JSON.stringify(m).slice(0, 70)}`, () => assert.deepEqual(checkWebviewMessage(m), { ok: true }));

  const bad: [unknown, RegExp][] = [
    [null, /not an object/],
    ['ready', /not an object/],
    [{ kind: 'request', method: 'ready', params: {} }, /no numeric id/],
    [{ kind: 'request', id: 1.5, method: 'ready', params: {} }, /no numeric id/],
    [{ kind: 'response', id: 1, ok: true, result: 1 }, /unexpected kind "response"/],
    [{ kind: 'request', id: 1, method: 'deleteEverything', params: {} }, /unknown request "deleteEverything"/],
    [{ kind: 'request', id: 1, method: '__proto__', params: {} }, /unknown request "__proto__"/],
    [{ kind: 'request', id: 1, method: 'toString', params: {} }, /unknown request "toString"/],
    [{ kind: 'request', id: 1, method: 'ready', params: { extra: 1 } }, /malformed "ready" request \(params: Unrecognized key/],
    [{ kind: 'request', id: 1, method: 'inspect', params: { normalization: 'sepia' } }, /malformed "inspect" request \(normalization:/],
    [{ kind: 'request', id: 1, method: 'layerMaps', params: { layerPath: 'a', maxSize: 1e9 } }, /malformed "layerMaps" request \(maxSize:/],
    [{ kind: 'request', id: 1, method: 'layerMaps', params: { layerPath: '', maxSize: 64 } }, /malformed "layerMaps" request \(layerPath:/],
    [{ kind: 'request', id: 1, method: 'setFrozen', params: { paths: 'conv1', frozen: true } }, /malformed "setFrozen" request \(paths:/],
    [{ kind: 'request', id: 1, method: 'exportPng', params: { fileName: 'x.png', png: [1, 2, 3] } }, /malformed "exportPng" request \(png:/],
    [{ kind: 'request', id: 1, method: 'gradCam', params: { layerPath: 'c', classIndex: -1 } }, /malformed "gradCam" request \(classIndex:/],
  ];
  for (const [m, why] of bad) {
    it(`drops ${JSON.stringify(m)?.slice(0, 70)}`, () => {
      const r = checkWebviewMessage(m);
      assert.equal(r.ok, false);
      assert.match((r as { reason: string }).reason, why);
    });
  }
});
