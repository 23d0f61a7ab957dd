/** The rotation pretext task's settings and result (src/engine/train/pretext.ts). */

/** Class names of the rotation task, in label order (counter-clockwise turns). */
export const rotationLabels = ['rot0', 'rot90', 'rot180', 'rot270'];

export interface PretextSettings {
  epochs: number;
  /** Images per batch; each batch trains on their 4 rotations (4x as many samples). */
  batchSize: number;
  learningRate: number;
  seed: number;
  /** Fraction of the images held out to report val_acc (0 below 20 images). */
  validationFraction: number;
}

export const defaultPretextSettings: PretextSettings = { epochs: 10, batchSize: 16, learningRate: 0.002, seed: 7, validationFraction: 0.1 };

export interface PretextResult {
  outputPath: string;
  /** The layer where the backbone ends (the new head follows it). */
  cutLayer: string;
  images: number;
  trainImages: number;
  valImages: number;
  epochsRun: number;
  /** Rotation accuracy at the last epoch (train, and held out when there is a validation set). */
  acc: number;
  valAcc?: number;
  seconds: number;
}

