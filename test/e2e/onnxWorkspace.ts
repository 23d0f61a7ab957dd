// The workspace of the ONNX end-to-end session: an ONNX model written by the
// project's own writer (test/fixtures/onnx.ts) with its labels and a short
// recipe, a picture, and a folder-per-class dataset at the model's input size.
//
//   models/pets/twin.onnx           conv1 · bn1 · relu1 · dw · clip · pw · add · gap · flatten · dense · softmax
//   models/pets/labels.txt          circle, square, star, triangle
//   models/pets/twin.layerlens.json 2 epochs of batches of 16
//   images/stripe.png               a 32x32 picture
//   data/stripes/{checker,horizontal,vertical}/   32x32 images, 16 per class
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { makeStripesDataset, stripesClasses } from '../fixtures/models';
import { twinLabels, twinOnnx, twinPairs, twinTfjs } from '../fixtures/onnx';

export const ONNX_NODES = twinPairs.map(([node]) => node);
export const ONNX_LABELS = twinLabels;

export interface OnnxWorkspace {
  readonly dir: string;
  readonly model: string;
  readonly image: string;
  readonly dataset: string;
  readonly classes: readonly string[];
  remove(): Promise<void>;
}

export async function makeOnnxWorkspace(dir?: string): Promise<OnnxWorkspace> {
  const root = dir ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'layer-lens-onnx-ws-')));
  const at = (...p: string[]) => path.join(root, ...p);
  await fs.mkdir(at('models', 'pets'), { recursive: true });
  const tfjs = twinTfjs();
  await fs.writeFile(at('models', 'pets', 'twin.onnx'), twinOnnx(tfjs));
  tfjs.dispose();
  await fs.writeFile(at('models', 'pets', 'labels.txt'), `${twinLabels.join('\n')}\n`);
  await fs.writeFile(at('models', 'pets', 'twin.layerlens.json'), `${JSON.stringify({ finetune: { epochs: 2, batchSize: 16 } }, null, 2)}\n`);
  makeStripesDataset(at('data', 'stripes'), { size: 32, perClass: 16, seed: 5, jpegEvery: 0 });
  await fs.mkdir(at('images'), { recursive: true });
  await fs.copyFile(at('data', 'stripes', 'checker', 'checker-000.png'), at('images', 'stripe.png'));
  return {
    dir: root,
    model: at('models', 'pets', 'twin.onnx'),
    image: at('images', 'stripe.png'),
    dataset: at('data', 'stripes'),
    classes: stripesClasses,
    remove: () => fs.rm(root, { recursive: true, force: true }),
  };
}

if (require.main === module) {
  makeOnnxWorkspace(process.argv[2] ? path.resolve(process.argv[2]) : undefined).then(
    (ws) => console.log(ws.dir),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
