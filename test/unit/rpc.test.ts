import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RemoteError, RpcClient, RpcServer, type RpcMessage } from '../../src/protocol/rpc';

interface TestApi {
  add: { params: { a: number; b: number }; result: number; progress: never };
  count: { params: { to: number }; result: string; progress: number };
  fail: { params: Record<string, never>; result: void; progress: never };
}

function pair() {
  let client!: RpcClient<TestApi>;
  const server = new RpcServer<TestApi>(
    { post: (m) => queueMicrotask(() => client.handle(structuredClone(m))) },
    {
      add: ({ a, b }) => a + b,
      count: async ({ to }, ctx) => {
        for (let i = 1; i <= to; i++) {
          if (ctx.signal.aborted) throw Object.assign(new Error('stopped'), { code: 'cancelled' });
          ctx.progress(i);
          await new Promise((r) => setTimeout(r, 5));
        }
        return 'done';
      },
      fail: () => {
        throw new Error('boom');
      },
    },
    (e) => ({ code: (e as { code?: string }).code ?? 'internal', message: (e as Error).message }),
  );
  client = new RpcClient<TestApi>({ post: (m: RpcMessage) => queueMicrotask(() => void server.handle(structuredClone(m))) });
  return client;
}

describe('rpc', () => {
  it('answers requests and streams progress', async () => {
    const c = pair();
    assert.equal(await c.call('add', { a: 2, b: 3 }), 5);
    const seen: number[] = [];
    assert.equal(await c.call('count', { to: 3 }, { onProgress: (n) => seen.push(n) }), 'done');
    assert.deepEqual(seen, [1, 2, 3]);
    assert.equal(c.inFlight, 0);
  });

  it('carries errors with their code', async () => {
    const c = pair();
    await assert.rejects(c.call('fail', {}), (e: unknown) => e instanceof RemoteError && e.code === 'internal' && e.message === 'boom');
  });

  it('cancels through an AbortSignal', async () => {
    const c = pair();
    const ac = new AbortController();
    const seen: number[] = [];
    const p = c.call('count', { to: 1000 }, { signal: ac.signal, onProgress: (n) => (seen.push(n), n === 2 && ac.abort()) });
    await assert.rejects(p, (e: unknown) => e instanceof RemoteError && e.code === 'cancelled');
    assert.ok(seen.length < 10, `stopped after ${seen.length} steps`);
  });

  it('rejects everything in flight when the other side dies', async () => {
    const c = new RpcClient<TestApi>({ post: () => undefined });
    const p = c.call('add', { a: 1, b: 1 });
    c.failAll(new RemoteError('worker-exit', 'gone'));
    await assert.rejects(p, /gone/);
  });
});
