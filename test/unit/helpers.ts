/** Shared setup for unit tests: the wasm backend (the one we ship tested) and the fixtures. */
import * as tf from '@tensorflow/tfjs';
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

/** The largest absolute difference between two equally long arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'same number of values');
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** A model's prediction for `x`, read back. */
export function predict(m: tf.LayersModel, x: tf.Tensor): Float32Array {
  return tf.tidy(() => (m.predict(x) as tf.Tensor).dataSync() as Float32Array);
}
