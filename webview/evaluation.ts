/**
 * The Training tab's results of a finished fine-tune on its validation
 * images, as Teachable Machine's "under the hood" and Keras users expect:
 * per-class accuracy, a confusion matrix whose cells list their images
 * (click one), and the misclassified images with their true and predicted
 * labels, most confident first. Images show as thumbnails; a click opens
 * one without splitting the inspector (imagePreview.ts).
 */
import { misclassified, type EvaluatedImage, type Evaluation } from '../src/protocol/train';
import { clear, h } from './dom';
import { host } from './host';
import { showImage } from './imagePreview';

const THUMB = 88;
/** Thumbnails drawn at once; more are listed by name. */
const MAX_THUMBS = 48;

function pct(x: number): string {
  return Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : '–';
}

/** A figure per image: its thumbnail (loaded lazily), its name and what the model said. */
function imageGrid(e: Evaluation, images: EvaluatedImage[]): HTMLElement {
  const grid = h('div', { class: 'eval-images' });
  for (const im of images.slice(0, MAX_THUMBS)) {
    const name = im.path.split(/[\\/]/).slice(-2).join('/');
    const verdict = im.predicted === im.label ? `${e.classes[im.label]} ✓` : `${e.classes[im.label]} → ${e.classes[im.predicted]}`;
    const img = h('img', { class: 'eval-thumb', alt: name, width: THUMB, height: THUMB });
    void host.call('imageThumbnail', { path: im.path, size: THUMB * 2 }).then((url) => img.setAttribute('src', url), () => img.setAttribute('alt', `${name} (unreadable)`));
    const fig = h('button', { class: 'eval-image', title: `${im.path}\ntrue ${e.classes[im.label]}, predicted ${e.classes[im.predicted]} (${im.confidence.toFixed(3)})` }, img, h('span', { class: 'eval-name' }, name), h('span', { class: im.predicted === im.label ? 'eval-ok' : 'eval-wrong' }, `${verdict} ${im.confidence.toFixed(2)}`));
    fig.addEventListener('click', () => void showImage(im.path));
    grid.append(fig);
  }
  if (images.length > MAX_THUMBS) grid.append(h('p', { class: 'muted' }, `… and ${images.length - MAX_THUMBS} more (metrics.json lists every image).`));
  return grid;
}

export function evaluationView(e: Evaluation): HTMLElement {
  const section = h('section', { class: 'evaluation', 'aria-label': 'Results on the validation images' });
  const correct = e.perClass.reduce((a, p) => a + p.correct, 0);
  section.append(h('h3', {}, `${e.split === 'validation' ? 'Validation' : 'All images'}: ${correct}/${e.images.length} correct (${pct(e.accuracy)})`));

  // Per class.
  const perClass = h('table', { class: 'eval-classes' }, h('thead', {}, h('tr', {}, h('th', {}, 'class'), h('th', {}, 'images'), h('th', {}, 'correct'), h('th', {}, 'accuracy'))));
  const body = h('tbody');
  for (const p of e.perClass) {
    const bar = h('span', { class: 'eval-bar' });
    bar.style.width = `${Number.isFinite(p.accuracy) ? p.accuracy * 100 : 0}%`;
    body.append(h('tr', {}, h('td', { class: 'eval-class', title: p.name }, p.name), h('td', {}, String(p.images)), h('td', {}, String(p.correct)), h('td', { class: 'eval-acc' }, h('span', { class: 'eval-track' }, bar), pct(p.accuracy))));
  }
  perClass.append(body);

  // Confusion matrix: rows are the true class, columns the prediction; a cell lists its images.
  const cellImages = h('div', { class: 'eval-cell-images', 'aria-live': 'polite' });
  const matrix = h('table', { class: 'confusion', 'aria-label': 'Confusion matrix: rows true class, columns predicted class' });
  const head = h('tr', {}, h('th', { class: 'confusion-corner' }, 'true \\ predicted'));
  e.classes.forEach((c) => head.append(h('th', { scope: 'col', title: c }, c)));
  matrix.append(h('thead', {}, head));
  const rows = h('tbody');
  e.confusion.forEach((row, t) => {
    const total = row.reduce((a, b) => a + b, 0);
    const tr = h('tr', {}, h('th', { scope: 'row', title: e.classes[t] }, e.classes[t]));
    row.forEach((n, p) => {
      const cell = h('button', { class: `confusion-cell ${t === p ? 'diag' : 'off'}${n === 0 ? ' zero' : ''}`, 'aria-label': `true ${e.classes[t]}, predicted ${e.classes[p]}: ${n} image${n === 1 ? '' : 's'}` }, String(n));
      cell.style.setProperty('--share', total > 0 ? String(n / total) : '0');
      cell.addEventListener('click', () => {
        for (const b of matrix.querySelectorAll('.confusion-cell.selected')) b.classList.remove('selected');
        cell.classList.add('selected');
        clear(cellImages);
        const images = e.images.filter((im) => im.label === t && im.predicted === p).sort((a, b) => b.confidence - a.confidence);
        cellImages.append(h('h4', {}, `True ${e.classes[t]}, predicted ${e.classes[p]}: ${images.length} image${images.length === 1 ? '' : 's'}`), images.length ? imageGrid(e, images) : h('p', { class: 'muted' }, 'None.'));
      });
      tr.append(h('td', {}, cell));
    });
    rows.append(tr);
  });
  matrix.append(rows);
  section.append(h('div', { class: 'eval-tables' }, perClass, h('div', { class: 'confusion-wrap' }, matrix)), cellImages);

  // The mistakes, most confident first.
  const wrong = misclassified(e);
  section.append(h('h4', {}, wrong.length === 0 ? 'No validation image misclassified.' : `Misclassified: ${wrong.length} (most confident first)`));
  if (wrong.length > 0) section.append(imageGrid(e, wrong));
  return section;
}
