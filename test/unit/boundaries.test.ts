/**
 * The rules that keep the code easy to change, checked mechanically.
 *
 * Code is grouped by where it runs: engine/ and protocol/ never import
 * vscode; protocol/ imports neither tfjs nor Node (the webview bundles it);
 * webview/ imports no Node, no vscode and nothing from src/ but protocol/.
 *
 * The host is layered, each layer importing only the ones below it:
 * extension.ts -> commands/ -> panels/ and views/ -> services/ and ui/ ->
 * engineClient, logger, statusBar -> protocol/ and the tfjs-free part of
 * engine/. So panels never import commands, and no host module loads tfjs
 * (the extension host stays light; the engine runs in the worker).
 *
 * And there are no import cycles anywhere (src, webview, scripts, test).
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';

const root = path.resolve(__dirname, '../..');

function files(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...files(rel));
    else if (e.name.endsWith('.ts')) out.push(rel);
  }
  return out;
}

interface Import {
  spec: string;
  /** `import type …` / `export type …`: erased, never loaded at run time. */
  typeOnly: boolean;
}

/** The module specifiers a file imports (static, re-exports, dynamic and require), template strings left out. */
function importsOf(file: string): Import[] {
  const src = fs.readFileSync(path.join(root, file), 'utf8').replace(/`(?:\\[\s\S]|\$\{[^}]*\}|[^`\\])*`/g, '``');
  const out: Import[] = [];
  for (const m of src.matchAll(/(?:^|\n)\s*(import|export)\s+(type\s+)?[^;]*?from\s+'([^']+)'/g)) out.push({ spec: m[3], typeOnly: m[2] !== undefined });
  for (const m of src.matchAll(/(?:^|\n)\s*import\s+'([^']+)'/g)) out.push({ spec: m[1], typeOnly: false });
  for (const m of src.matchAll(/(?:require|import)\(\s*'([^']+)'\s*\)/g)) out.push({ spec: m[1], typeOnly: false });
  return out;
}

function imports(file: string): string[] {
  return importsOf(file).map((i) => i.spec);
}

/** The repository file a relative specifier names, if it is one of ours. */
function resolve(from: string, spec: string): string | undefined {
  if (!spec.startsWith('.')) return undefined;
  const base = path.join(path.dirname(from), spec);
  for (const candidate of [`${base}.ts`, path.join(base, 'index.ts')]) if (fs.existsSync(path.join(root, candidate))) return path.normalize(candidate);
  return undefined;
}

type Graph = Map<string, string[]>;

function graphOf(all: string[], o: { runtimeOnly?: boolean } = {}): Graph {
  const g: Graph = new Map();
  for (const f of all) {
    const targets = importsOf(f)
      .filter((i) => !(o.runtimeOnly && i.typeOnly))
      .map((i) => resolve(f, i.spec))
      .filter((t): t is string => t !== undefined);
    g.set(f, [...new Set(targets)]);
  }
  return g;
}

/** Every import cycle's smallest witness, as a path a -> b -> … -> a (Tarjan's strongly connected components). */
export function cycles(g: Graph): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of g.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (g.get(v) ?? []).includes(v)) out.push(scc.reverse());
    }
  };
  for (const v of g.keys()) if (!idx.has(v)) visit(v);
  return out;
}

/** Files reachable from `start` (itself included). */
function closure(g: Graph, start: string): Set<string> {
  const seen = new Set<string>();
  const todo = [start];
  while (todo.length > 0) {
    const f = todo.pop()!;
    if (seen.has(f)) continue;
    seen.add(f);
    todo.push(...(g.get(f) ?? []));
  }
  return seen;
}

const nodeBuiltin = /^(node:|fs$|path$|os$|child_process$|worker_threads$|crypto$|util$|stream$|zlib$)/;

describe('import boundaries', () => {
  for (const file of [...files('src/engine'), ...files('src/protocol'), ...files('src/worker'), ...files('src/cli')]) {
    it(`${file} does not import vscode`, () => assert.ok(!imports(file).includes('vscode'), `${file} imports vscode`));
  }
  for (const file of files('src/protocol')) {
    it(`${file} imports neither tfjs nor Node`, () => {
      const bad = imports(file).filter((i) => i.startsWith('@tensorflow/') || nodeBuiltin.test(i));
      assert.deepEqual(bad, []);
    });
  }
  for (const file of files('webview')) {
    it(`${file} imports no Node, no vscode, and from src/ only protocol/`, () => {
      const bad = imports(file).filter((i) => i === 'vscode' || nodeBuiltin.test(i) || i.startsWith('@tensorflow/') || (i.includes('/src/') && !i.includes('/src/protocol/')));
      assert.deepEqual(bad, []);
    });
  }
});

/** The host's layers, highest first; a module imports only from layers below its own. */
const hostLayers: [string, RegExp][] = [
  ['extension', /^src\/extension\.ts$/],
  ['commands', /^src\/commands\//],
  ['panels and views', /^src\/(panels|views)\//],
  ['services and ui', /^src\/(services|ui)\//],
  ['engine client, log, status bar', /^src\/(engineClient|logger|statusBar)\.ts$/],
  ['protocol and engine', /^src\/(protocol|engine)\//],
];

function layerOf(file: string): number {
  return hostLayers.findIndex(([, re]) => re.test(file.split(path.sep).join('/')));
}

const hostFiles = files('src').filter((f) => !/^src[\\/](engine|protocol|worker|cli)[\\/]/.test(f));

describe('the host is layered', () => {
  const g = graphOf(files('src'));
  for (const file of hostFiles) {
    it(`${file} imports only from the layers below it`, () => {
      const own = layerOf(file);
      assert.ok(own >= 0, `${file} is in no layer of the host; add its folder to hostLayers`);
      const bad = (g.get(file) ?? []).filter((t) => {
        const l = layerOf(t);
        // Within one folder a module may use its neighbours (a panel and its tab controllers).
        return l <= own && path.dirname(t) !== path.dirname(file);
      });
      assert.deepEqual(bad, [], `${file} (${hostLayers[own][0]}) imports from its own layer or above`);
    });
  }

  it('panels never import commands', () => {
    const bad = files('src/panels').flatMap((f) => (g.get(f) ?? []).filter((t) => t.startsWith(path.join('src', 'commands'))).map((t) => `${f} -> ${t}`));
    assert.deepEqual(bad, []);
  });

  it('host code loads only tfjs-free engine modules (at run time, through every import)', () => {
    const runtime = graphOf(files('src'), { runtimeOnly: true });
    const bad: string[] = [];
    for (const file of hostFiles) {
      for (const f of closure(runtime, file)) {
        const tf = importsOf(f).filter((i) => !i.typeOnly && (i.spec.startsWith('@tensorflow/') || i.spec === 'h5wasm'));
        if (tf.length > 0) bad.push(`${file} loads ${f}, which imports ${tf.map((i) => i.spec).join(', ')}`);
      }
    }
    assert.deepEqual(bad, []);
  });
});

describe('no import cycles', () => {
  it('finds a cycle when there is one (the check itself)', () => {
    const g: Graph = new Map([
      ['a.ts', ['b.ts']],
      ['b.ts', ['c.ts']],
      ['c.ts', ['a.ts']],
      ['d.ts', ['a.ts']],
    ]);
    assert.deepEqual(cycles(g), [['a.ts', 'b.ts', 'c.ts']]);
    assert.deepEqual(cycles(new Map([['a.ts', ['b.ts']], ['b.ts', []]])), []);
  });

  for (const dir of ['src', 'webview', 'scripts', 'test']) {
    it(`${dir}/ has none (type-only imports counted)`, () => {
      const all = ['src', 'webview', 'scripts', 'test'].flatMap(files);
      const found = cycles(graphOf(all)).filter((c) => c.some((f) => f.startsWith(dir + path.sep)));
      assert.deepEqual(found, []);
    });
  }
});
