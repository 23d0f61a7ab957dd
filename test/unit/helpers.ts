/** Shared setup for unit tests: the wasm backend (the one we ship tested) and the fixtures. */
import * as assert from 'node:assert/strict';
import { initBackend } from '../../src/engine/backend';
import { EngineError } from '../../src/engine/errors';
import { ensureFixtures } from '../fixtures/models';

export async function setup(): Promise<void> {
  await initBackend({ prefer: 'wasm' });
  await ensureFixtures();
}

/** Asserts that `p` rejects with an EngineError of `code` whose message matches `pattern`. */
export async function rejectsWith(p: Promise<unknown>, code: string, pattern: RegExp): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof EngineError, `expected an EngineError, got ${String(e)}`);
    assert.equal(e.code, code, `wrong code; message was: ${e.message}`);
    assert.match(e.message, pattern);
    return;
  }
  assert.fail(`expected a rejection with code ${code}`);
}
