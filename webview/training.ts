/**
 * The Training tab: a live loss/accuracy chart (train and validation, with
 * the running batch loss faint behind), the epoch lines in the same words as
 * the output channel (one formatter serves both), a Stop button, and the
 * probe image's feature maps of the watched layer before training and after
 * the latest epoch (live maps); when it ends, the results on the validation
 * images and a result card with the actions the toast offered. The run is
 * rebuilt from the host's record when the webview is (hidden and shown
 * again), and from the webview's saved state after a window reload.
 */
import { formatProgress, type EpochMetrics, type Evaluation, type TrainProbe, type TrainProgress } from '../src/protocol/train';
import { mapsCanvas, rgbCanvas } from './canvas';
import type { AugmentPreview, RunCard, TrainingSnapshot } from '../src/protocol/webviewApi';
import { button } from './components/toolkit';
import { clear, h, num } from './dom';
import { evaluationView } from './evaluation';

/** What the tab keeps in the webview's saved state (for a window reload): the run, thinned. */
const SAVED_BATCHES = 600;
const SAVED_MESSAGES = 400;

export class TrainingView {
  readonly element = h('div', { class: 'training' });
  private points: EpochMetrics[] = [];
  private batches: { x: number; loss: number }[] = [];
  /** Every message of the run but the batches (what a snapshot carries). */
  private messages: TrainProgress[] = [];
  private job: TrainingSnapshot['job'] = 'finetune';
  private stoppedInfo: TrainingSnapshot['stopped'];
  private card: RunCard | undefined;
  private evaluation: Evaluation | undefined;
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
    private readonly runAction: (id: string) => void,
    /** After every change, for the webview's saved state. */
    private readonly onChange: () => void = () => undefined,
  ) {
    this.render();
    new ResizeObserver(() => {
      if (this.chart.isConnected) this.draw();
    }).observe(this.chart);
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
        row.append(rgbCanvas(p.width, p.height, rgb, { class: 'augment-sample', role: 'img', 'aria-label': 'augmented sample' }));
      }
      section.append(row);
    }
    return section;
  }

  /** Augmented samples sent by the Fine-Tune form (its settings, not the recipe's). */
  setPreview(preview: AugmentPreview): void {
    this.preview = preview;
    this.render();
  }

  /** The result card of the finished job (kept until the next run). */
  setCard(card: RunCard): void {
    this.card = card;
    this.render();
    this.onChange();
  }

  /** Draws a run from a snapshot (the host's record, or the webview's saved state). */
  restore(snap: TrainingSnapshot): void {
    this.reset();
    this.job = snap.job;
    for (const p of snap.progress) this.ingest(p);
    this.batches = snap.batches.map(([x, loss]) => ({ x, loss }));
    this.running = snap.running;
    if (snap.stopped) this.applyStopped(snap.stopped);
    this.card = snap.card;
    this.render();
  }

  /** The run as the webview's saved state keeps it. */
  snapshot(): TrainingSnapshot | undefined {
    if (this.messages.length === 0 && !this.card) return undefined;
    const step = Math.max(1, Math.ceil(this.batches.length / SAVED_BATCHES));
    return {
      job: this.job,
      progress: this.messages.slice(-SAVED_MESSAGES),
      batches: this.batches.filter((_, i) => i % step === 0).map((b) => [b.x, b.loss]),
      // A run cannot survive a window reload: the worker went with the window.
      running: false,
      ...(this.stoppedInfo ? { stopped: this.stoppedInfo } : this.running ? { stopped: { status: 'cancelled' as const, message: 'The window was reloaded during this run, which stopped it; nothing was saved.' } } : {}),
      ...(this.card ? { card: this.card } : {}),
    };
  }

  private reset(): void {
    this.points = [];
    this.batches = [];
    this.messages = [];
    this.lines = [];
    this.running = false;
    this.probeFirst = undefined;
    this.probeLast = undefined;
    this.stoppedInfo = undefined;
    this.card = undefined;
    this.evaluation = undefined;
    this.status = '';
  }

  onProgress(p: TrainProgress): void {
    if (p.type === 'start') {
      this.reset();
      this.job = p.job ?? 'finetune';
    }
    this.ingest(p);
    this.render();
    if (p.type !== 'batch') this.onChange();
  }

  /** Takes one message into the state, without drawing. */
  private ingest(p: TrainProgress): void {
    if (p.type !== 'batch') this.messages.push(p);
    switch (p.type) {
      case 'start':
        this.epochs = p.epochs;
        this.running = true;
        this.status = p.job === 'pretext' ? `Rotation pretext on ${p.trainSize / 4} images, ${p.trainableParams.toLocaleString('en-US')} params training…` : `Training ${p.trainSize} images in ${p.classes.length} classes, ${p.trainableParams.toLocaleString('en-US')} params…`;
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
        this.evaluation = p.evaluation;
        break;
    }
    const lines = formatProgress(p);
    this.lines.push(...lines);
    if (lines.length > 0 && p.type !== 'start') this.status = lines[lines.length - 1];
  }

  stopped(status: 'cancelled' | 'failed', message: string): void {
    this.applyStopped({ status, message });
    this.render();
    this.onChange();
  }

  private applyStopped(s: NonNullable<TrainingSnapshot['stopped']>): void {
    this.running = false;
    this.stoppedInfo = s;
    this.status = s.message;
    this.lines.push(s.message);
  }

  private cardSection(): HTMLElement | null {
    const c = this.card;
    if (!c) return null;
    const actions = h('div', { class: 'card-actions' });
    for (const a of c.actions) actions.append(button(a.label, () => this.runAction(a.id), { secondary: a !== c.actions[0], title: a.label }));
    return h('section', { class: 'result-card', 'aria-label': 'Result' }, h('strong', {}, c.title), ...c.lines.map((l) => h('p', {}, l)), actions);
  }

  private render(): void {
    clear(this.element);
    this.element.append(this.previewSection());
    const card = this.cardSection();
    if (!this.running && this.points.length === 0 && this.lines.length === 0) {
      if (card) this.element.append(card);
      else this.element.append(h('p', { class: 'empty' }, 'No training run yet. Start one with “Layer Lens: Fine-Tune…” from the command palette; its progress appears here live.'));
      return;
    }
    const title = this.job === 'pretext' ? 'Rotation pretext' : 'Fine-tune';
    this.element.append(
      h('div', { class: 'train-bar' }, h('strong', { class: 'train-job' }, title), h('span', { class: 'train-status', 'aria-live': 'polite' }, this.status), this.running ? button('Stop', this.stop, { secondary: true, title: 'Stop training (nothing is saved)' }) : null),
      card ?? '',
      this.chart,
      this.evaluation ? evaluationView(this.evaluation) : '',
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
      // The rotation pretext has no live maps; a fine-tune that got no probe had no image picked.
      if (this.running && this.job === 'finetune') box.append(h('p', { class: 'muted' }, 'Live maps: pick an image in the inspector (and a layer, or pin them with “Pin as probe”) before starting a fine-tune to watch its feature maps change here after every epoch.'));
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
    // Drawn at the size it is shown (and the screen's pixel density), so text stays 11px whatever the column width.
    const W = Math.max(240, Math.round(this.chart.clientWidth || 640));
    const H = 220;
    const dpr = window.devicePixelRatio || 1;
    if (this.chart.width !== Math.round(W * dpr) || this.chart.height !== Math.round(H * dpr)) {
      this.chart.width = Math.round(W * dpr);
      this.chart.height = Math.round(H * dpr);
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const style = getComputedStyle(document.body);
    const fg = style.getPropertyValue('--vscode-foreground') || '#888';
    const font = style.getPropertyValue('--vscode-font-family') || 'sans-serif';
    const colors = {
      loss: style.getPropertyValue('--vscode-charts-blue') || '#3794ff',
      valLoss: style.getPropertyValue('--vscode-charts-orange') || '#d18616',
      acc: style.getPropertyValue('--vscode-charts-green') || '#89d185',
      valAcc: style.getPropertyValue('--vscode-charts-purple') || '#b180d7',
    };
    ctx.clearRect(0, 0, W, H);
    const left = 44;
    const right = 44;
    const top = 34;
    const bottom = 30;
    const xmax = Math.max(1, this.epochs);
    const losses = [...this.points.flatMap((p) => [p.loss, p.val_loss ?? p.loss]), ...this.batches.map((b) => b.loss)].filter(Number.isFinite);
    const lmax = Math.max(1e-6, ...losses);
    const X = (x: number) => left + (x / xmax) * (W - left - right);
    const YL = (v: number) => H - bottom - (v / lmax) * (H - top - bottom);
    const YA = (v: number) => H - bottom - v * (H - top - bottom);
    ctx.font = `11px ${font}`;
    ctx.lineWidth = 1;
    // Frame and epoch ticks.
    ctx.strokeStyle = fg;
    ctx.fillStyle = fg;
    ctx.globalAlpha = 0.35;
    ctx.strokeRect(left, top, W - left - right, H - top - bottom);
    const step = Math.max(1, Math.ceil(xmax / Math.max(1, Math.floor((W - left - right) / 40))));
    ctx.textAlign = 'center';
    for (let e = 0; e <= xmax; e += step) {
      ctx.globalAlpha = 0.35;
      ctx.beginPath();
      ctx.moveTo(X(e), H - bottom);
      ctx.lineTo(X(e), H - bottom + 4);
      ctx.stroke();
      ctx.globalAlpha = 0.8;
      ctx.fillText(String(e), X(e), H - bottom + 15);
    }
    ctx.globalAlpha = 0.8;
    ctx.fillText('epoch', W / 2, H - 2);
    // Axis ends: loss on the left, accuracy on the right.
    ctx.textAlign = 'right';
    ctx.fillText(num(lmax), left - 6, top + 4);
    ctx.fillText('0', left - 6, H - bottom);
    ctx.textAlign = 'left';
    ctx.fillText('1', W - right + 6, top + 4);
    ctx.fillText('0', W - right + 6, H - bottom);
    ctx.save();
    ctx.translate(12, (top + H - bottom) / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = 'center';
    ctx.fillText('loss', 0, 0);
    ctx.restore();
    ctx.save();
    ctx.translate(W - 8, (top + H - bottom) / 2);
    ctx.rotate(Math.PI / 2);
    ctx.textAlign = 'center';
    ctx.fillText('accuracy', 0, 0);
    ctx.restore();
    ctx.globalAlpha = 1;
    const line = (pts: [number, number][], color: string, dashed = false) => {
      if (pts.length === 0) return;
      ctx.strokeStyle = color;
      ctx.fillStyle = color;
      ctx.setLineDash(dashed ? [4, 3] : []);
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      pts.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.stroke();
      for (const [x, y] of pts) ctx.fillRect(x - 2, y - 2, 4, 4);
    };
    ctx.globalAlpha = 0.3;
    line(this.batches.map((b) => [X(b.x), YL(b.loss)]), colors.loss);
    ctx.globalAlpha = 1;
    line(this.points.map((p) => [X(p.epoch), YL(p.loss)]), colors.loss);
    line(this.points.filter((p) => p.val_loss !== undefined).map((p) => [X(p.epoch), YL(p.val_loss!)]), colors.valLoss, true);
    line(this.points.map((p) => [X(p.epoch), YA(p.acc)]), colors.acc);
    line(this.points.filter((p) => p.val_acc !== undefined).map((p) => [X(p.epoch), YA(p.val_acc!)]), colors.valAcc, true);
    ctx.setLineDash([]);
    ctx.lineWidth = 1;
    // Legend above the plot.
    const legend: [string, string, boolean][] = [['loss', colors.loss, false], ['val_loss', colors.valLoss, true], ['acc', colors.acc, false], ['val_acc', colors.valAcc, true]];
    let x = left;
    ctx.textAlign = 'left';
    for (const [label, color, dashed] of legend) {
      ctx.strokeStyle = color;
      ctx.lineWidth = 2;
      ctx.setLineDash(dashed ? [4, 3] : []);
      ctx.beginPath();
      ctx.moveTo(x, top - 14);
      ctx.lineTo(x + 16, top - 14);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = fg;
      ctx.fillText(label, x + 20, top - 10);
      x += 28 + ctx.measureText(label).width;
    }
    ctx.lineWidth = 1;
  }
}
