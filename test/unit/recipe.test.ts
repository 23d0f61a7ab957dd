/**
 * layerlens.json: the JSON schema shipped for the editor agrees with the zod
 * schema the engine checks with; reading gives placed, actionable diagnostics
 * and a usable recipe whatever the file says; writing is atomic and keeps
 * what the user wrote.
 */
import Ajv from 'ajv';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { loadModel } from '../../src/engine/model';
import { parseRecipe, readRecipe, recipePathFor, serializeRecipe, writeRecipe, type RecipeDiagnostic } from '../../src/engine/recipe';
import { parseJsonWithSpans } from '../../src/engine/recipeJson';
import type { LayerRow } from '../../src/protocol/model';
import { defaultRecipe, recipeSchema } from '../../src/protocol/recipe';
import { fixture } from '../fixtures/models';
import { rejectsWith, setup } from './helpers';

const schemaFile = path.resolve(__dirname, '../../media/layerlens.schema.json');
type Json = Record<string, unknown>;
const jsonSchema = JSON.parse(fs.readFileSync(schemaFile, 'utf8')) as Json;

// One folder for the whole file, removed at the end: tests clean up after themselves.
const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'layerlens-recipe-'));
after(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

function tmpDir(): string {
  return fs.mkdtempSync(path.join(tmpRoot, 'case-'));
}

const ft = (finetune: Json): Json => ({ finetune });

/** Accepted by both schemas. */
const valid: unknown[] = [
  {},
  { $schema: './layerlens.schema.json' },
  { freeze: [] },
  { freeze: ['conv1', 'outer/inner/bn'] },
  ft({}),
  ft({ epochs: 1, batchSize: 4096, learningRate: 10, optimizer: 'sgd', validationFraction: 0, seed: 0 }),
  ft({ epochs: 10000, batchSize: 1, learningRate: 1e-6, optimizer: 'rmsprop', validationFraction: 0.9, seed: 2147483647 }),
  ft({ imageSize: [8, 2048] }),
  ft({ normalization: 'imagenet', cutLayer: 'global_average_pooling2d_1' }),
  ft({ augment: {} }),
  ft({ augment: { flip: { enabled: false }, rotate: { enabled: true, degrees: 180 }, zoom: { amount: 0.5 }, brightness: { enabled: true, amount: 0 }, contrast: { amount: 1 } } }),
  ft({ earlyStopping: {} }),
  ft({ earlyStopping: { monitor: 'acc', patience: 1000, restoreBestWeights: false } }),
  ft({ lrSchedule: { kind: 'step', every: 3, factor: 1 } }),
  ft({ lrSchedule: { kind: 'cosine' } }),
  ft({ lrSchedule: { kind: 'cosine', minLearningRate: 0 } }),
  ft({ epochs: 5.0 }),
  ft({ threads: 1 }),
  ft({ threads: 8 }),
];

/** Refused by both schemas. */
const invalid: unknown[] = [
  [],
  'recipe',
  null,
  { extra: 1 },
  { freeze: 'conv1' },
  { freeze: [''] },
  { freeze: [3] },
  { $schema: 5 },
  { finetune: [] },
  ft({ epochs: 0 }),
  ft({ epochs: 10001 }),
  ft({ epochs: 2.5 }),
  ft({ epochs: '10' }),
  ft({ batchSize: 0 }),
  ft({ batchSize: 4097 }),
  ft({ threads: 0 }),
  ft({ threads: 9 }),
  ft({ threads: 1.5 }),
  ft({ learningRate: 0 }),
  ft({ learningRate: -0.1 }),
  ft({ learningRate: 10.5 }),
  ft({ optimizer: 'adamw' }),
  ft({ validationFraction: 0.95 }),
  ft({ validationFraction: -0.1 }),
  ft({ seed: -1 }),
  ft({ seed: 2147483648 }),
  ft({ imageSize: [224] }),
  ft({ imageSize: [224, 224, 3] }),
  ft({ imageSize: [4, 224] }),
  ft({ imageSize: [224, 224.5] }),
  ft({ imageSize: 224 }),
  ft({ normalization: 'minmax' }),
  ft({ cutLayer: '' }),
  ft({ learning_rate: 0.1 }),
  ft({ augment: { flip: { enabled: 'yes' } } }),
  ft({ augment: { flip: { enabled: true, amount: 1 } } }),
  ft({ augment: { rotate: { degrees: 181 } } }),
  ft({ augment: { zoom: { amount: 0.6 } } }),
  ft({ augment: { brightness: { amount: -0.1 } } }),
  ft({ augment: { contrast: { amount: 1.5 } } }),
  ft({ augment: { blur: {} } }),
  ft({ earlyStopping: { monitor: 'val_accuracy' } }),
  ft({ earlyStopping: { patience: 0 } }),
  ft({ earlyStopping: { patience: 1001 } }),
  ft({ earlyStopping: { restoreBestWeights: 'yes' } }),
  ft({ lrSchedule: { kind: 'linear' } }),
  ft({ lrSchedule: { every: 3, factor: 0.5 } }),
  ft({ lrSchedule: { kind: 'step', factor: 0.5 } }),
  ft({ lrSchedule: { kind: 'step', every: 3, factor: 0 } }),
  ft({ lrSchedule: { kind: 'step', every: 3, factor: 1.5 } }),
  ft({ lrSchedule: { kind: 'step', every: 0, factor: 0.5 } }),
  ft({ lrSchedule: { kind: 'step', every: 10001, factor: 0.5 } }),
  ft({ lrSchedule: { kind: 'step', every: 3, factor: 0.5, minLearningRate: 0 } }),
  ft({ lrSchedule: { kind: 'cosine', minLearningRate: -1 } }),
  ft({ lrSchedule: { kind: 'cosine', minLearningRate: 11 } }),
];

/** The keywords that decide validity; descriptions and editor hints aside. */
const validationKeys = ['type', 'enum', 'const', 'minimum', 'maximum', 'exclusiveMinimum', 'minLength', 'minItems', 'maxItems', 'additionalProperties', 'additionalItems', 'required'];

/** Walks the shipped schema beside zod's own rendering of the schema, keyword by keyword. */
function compareSchemas(ours: Json, theirs: Json, at: string, problems: string[]): void {
  for (const k of validationKeys) {
    const a = JSON.stringify(ours[k] ?? null);
    const b = JSON.stringify(k === 'required' && Array.isArray(theirs[k]) ? [...(theirs[k] as string[])] : (theirs[k] ?? null));
    if (a !== b) problems.push(`${at}: ${k} is ${a} in media/layerlens.schema.json but ${b} in the zod schema`);
  }
  if (theirs['default'] !== undefined && typeof theirs['default'] !== 'object' && JSON.stringify(ours['default']) !== JSON.stringify(theirs['default'])) {
    problems.push(`${at}: default is ${JSON.stringify(ours['default'])} but zod's is ${JSON.stringify(theirs['default'])}`);
  }
  if (at !== '(root)' && typeof ours['description'] !== 'string') problems.push(`${at}: no description`);
  const op = (ours['properties'] ?? {}) as Record<string, Json>;
  const tp = (theirs['properties'] ?? {}) as Record<string, Json>;
  const names = new Set([...Object.keys(op), ...Object.keys(tp)]);
  for (const n of names) {
    if (!op[n] || !tp[n]) problems.push(`${at}.${n}: only in ${op[n] ? 'media/layerlens.schema.json' : 'the zod schema'}`);
    else compareSchemas(op[n], tp[n], `${at}.${n}`, problems);
  }
  for (const key of ['items', 'oneOf'] as const) {
    const a = ours[key];
    const b = theirs[key];
    if (Array.isArray(a) && Array.isArray(b) && a.length === b.length) a.forEach((x, i) => compareSchemas(x as Json, b[i] as Json, `${at}.${key}[${i}]`, problems));
    else if (a && b && !Array.isArray(a) && !Array.isArray(b)) compareSchemas(a as Json, b as Json, `${at}.${key}`, problems);
    else if (a || b) problems.push(`${at}: ${key} differs in shape`);
  }
}

describe('the JSON schema for the editor and the zod schema', () => {
  const ajv = new Ajv({ strict: true, allErrors: true });
  ajv.addKeyword('enumDescriptions'); // a VS Code extension to JSON schema: descriptions shown in completion
  const validate = ajv.compile(jsonSchema);

  it('is draft-07 and compiles in strict mode', () => {
    assert.equal(jsonSchema['$schema'], 'http://json-schema.org/draft-07/schema#');
  });

  for (const [kind, samples, expected] of [
    ['valid', valid, true],
    ['invalid', invalid, false],
  ] as const) {
    it(`agree on ${samples.length} ${kind} samples`, () => {
      for (const s of samples) {
        assert.equal(recipeSchema.safeParse(s).success, expected, `zod on ${JSON.stringify(s)}`);
        assert.equal(validate(s), expected, `JSON schema on ${JSON.stringify(s)}: ${ajv.errorsText(validate.errors)}`);
      }
    });
  }

  it('have the same fields, bounds, choices and defaults, and every field has a description', () => {
    const problems: string[] = [];
    compareSchemas(jsonSchema, z.toJSONSchema(recipeSchema, { target: 'draft-7', io: 'input' }) as Json, '(root)', problems);
    assert.deepEqual(problems, []);
  });

  it('the default recipe is valid for both', () => {
    assert.ok(validate(defaultRecipe()), ajv.errorsText(validate.errors));
  });
});

describe('the JSON parser behind the diagnostics', () => {
  const good = [
    '{}',
    '[]',
    ' {"a": [1, -2.5e3, 0.001, 1E+2, 0], "b": {"c": null, "d": true, "e": false}} ',
    '"\\u00e9\\n\\t\\"\\\\\\/x"',
    '{"__proto__": {"x": 1}, "k": "v"}',
    '\ufeff{"bom": 1}',
    '{"a": 1, "a": 2}',
    '-0',
    '[[[[]]]]',
  ];
  const bad = ['', '{', '{"a": 1,}', '[1, 2,]', "{'a': 1}", '{a: 1}', '{"a": 1} x', '{"a": 01}', '{"a": .5}', '{"a": "x\ny"}', '{"a": "\\q"}', '// c\n{}', '{"a" 1}', 'nul', '[1 2]', '{"a": NaN}'];

  it('reads what JSON.parse reads, to the same value', () => {
    for (const t of good) assert.deepEqual(parseJsonWithSpans(t).value, JSON.parse(t.replace(/^\ufeff/, '')), t);
  });

  it('refuses what JSON.parse refuses', () => {
    for (const t of bad) {
      assert.throws(() => JSON.parse(t), SyntaxError, `JSON.parse accepted ${t}`);
      assert.throws(() => parseJsonWithSpans(t), Error, `accepted ${JSON.stringify(t)}`);
    }
  });

  it('keeps "__proto__" a plain key', () => {
    const v = parseJsonWithSpans('{"__proto__": {"polluted": 1}}').value as Json;
    assert.equal(Object.getPrototypeOf(v), Object.prototype);
    assert.deepEqual(Object.keys(v), ['__proto__']);
  });
});

function only(ds: RecipeDiagnostic[], severity: RecipeDiagnostic['severity']): RecipeDiagnostic[] {
  return ds.filter((d) => d.severity === severity);
}

describe('reading layerlens.json', () => {
  before(setup);
  let rows: LayerRow[];
  before(async () => {
    const m = await loadModel(fixture('nested', 'model.json'));
    rows = m.summary.layers;
    m.layers!.dispose();
  });

  it('bad JSON: one error with its line and column, and the default recipe', () => {
    const text = '{\n  "freeze": [\n    "features",\n  ],\n  "finetune": {}\n}\n';
    const { recipe, diagnostics } = parseRecipe(text);
    assert.deepEqual(recipe, defaultRecipe());
    assert.equal(diagnostics.length, 1);
    const d = diagnostics[0];
    assert.equal(d.severity, 'error');
    assert.equal(d.line, 4);
    assert.equal(d.column, 3);
    assert.match(d.message, /^layerlens\.json is not valid JSON: a trailing comma before '\]' is not allowed in JSON; remove it\. .*default recipe/);
  });

  it('schema errors: placed at the value, with the JSON path, what was found and what is allowed; the rest of the file still counts', () => {
    const text = ['{', '  "freeze": ["head_seq/dense_1", 7],', '  "finetune": {', '    "epochs": 0,', '    "batchSize": 8,', '    "optimizer": "adm",', '    "learning_rate": 0.01,', '    "imageSize": [224, "wide"]', '  }', '}'].join('\n');
    const { recipe, diagnostics } = parseRecipe(text);
    const byPath = new Map(diagnostics.map((d) => [JSON.stringify(d.path), d]));
    const expect = (p: unknown[], line: number, column: number, message: RegExp) => {
      const d = byPath.get(JSON.stringify(p));
      assert.ok(d, `no diagnostic at ${JSON.stringify(p)}; got ${JSON.stringify(diagnostics)}`);
      assert.equal(d.severity, 'error');
      assert.deepEqual([d.line, d.column], [line, column], d.message);
      assert.match(d.message, message);
    };
    expect(['freeze', 1], 2, 34, /^freeze\[1\] must be a text in double quotes; found 7\. This entry is ignored\.$/);
    expect(['finetune', 'epochs'], 4, 15, /^finetune\.epochs must be a whole number from 1 to 10000; found 0\. Using the default \(10\)/);
    expect(['finetune', 'optimizer'], 6, 18, /must be one of "adam", "sgd", "rmsprop"; found "adm" \(did you mean "adam"\?\)/);
    expect(['finetune', 'learning_rate'], 7, 5, /^unknown setting "learning_rate" in finetune; did you mean "learningRate"\? It is ignored\.$/);
    expect(['finetune', 'imageSize', 1], 8, 24, /imageSize\[1\] must be a whole number from 8 to 2048; found "wide"\. finetune\.imageSize is ignored/);
    assert.equal(diagnostics.length, 5);
    assert.deepEqual(recipe.freeze, ['head_seq/dense_1']);
    assert.equal(recipe.finetune.epochs, 10);
    assert.equal(recipe.finetune.batchSize, 8, 'valid settings next to invalid ones are kept');
    assert.equal(recipe.finetune.optimizer, 'adam');
    assert.equal(recipe.finetune.imageSize, undefined);
    assert.ok(recipeSchema.safeParse(recipe).success);
  });

  it('a missing required field drops its object; an unknown top-level key is named; a wrong root is the default recipe', () => {
    const a = parseRecipe('{"finetune": {"lrSchedule": {"kind": "step", "factor": 0.5}, "epochs": 4}, "notes": "x"}');
    assert.equal(a.recipe.finetune.lrSchedule, undefined);
    assert.equal(a.recipe.finetune.epochs, 4);
    assert.match(a.diagnostics[0].message, /^finetune\.lrSchedule\.every is missing; it must be a whole number from 1 to 10000\. finetune\.lrSchedule is ignored until it is fixed\.$/);
    assert.match(a.diagnostics[1].message, /^unknown setting "notes" at the top level; known settings: \$schema, freeze, finetune\./);
    const b = parseRecipe('["conv1"]');
    assert.deepEqual(b.recipe, defaultRecipe());
    assert.match(b.diagnostics[0].message, /^the file must be an object/);
    const c = parseRecipe('{"finetune": {"lrSchedule": {"kind": "linear"}}}');
    assert.match(c.diagnostics[0].message, /finetune\.lrSchedule\.kind must be one of "step", "cosine"; found "linear"/);
  });

  it('layer names: unknown ones are named with a suggestion and kept (the engine ignores them); redundant ones are noted', () => {
    const text = JSON.stringify({ freeze: ['features', 'features/backbone/Conv1', 'Conv1', 'head_seq/dense_1', 'head_seq/dense_1', 'head_seq/dens_2'], finetune: { cutLayer: 'gapp' } }, null, 2);
    const { recipe, diagnostics } = parseRecipe(text, { rows, modelName: 'model.json' });
    const warnings = only(diagnostics, 'warning');
    assert.deepEqual(
      warnings.map((d) => [d.path, d.line]),
      [
        [['freeze', 2], 5],
        [['freeze', 5], 8],
        [['finetune', 'cutLayer'], 11],
      ],
    );
    assert.match(warnings[0].message, /^freeze lists "Conv1", which is not a layer of model\.json; it is ignored\. Did you mean "features\/backbone\/Conv1"\?/);
    assert.match(warnings[1].message, /Did you mean "head_seq\/dense_2"\?/);
    assert.match(warnings[2].message, /^finetune\.cutLayer "gapp" is not a layer of model\.json\. Did you mean "features\/backbone\/gap"\?.*Using the default cut/);
    assert.deepEqual(
      only(diagnostics, 'info').map((d) => d.message),
      ['"features/backbone/Conv1" is already frozen because "features" (which contains it) is listed.', '"head_seq/dense_1" is listed twice in freeze; once is enough.'],
    );
    assert.deepEqual(recipe.freeze, ['features', 'features/backbone/Conv1', 'Conv1', 'head_seq/dense_1', 'head_seq/dense_1', 'head_seq/dens_2']);
    assert.equal(recipe.finetune.cutLayer, undefined);
  });

  it('settings that contradict each other: warned, and made usable', () => {
    const { recipe, diagnostics } = parseRecipe(
      JSON.stringify({ finetune: { validationFraction: 0, earlyStopping: { monitor: 'val_acc' }, learningRate: 0.001, lrSchedule: { kind: 'cosine', minLearningRate: 0.01 } } }),
    );
    assert.equal(recipe.finetune.earlyStopping?.monitor, 'acc');
    assert.deepEqual(
      diagnostics.map((d) => [d.severity, d.path.join('.')]),
      [
        ['warning', 'finetune.earlyStopping.monitor'],
        ['warning', 'finetune.lrSchedule.minLearningRate'],
      ],
    );
    assert.match(diagnostics[0].message, /validationFraction is 0, so there is no validation set/);
  });

  it('duplicate keys are warned at the second key', () => {
    const { recipe, diagnostics } = parseRecipe('{"finetune": {"epochs": 5},\n "finetune": {"epochs": 6}}');
    assert.equal(recipe.finetune.epochs, 6);
    assert.deepEqual([diagnostics[0].severity, diagnostics[0].line, diagnostics[0].column], ['warning', 2, 2]);
  });

  it('from disk: a missing file is the default recipe; a link out of the model folder and a huge file are refused with a diagnostic', async () => {
    const dir = tmpDir();
    const model = path.join(dir, 'model.json');
    assert.deepEqual(await readRecipe(model), { file: path.join(dir, 'layerlens.json'), exists: false, recipe: defaultRecipe(), diagnostics: [] });
    const outside = path.join(tmpDir(), 'elsewhere.json');
    fs.writeFileSync(outside, '{"freeze": ["x"]}');
    fs.symlinkSync(outside, recipePathFor(model));
    const linked = await readRecipe(model);
    assert.deepEqual(linked.recipe, defaultRecipe());
    assert.match(linked.diagnostics[0].message, /is a link to .*elsewhere\.json, outside the model folder/);
    fs.rmSync(recipePathFor(model));
    fs.writeFileSync(recipePathFor(model), `{"freeze": [${'"x",'.repeat(300000)}"x"]}`);
    assert.match((await readRecipe(model)).diagnostics[0].message, /more than a recipe needs/);
    fs.writeFileSync(recipePathFor(model), '{"freeze": ["head_seq"], "finetune": {"epochs": 3}}');
    const ok = await readRecipe(model, { rows });
    assert.equal(ok.exists, true);
    assert.deepEqual(ok.diagnostics, []);
    assert.deepEqual([ok.recipe.freeze, ok.recipe.finetune.epochs, ok.recipe.finetune.batchSize], [['head_seq'], 3, 32]);
  });
});

describe('writing layerlens.json', () => {
  it('writes the freeze plan, and only settings that differ from the defaults, in the order $schema, freeze, finetune', async () => {
    const dir = tmpDir();
    const model = path.join(dir, 'model.json');
    const r = defaultRecipe();
    r.finetune.epochs = 4;
    r.finetune.imageSize = [224, 224];
    r.freeze = ['features', 'head_seq/dense_1'];
    r.$schema = './layerlens.schema.json';
    assert.equal(await writeRecipe(model, r), true);
    const text = fs.readFileSync(recipePathFor(model), 'utf8');
    assert.equal(
      text,
      '{\n  "$schema": "./layerlens.schema.json",\n  "freeze": [\n    "features",\n    "head_seq/dense_1"\n  ],\n  "finetune": {\n    "epochs": 4,\n    "imageSize": [224, 224]\n  }\n}\n',
    );
    assert.deepEqual(parseRecipe(text).recipe, r, 'reads back to the same recipe');
    assert.deepEqual(fs.readdirSync(dir), ['layerlens.json'], 'no temporary file left');
    assert.equal(await writeRecipe(model, r), false, 'unchanged: not written again');
    await writeRecipe(path.join(tmpDir(), 'model.json'), defaultRecipe()).then((w) => assert.equal(w, true));
    assert.equal(serializeRecipe(defaultRecipe()), '{\n  "freeze": []\n}\n');
  });

  it('keeps what the user wrote: key order, explicit defaults, unknown keys and refused values stay; CRLF stays', async () => {
    const dir = tmpDir();
    const model = path.join(dir, 'model.json');
    const original = '{\r\n  "finetune": {\r\n    "optimizer": "adam",\r\n    "epochs": 0,\r\n    "notes": "try sgd next"\r\n  },\r\n  "freeze": ["features"]\r\n}\r\n';
    fs.writeFileSync(recipePathFor(model), original);
    const { recipe } = await readRecipe(model);
    recipe.freeze = ['features', 'head_seq/dense_1'];
    recipe.finetune.batchSize = 16;
    await writeRecipe(model, recipe);
    assert.equal(
      fs.readFileSync(recipePathFor(model), 'utf8'),
      '{\r\n  "freeze": [\r\n    "features",\r\n    "head_seq/dense_1"\r\n  ],\r\n  "finetune": {\r\n    "optimizer": "adam",\r\n    "epochs": 0,\r\n    "notes": "try sgd next",\r\n    "batchSize": 16\r\n  }\r\n}\r\n',
    );
  });

  it('refuses to overwrite a file with a JSON error (the user is editing it), naming the line', async () => {
    const dir = tmpDir();
    const model = path.join(dir, 'model.json');
    fs.writeFileSync(recipePathFor(model), '{\n  "freeze": ["a"\n}\n');
    await rejectsWith(writeRecipe(model, defaultRecipe()), 'bad-recipe', /layerlens\.json has a JSON error at line 3, column 1 .*; fix it, or delete the file/);
    assert.equal(fs.readFileSync(recipePathFor(model), 'utf8'), '{\n  "freeze": ["a"\n}\n');
  });

  it('refuses to write an invalid recipe', async () => {
    const r = defaultRecipe();
    r.finetune.epochs = 0;
    await rejectsWith(writeRecipe(path.join(tmpDir(), 'model.json'), r), 'bad-recipe', /refusing to write .*layerlens\.json: the recipe is invalid \(finetune\.epochs: /);
  });
});
