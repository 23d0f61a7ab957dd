/**
 * Issue 15: large images are decoded once, into the size the model needs,
 * holding at most about 2x their RGB size (src/engine/pngStream.ts for PNG).
 * The streaming decoder is checked against pngjs on every colour type, bit
 * depth, tRNS form and filter, fuzzed against it with a fixed number of
 * mutated files, and its memory measured in a fresh process.
 */
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { before, describe, it } from 'node:test';
import { PNG } from 'pngjs';
import { EngineError } from '../../src/engine/errors';
import { areaReduce, decodeImage, probeImage } from '../../src/engine/image';
import { decodePngReduced } from '../../src/engine/pngStream';
import { Rng } from '../../src/engine/random';
import { repoRoot } from '../fixtures/hostile';
import { rawPng } from '../fixtures/models';
import { setup } from './helpers';
import { root, hangLimit } from './hostileHelpers';

const at = (...p: string[]) => path.join(root, 'decode', ...p);

before(async () => {
  await setup();
  fs.mkdirSync(at(), { recursive: true });
});

describe('large images are decoded once, into the size the model needs (issue 15)', () => {
  const rng = new Rng(15);
  const bytesOf = (n: number) => Array.from({ length: n }, () => rng.int(256));
  const rows = (_w: number, h: number, rowBytes: number) => Array.from({ length: h }, () => Buffer.from(bytesOf(rowBytes)));
  const plte = (n: number) => ({ type: 'PLTE', data: Buffer.from(bytesOf(3 * n)) });
  const trns = (data: number[]) => ({ type: 'tRNS', data: Buffer.from(data) });
  const [w, h] = [13, 11];
  const cases: [string, Buffer][] = [
    ...[1, 2, 4, 8, 16].map((d): [string, Buffer] => [`grey ${d}-bit`, rawPng(w, h, d, 0, rows(w, h, Math.ceil((w * d) / 8)))]),
    ['grey 8-bit with a transparent grey', rawPng(w, h, 8, 0, Array.from({ length: h }, (_, y) => Buffer.from(Array.from({ length: w }, (_, x) => (x + y) % 3 === 0 ? 7 : 100 + x))), [trns([0, 7])])],
    ...[8, 16].map((d): [string, Buffer] => [`grey+alpha ${d}-bit`, rawPng(w, h, d, 4, rows(w, h, (w * 2 * d) / 8))]),
    ...[8, 16].map((d): [string, Buffer] => [`RGB ${d}-bit`, rawPng(w, h, d, 2, rows(w, h, (w * 3 * d) / 8))]),
    ['RGB 8-bit with a transparent colour', rawPng(w, h, 8, 2, Array.from({ length: h }, (_, y) => Buffer.from(Array.from({ length: w }, (_, x) => ((x * y) % 4 === 0 ? [1, 2, 3] : [9, x, y])).flat())), [trns([0, 1, 0, 2, 0, 3])])],
    ...[8, 16].map((d): [string, Buffer] => [`RGBA ${d}-bit`, rawPng(w, h, d, 6, rows(w, h, (w * 4 * d) / 8))]),
    ...[1, 2, 4, 8].map((d): [string, Buffer] => {
      const n = 1 << d;
      const idx = Array.from({ length: h }, () => {
        const row = Buffer.alloc(Math.ceil((w * d) / 8));
        for (let x = 0; x < w; x++) row[(x * d) >> 3] |= rng.int(n) << (8 - d - ((x * d) & 7));
        return row;
      });
      return [`palette ${d}-bit with partial tRNS`, rawPng(w, h, d, 3, idx, [plte(n), trns(bytesOf(Math.max(1, n >> 1)))])];
    }),
  ];
  // Every filter type, as pngjs's encoder writes them.
  for (const filterType of [0, 1, 2, 3, 4]) {
    const p = new PNG({ width: w, height: h });
    p.data = Buffer.from(bytesOf(w * h * 4));
    cases.push([`RGBA 8-bit, filter ${filterType}`, PNG.sync.write(p, { filterType })]);
  }

  for (const [what, png] of cases) {
    it(`${what}: the streaming decoder gives pngjs's pixels, and their block averages`, () => {
      const full = decodeImage(png, what);
      const { end } = probeImage(png, what);
      assert.deepEqual(decodePngReduced(png, what, end, 1, 1)?.data, full.data);
      const r = decodePngReduced(png, what, end, 2, 3)!;
      const want = areaReduce(full, 2, 3);
      assert.deepEqual([r.width, r.height], [want.width, want.height]);
      assert.ok(r.data.every((v, i) => Math.abs(v - want.data[i]) <= 0.5 + 1e-4), 'rounded block averages');
    });
  }

  it('a 7000x7000 PNG for a 224x224 input: decoded holding at most 2x its RGB size (measured in a fresh process)', { timeout: hangLimit }, async () => {
    const file = at('big.png');
    const big = new PNG({ width: 7000, height: 7000, colorType: 2 });
    for (let y = 0; y < 7000; y++) {
      for (let x = 0; x < 7000; x++) {
        const i = (y * 7000 + x) * 4;
        [big.data[i], big.data[i + 1], big.data[i + 2], big.data[i + 3]] = [(x >> 4) & 255, (y >> 4) & 255, 128, 255];
      }
    }
    fs.writeFileSync(file, PNG.sync.write(big, { colorType: 2 }));
    const script = `require(${JSON.stringify(path.join(repoRoot, 'node_modules/tsx/dist/cjs/index.cjs'))});
const { readImageFile } = require(${JSON.stringify(path.join(repoRoot, 'src/engine/image.ts'))});
const base = process.resourceUsage().maxRSS;
readImageFile(${JSON.stringify(file)}, () => ({ width: 224, height: 224 })).then((img) => {
  process.stdout.write(JSON.stringify({ grew: (process.resourceUsage().maxRSS - base) * 1024, width: img.width, height: img.height }));
});`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const m = JSON.parse(r.stdout) as { grew: number; width: number; height: number };
    assert.deepEqual([m.width, m.height], [225, 225], 'reduced by 31 as it was decoded (the area step of the resize)');
    const rgb = 7000 * 7000 * 3;
    assert.ok(m.grew <= 2 * rgb, `the process grew by ${Math.round(m.grew / 1048576)} MB, over 2x the ${Math.round(rgb / 1048576)} MB RGB image`);
  });
});

describe('the streaming PNG decoder on damaged files', () => {
  it('2,000 mutated PNGs (checksums fixed, so the damage reaches the decoder): only EngineErrors, and pngjs\'s pixels wherever both decode', () => {
    const rng = new Rng(99);
    const bases: Buffer[] = [];
    for (const [d, ct, ch] of [[8, 2, 3], [16, 6, 4], [1, 0, 1], [4, 3, 1], [8, 4, 2]] as const) {
      const rows = Array.from({ length: 9 }, () => Buffer.from(Array.from({ length: Math.ceil((17 * ch * d) / 8) }, () => rng.int(256))));
      bases.push(rawPng(17, 9, d, ct, rows, ct === 3 ? [{ type: 'PLTE', data: Buffer.from(Array.from({ length: 48 }, () => rng.int(256))) }] : []));
    }
    const fixCrcs = (b: Buffer) => {
      for (let o = 8; o + 12 <= b.length; ) {
        const len = b.readUInt32BE(o);
        if (o + 12 + len > b.length) break;
        b.writeUInt32BE(zlib.crc32(b.subarray(o + 4, o + 8 + len)) >>> 0, o + 8 + len);
        o += 12 + len;
      }
    };
    let decoded = 0;
    for (let i = 0; i < 2000; i++) {
      const b = Buffer.from(bases[rng.int(bases.length)]);
      for (let k = 1 + rng.int(4); k > 0; k--) b[8 + rng.int(b.length - 8)] = rng.int(256);
      fixCrcs(b);
      let end: number;
      try {
        end = probeImage(b, 'f').end;
      } catch {
        continue;
      }
      let mine: Uint8Array | undefined;
      try {
        mine = decodePngReduced(b, 'f', end, 1, 1)?.data;
      } catch (e) {
        assert.ok(e instanceof EngineError, `case ${i}: ${String(e)}`);
        continue;
      }
      decoded++;
      let theirs: Uint8Array | undefined;
      try {
        theirs = decodeImage(b, 'f').data;
      } catch {
        continue;
      }
      assert.deepEqual(mine, theirs, `case ${i}`);
    }
    assert.ok(decoded > 500, `${decoded} decoded: the mutations are not all fatal`);
  });
});
