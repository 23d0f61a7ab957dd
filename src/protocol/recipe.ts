/**
 * The recipe file next to a model (layerlens.json): the freeze plan and the
 * fine-tune settings, human-editable, validated here with zod (the same rules
 * as the JSON schema media/layerlens.schema.json that package.json contributes
 * for completion in the editor).
 */
import { z } from 'zod';
import { normalizations } from './model';

export const recipeFileName = 'layerlens.json';

const strength = (max: number, def: number) => z.number().min(0).max(max).default(def);

// Object defaults are `prefault({})`: the empty object is parsed on every use,
// so each recipe gets fresh nested objects. A `.default(obj)` hands out the
// same nested objects every time, and editing one recipe's augment.flip
// would change the default of every later one.

export const augmentSchema = z
  .object({
    flip: z.object({ enabled: z.boolean().default(true) }).strict().prefault({}),
    rotate: z.object({ enabled: z.boolean().default(false), degrees: strength(180, 15) }).strict().prefault({}),
    zoom: z.object({ enabled: z.boolean().default(false), amount: strength(0.5, 0.1) }).strict().prefault({}),
    brightness: z.object({ enabled: z.boolean().default(false), amount: strength(1, 0.2) }).strict().prefault({}),
    contrast: z.object({ enabled: z.boolean().default(false), amount: strength(1, 0.2) }).strict().prefault({}),
  })
  .strict();

export const finetuneSchema = z
  .object({
    epochs: z.number().int().min(1).max(10000).default(10),
    batchSize: z.number().int().min(1).max(4096).default(32),
    learningRate: z.number().positive().max(10).default(0.001),
    optimizer: z.enum(['adam', 'sgd', 'rmsprop']).default('adam'),
    validationFraction: z.number().min(0).max(0.9).default(0.2),
    seed: z.number().int().min(0).max(2 ** 31 - 1).default(7),
    /**
     * Threads that compute a training step: each takes a share of the batch
     * (data-parallel; src/engine/train/parallel.ts). 1 is the engine's own.
     */
    threads: z.number().int().min(1).max(8).default(1),
    /** [height, width]; defaults to the model's input size. */
    imageSize: z.tuple([z.number().int().min(8).max(2048), z.number().int().min(8).max(2048)]).optional(),
    normalization: z.enum(normalizations).optional(),
    /** Layer path after which the new head goes; defaults to the last feature layer. */
    cutLayer: z.string().min(1).optional(),
    augment: augmentSchema.prefault({}),
    /** Which epoch's weights the saved model gets: the best by the monitor (default) or the last. */
    keep: z.enum(['best', 'last']).default('best'),
    earlyStopping: z
      .object({
        monitor: z.enum(['val_loss', 'val_acc', 'loss', 'acc']).default('val_loss'),
        patience: z.number().int().min(1).max(1000).default(3),
        restoreBestWeights: z.boolean().default(true),
      })
      .strict()
      .optional(),
    lrSchedule: z
      .discriminatedUnion('kind', [
        // Bounded like the other settings, so that the JSON schema (where an
        // integer is unbounded) and zod (safe integers only) agree.
        z.object({ kind: z.literal('step'), every: z.number().int().min(1).max(10000), factor: z.number().positive().max(1) }).strict(),
        z.object({ kind: z.literal('cosine'), minLearningRate: z.number().min(0).max(10).default(0) }).strict(),
      ])
      .optional(),
  })
  .strict();

export const recipeSchema = z
  .object({
    $schema: z.string().optional(),
    /** Paths of frozen layers (nested ones as "outer/inner/layer"). */
    freeze: z.array(z.string().min(1)).default([]),
    finetune: finetuneSchema.prefault({}),
  })
  .strict();

export type Recipe = z.infer<typeof recipeSchema>;
export type FinetuneSettings = z.infer<typeof finetuneSchema>;
export type AugmentSettings = z.infer<typeof augmentSchema>;

export const defaultRecipe = (): Recipe => recipeSchema.parse({});
