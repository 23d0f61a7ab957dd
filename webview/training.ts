/**
 * The Training tab: a live loss/accuracy chart (train and validation, with
 * the running batch loss faint behind), the epoch lines in the same words as
 * the output channel (one formatter serves both), a Stop button, and the
 * probe image's feature maps of the watched layer before training and after
 * the latest epoch (live maps).
 */
import { formatProgress, type EpochMetrics, type TrainProbe, type TrainProgress } from '../src/protocol/train';
import { mapsCanvas } from './compare';
import type { AugmentPreview } from '../src/protocol/webviewApi';
import { button } from './components/toolkit';
import { clear, h, num } from './dom';

export class TrainingView {
  readonly element = h('div', { class: 'training' });
  private points: EpochMetrics[] = [];
  private batches: { x: number; loss: number }[] = [];
  private epochs = 0;
  private lines: string[] = [];
  private status = '';
  private running = false;
  /** Live maps: before training (epoch 0) and the latest epoch. */
  private probeFirst: TrainProbe | undefined;
  private probeLast: TrainProbe | undefined;
  private readonly chart = h('canvas', { width: 640, height: 220, class: 'chart', role: 'img', 'aria-label': 'Loss and accuracy per epoch' });

  private preview: AugmentPreview | string | undefined;

  constructor(
    private readonly stop: () => void,
    private readonly loadPreview: () => Promise<AugmentPreview>,
  ) {
    this.render();
  }

  private async showPreview(): Promise<void> {
    try {
      this.preview = await this.loadPreview();
    } catch (e) {
      this.preview = e instanceof Error ? e.message : String(e);
    }
    this.render();
  }

  /** Eight augmented samples of the current image, as training will see them. */
  private previewSection(): HTMLElement {
    const section = h(
      'section',
      { class: 'augment-preview' },
      h('div', { class: 'train-bar' }, h('strong', {}, 'Augmentations'), button('Preview', () => void this.showPreview(), { secondary: true, title: "Show augmented samples of the current image with the recipe's settings" })),
    );
    const p = this.preview;
    if (typeof p === 'string') section.append(h('p', { class: 'error' }, p));
    else if (p) {
      section.append(h('p', { class: 'muted' }, p.summary === 'none' ? 'Augmentation is off in layerlens.json ("finetune.augment"); training sees the image as is.' : `${p.summary}, seeded as training does:`));
      const row = h('div', { class: 'augment-row' });
      for (const rgb of p.images) {
        const c = h('canvas', { width: p.width, height: p.height, class: 'augment-sample', role: 'img', 'aria-label': 'augmented sample' });
        const ctx = c.getContext('2d');
        if (ctx) {
          const img = ctx.createImageData(p.width, p.height);
          for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
            img.data[j] = rgb[i];
            img.data[j + 1] = rgb[i + 1];
            img.data[j + 2] = rgb[i + 2];
            img.data[j + 3] = 255;
          }
          ctx.putImageData(img, 0, 0);
        }
        row.append(c);
      }
      section.append(row);
    }
    return section;
  }

  onProgress(p: TrainProgress): void {
    switch (p.type) {
      case 'start':
        this.points = [];
        this.batches = [];
        this.epochs = p.epochs;
        this.lines = [];
        this.running = true;
        this.probeFirst = undefined;
        this.probeLast = undefined;
        this.status = `Training ${p.trainSize} images in ${p.classes.length} classes…`;
        break;
      case 'batch':
        this.batches.push({ x: p.epoch - 1 + p.batch / Math.max(1, p.batches), loss: p.loss });
        this.status = `Epoch ${p.epoch}/${p.epochs} · batch ${p.batch}/${p.batches} · loss ${num(p.loss)} · acc ${num(p.acc)}`;
        break;
      case 'epoch':
        this.points.push(p.metrics);
        break;
      case 'warning':
        break;
      case 'probe':
        if (p.epoch === 0) this.probeFirst = p;
        this.probeLast = p;
        break;
      case 'end':
        this.running = false;
        break;
    }
    const lines = formatProgress(p);
    this.lines.push(...lines);
    if (lines.length > 0 && p.type !== 'start') this.status = lines[lines.length - 1];
    this.render();
  }

  stopped(message: string): void {
    this.running = false;
    this.status = message;
    this.lines.push(message);
    this.render();
  }

  private render(): void {
    clear(this.element);
    this.element.append(this.previewSection());
    if (!this.running && this.points.length === 0 && this.lines.length === 0) {
      this.element.append(h('p', { class: 'empty' }, 'No training run yet. Start one with “Layer Lens: Fine-Tune…” from the command palette; its progress appears here live.'));
      return;
    }
    this.element.append(
      h('div', { class: 'train-bar' }, h('span', { class: 'train-status', 'aria-live': 'polite' }, this.status), this.running ? button('Stop', this.stop, { secondary: true, title: 'Stop training (nothing is saved)' }) : null),
      this.chart,
      this.liveMaps(),
      h('pre', { class: 'epoch-log' }, this.lines.join('\n')),
    );
    this.draw();
  }

  private liveMaps(): HTMLElement {
    const box = h('section', { class: 'live-maps', 'aria-label': 'Live feature maps of the probe image' });
    const first = this.probeFirst;
    const last = this.probeLast;
    if (!last) {
      if (this.running) box.append(h('p', { class: 'muted' }, 'Live maps: pick an image and a layer in the inspector (or pin them with “Pin as probe”) before starting a fine-tune to watch its feature maps change here after every epoch.'));
      return box;
    }
    const name = last.imagePath.split(/[\\/]/).pop() ?? last.imagePath;
    const when = last.epoch === 0 ? 'before training' : `after epoch ${last.epoch}/${last.epochs}`;
    box.append(h('h3', {}, `Live maps · ${last.layerPath} · ${name}`));
    const fig = (p: TrainProbe, caption: string) => h('figure', { class: 'cmp-fig' }, mapsCanvas(p.maps, 'viridis', `${p.layerPath} ${caption}`, 300), h('figcaption', {}, caption));
    const figs = h('div', { class: 'cmp-figs' });
    if (first && first !== last) figs.append(fig(first, 'before training'));
    figs.append(fig(last, last.unchanging ? 'before and during training' : when));
    box.append(figs);
    box.append(
      h(
        'p',
        { class: 'muted' },
        last.unchanging
          ? `Every layer up to ${last.layerPath} is frozen (or has no weights): its maps cannot change during this run.`
          : `Each map scaled to its own range. The probe took ${last.ms.toFixed(0)} ms; it skips epochs rather than slow training by more than 5%.`,
      ),
    );
    return box;
  }

  private draw(): void {
    const ctx = this.chart.getContext('2d');
    if (!ctx) return;
    const W = this.chart.width;
    const H = this.chart.height;
    const style = getComputedStyle(document.body);
    const fg = style.getPropertyValue('--vscode-foreground') || '#888';
    const colors = {
      loss: style.getPropertyValue('--vscode-charts-blue') || '#3794ff',
      valLoss: style.getPropertyValue('--vscode-charts-orange') || '#d18616',
      acc: style.getPropertyValue('--vscode-charts-green') || '#89d185',
      valAcc: style.getPropertyValue('--vscode-charts-purple') || '#b180d7',
    };
    ctx.clearRect(0, 0, W, H);
    const pad = 30;
    const xmax = Math.max(1, this.epochs);
    const losses = [...this.points.flatMap((p) => [p.loss, p.val_loss ?? p.loss]), ...this.batches.map((b) => b.loss)].filter(Number.isFinite);
    const lmax = Math.max(1e-6, ...losses);
    const X = (x: number) => pad + (x / xmax) * (W - 2 * pad);
    const YL = (v: number) => H - pad - (v / lmax) * (H - 2 * pad);
    const YA = (v: number) => H - pad - v * (H - 2 * pad);
    ctx.strokeStyle = fg;
    ctx.globalAlpha = 0.4;
    ctx.strokeRect(pad, pad, W - 2 * pad, H - 2 * pad);
    ctx.globalAlpha = 1;
    ctx.fillStyle = fg;
    ctx.font = '11px sans-serif';
    ctx.fillText(`loss (0–${num(lmax)})`, pad, pad - 8);
    ctx.fillText('accuracy (0–1)', W - pad - 80, pad - 8);
    ctx.fillText('epoch', W / 2 - 15, H - 8);
    const line = (pts: [number, number][], color: string, dashed = false) => {
      if (pts.length === 0) return;
      ctx.strokeStyle = color;
      ctx.fillStyle = color;
      ctx.setLineDash(dashed ? [4, 3] : []);
      ctx.beginPath();
      pts.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.stroke();
      for (const [x, y] of pts) ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
    };
    ctx.globalAlpha = 0.3;
    line(this.batches.map((b) => [X(b.x), YL(b.loss)]), colors.loss);
    ctx.globalAlpha = 1;
    line(this.points.map((p) => [X(p.epoch), YL(p.loss)]), colors.loss);
    line(this.points.filter((p) => p.val_loss !== undefined).map((p) => [X(p.epoch), YL(p.val_loss!)]), colors.valLoss, true);
    line(this.points.map((p) => [X(p.epoch), YA(p.acc)]), colors.acc);
    line(this.points.filter((p) => p.val_acc !== undefined).map((p) => [X(p.epoch), YA(p.val_acc!)]), colors.valAcc, true);
    ctx.setLineDash([]);
    const legend: [string, string][] = [['loss', colors.loss], ['val_loss', colors.valLoss], ['acc', colors.acc], ['val_acc', colors.valAcc]];
    legend.forEach(([label, color], i) => {
      ctx.fillStyle = color;
      ctx.fillRect(pad + 10 + i * 80, pad + 8, 10, 3);
      ctx.fillStyle = fg;
      ctx.fillText(label, pad + 24 + i * 80, pad + 13);
    });
  }
}
