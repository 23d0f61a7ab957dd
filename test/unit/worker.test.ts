import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { COMPUTE_NICENESS } from '../../src/engine/threadPriority';
import { EngineClient } from '../../src/engineClient';
import { RemoteError } from '../../src/protocol/rpc';
import { fixture } from '../fixtures/models';
import { setup } from './helpers';

const dist = path.resolve(__dirname, '../../dist');

describe('compute worker (bundled dist/worker.js)', { skip: !fs.existsSync(path.join(dist, 'worker.js')) && 'run npm run build first' }, () => {
  const logs: string[] = [];
  let backend = '';
  const client = new EngineClient({
    distDir: dist,
    backend: () => 'auto',
    log: { info: (m) => logs.push(m), warn: (m) => logs.push(m), error: (m) => logs.push(m) },
    onBackend: (b) => (backend = b.name),
    cancelGraceMs: 500,
  });
  before(setup);
  after(() => client.dispose());

  it('starts lazily and chooses wasm when tfjs-node is absent', async () => {
    assert.equal(client.started, false);
    const summary = await client.call('loadModel', { path: fixture('tiny-cnn', 'model.json') });
    assert.equal(summary.totalParams, 451);
    assert.equal(client.started, true);
    assert.equal(backend, 'wasm', 'bundled worker finds its .wasm files in dist/');
  });

  it('computes at a lower priority than the extension host (Linux: the worker thread alone is reniced)', { skip: process.platform !== 'linux' && 'thread priorities are set on Linux only' }, async () => {
    await client.call('memory', {});
    const nice = (tid: string) => Number(fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[16]);
    const threads = fs.readdirSync('/proc/self/task');
    assert.equal(nice(String(process.pid)), 0, 'the calling thread (the extension host) keeps its priority');
    assert.ok(threads.some((tid) => nice(tid) === COMPUTE_NICENESS), `a thread at nice ${COMPUTE_NICENESS}: ${threads.map((t) => `${t}:${nice(t)}`).join(' ')}`);
  });

  it('reports load failures with the engine message and code', async () => {
    await assert.rejects(
      client.call('loadModel', { path: fixture('bad', 'escapes', 'dotdot', 'model.json') }),
      (e: unknown) => e instanceof RemoteError && e.code === 'unsafe-path' && /leaves the model folder/.test(e.message),
    );
  });

  it('survives the worker dying and starts a fresh one on the next request', async () => {
    await client.restart();
    assert.equal(client.started, false);
    const summary = await client.call('loadModel', { path: fixture('nested', 'model.json') });
    assert.equal(summary.layers.length, 11);
    const mem = await client.call('memory', {});
    assert.ok(mem.numTensors > 0);
  });
});
