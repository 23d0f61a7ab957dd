/**
 * The right-hand panel's account of what the model output for the image:
 * top-k predictions for a classifier, the values for a regression, the
 * output image and its difference to the input for an image-to-image model,
 * and, for a model with several outputs, a choice of which one to show.
 */
import type { InspectResult } from '../src/protocol/inspect';
import { dropdown, setDropdown } from './components/toolkit';
import { h } from './dom';
import { rgbCanvas } from './canvas';

const num = (v: number) => (v === 0 ? '0' : Math.abs(v) >= 1000 || Math.abs(v) < 0.001 ? v.toExponential(2) : v.toPrecision(4));

/** The elements describing `r`'s chosen output; `onChoose` asks for another output. */
export function outputElements(r: InspectResult, onChoose: (index: number) => void): HTMLElement[] {
  const outputs = r.outputs ?? [];
  const index = r.output ?? 0;
  const chosen = outputs[index];
  const out: HTMLElement[] = [];
  if (outputs.length > 1) {
    const pick = dropdown(
      'Output',
      outputs.map((o, i) => ({ value: String(i), label: `${i + 1}. ${o.name} [${o.shape.join(', ')}]` })),
      String(index),
      (v) => onChoose(Number(v)),
    );
    out.push(h('label', { class: 'output-pick' }, 'output ', pick));
    setDropdown(pick, String(index));
  }
  if (chosen?.kind === 'image' && r.image) {
    const img = r.image;
    out.push(h('h2', {}, 'Output image'));
    out.push(rgbCanvas(img.width, img.height, img.rgb, { class: 'input-image', role: 'img', 'aria-label': `Output ${chosen.name} as an image` }));
    if (img.diff) {
      const grey = new Uint8Array(img.diff.length * 3);
      img.diff.forEach((v, i) => grey.fill(v, i * 3, i * 3 + 3));
      out.push(h('h2', {}, '|output − input|'));
      out.push(rgbCanvas(img.width, img.height, grey, { class: 'input-image', role: 'img', 'aria-label': 'Difference between the output and the input' }));
      out.push(h('div', { class: 'muted' }, `mean ${img.meanAbsDiff?.toFixed(2)} of 255 per pixel`));
    }
    return out;
  }
  if (chosen?.kind === 'values' && r.values) {
    out.push(h('h2', {}, 'Output values'));
    const list = h('ol', { class: 'predictions values', 'aria-label': 'Output values', start: '0' });
    for (const v of r.values) list.append(h('li', {}, h('span', { class: 'pval' }, num(v))));
    out.push(list, h('div', { class: 'muted' }, `${chosen.name} [${chosen.shape.join(', ')}]: values, not classes`));
    return out;
  }
  const list = h('ol', { class: 'predictions', 'aria-label': 'Top predictions' });
  for (const p of r.predictions) {
    const pct = r.probabilities ? `${(p.probability * 100).toFixed(1)}%` : p.probability.toPrecision(3);
    const bar = h('span', { class: 'pbar' });
    bar.style.width = `${Math.max(0, Math.min(1, r.probabilities ? p.probability : 0)) * 100}%`;
    list.append(h('li', {}, h('span', { class: 'plabel' }, p.label), h('span', { class: 'pval' }, pct), h('span', { class: 'ptrack' }, bar)));
  }
  out.push(h('h2', {}, 'Predictions'), list);
  return out;
}
