// The workspace the Layer Lens end-to-end tests open: real models made by the
// fixture builder, copied into a fresh temp folder so that nothing a test
// writes (layerlens.json, fine-tuned folders) reaches the shared fixtures.
//
//   models/tiny-cnn/       conv1 · bn1 (BatchNormalization) · pool1 · conv2 · gap · head
//                          (3 classes), with a layerlens.json recipe: 2 epochs of
//                          batches of 16, no flips (a fine-tune takes seconds)
//   models/nested/         a Teachable-Machine-like Sequential(Sequential(functional), Sequential)
//   models/missing-shard/  a sharded tiny-cnn with group1-shard2of3.bin deleted
//   images/photo.jpg, images/rgb.png
//   data/stripes/{checker,horizontal,vertical}/   16x16 images, a few per class
//                          (3 classes: the same count as tiny-cnn's outputs)
//
// Run it to get a workspace to look at by hand:
//   node --import tsx test/e2e/workspace.ts [dir]
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { ensureFixtures, fixture, makeStripesDataset, stripesClasses } from '../fixtures/models';

/** The fine-tune settings of tiny-cnn's recipe (layerlens.json). */
export const FINETUNE_RECIPE = {
  finetune: { epochs: 2, batchSize: 16, augment: { flip: { enabled: false } } },
} as const;

export interface LayerLensWorkspace {
  readonly dir: string;
  /** model.json paths, by the name the Models view shows (the folder's name). */
  readonly models: { readonly tinyCnn: string; readonly nested: string; readonly broken: string };
  /** The shard the broken model's manifest lists but its folder lacks. */
  readonly missingShard: string;
  /** tiny-cnn's layerlens.json. */
  readonly recipe: string;
  readonly images: { readonly photo: string; readonly rgb: string };
  /** The dataset folder (one sub-folder per class). */
  readonly dataset: string;
  readonly classes: readonly string[];
  remove(): Promise<void>;
}

async function copyDir(from: string, to: string): Promise<void> {
  await fs.cp(from, to, { recursive: true });
}

/**
 * Builds the workspace in `dir` (default: a new temp folder). The fixtures are
 * generated first if they are not there yet (test/fixtures/generated/).
 */
export async function makeLayerLensWorkspace(dir?: string): Promise<LayerLensWorkspace> {
  await ensureFixtures();
  const root = dir ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'layer-lens-ws-')));
  await fs.mkdir(root, { recursive: true });
  const at = (...p: string[]) => path.join(root, ...p);

  await copyDir(fixture('tiny-cnn'), at('models', 'tiny-cnn'));
  await fs.writeFile(at('models', 'tiny-cnn', 'layerlens.json'), `${JSON.stringify(FINETUNE_RECIPE, null, 2)}\n`);
  await copyDir(fixture('nested'), at('models', 'nested'));
  await copyDir(fixture('bad', 'missing-shard'), at('models', 'missing-shard'));
  const missingShard = 'group1-shard2of3.bin';
  // The fixture builder deleted it; make sure, as the test depends on it.
  await fs.rm(at('models', 'missing-shard', missingShard), { force: true });

  await fs.mkdir(at('images'), { recursive: true });
  await fs.copyFile(fixture('images', 'photo.jpg'), at('images', 'photo.jpg'));
  await fs.copyFile(fixture('images', 'rgb.png'), at('images', 'rgb.png'));

  // 16 images per class at the model's input size: 3 batches of 16 per epoch
  // after the 20% validation split.
  makeStripesDataset(at('data', 'stripes'), { size: 16, perClass: 16, seed: 5 });

  return {
    dir: root,
    models: {
      tinyCnn: at('models', 'tiny-cnn', 'model.json'),
      nested: at('models', 'nested', 'model.json'),
      broken: at('models', 'missing-shard', 'model.json'),
    },
    missingShard,
    recipe: at('models', 'tiny-cnn', 'layerlens.json'),
    images: { photo: at('images', 'photo.jpg'), rgb: at('images', 'rgb.png') },
    dataset: at('data', 'stripes'),
    classes: stripesClasses,
    remove: () => fs.rm(root, { recursive: true, force: true }),
  };
}

if (require.main === module) {
  makeLayerLensWorkspace(process.argv[2] ? path.resolve(process.argv[2]) : undefined).then(
    (ws) => console.log(ws.dir),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
