/** Writes the test fixtures (see test/fixtures/models.ts). */
import * as tf from '@tensorflow/tfjs';
import { makeFixtures, generatedDir } from '../test/fixtures/models';
import * as fs from 'node:fs';
import * as path from 'node:path';

void (async () => {
  await tf.setBackend('cpu');
  await makeFixtures();
  fs.writeFileSync(path.join(generatedDir, '.complete'), '');
  process.stdout.write(`fixtures written to ${path.relative(process.cwd(), generatedDir)}\n`);
})();
