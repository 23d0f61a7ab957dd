/**
 * The rule that keeps the code easy to change, checked mechanically: code is
 * grouped by where it runs. engine/ and protocol/ never import vscode;
 * protocol/ imports neither tfjs nor Node (the webview bundles it); webview/
 * imports no Node, no vscode and nothing from src/ but protocol/.
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

function imports(file: string): string[] {
  const src = fs.readFileSync(path.join(root, file), 'utf8');
  return [...src.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+'([^']+)'|require\(\s*'([^']+)'\s*\)|import\(\s*'([^']+)'\s*\)/g)].map((m) => m[1] ?? m[2] ?? m[3]);
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
