/**
 * layer-lens: the command-line front end over the same engine as the
 * extension. Runs the engine in-process (a terminal has no UI thread to
 * protect). Every failure ends in one clear line on stderr and a non-zero exit.
 */
import { initBackend, type BackendInfo, type BackendPreference } from '../engine/backend';
import { CancelledError, isEngineError, messageOf } from '../engine/errors';
import { fsErrorLine } from '../engine/io/fsErrors';
import { parseCommand } from './args';
import type { CliContext } from './context';
import { finish } from './interrupt';
import { explainTrap } from '../engine/wasmTrap';
import { loadModel } from '../engine/model';
import { inspectCommand, inspectUsage } from './inspect';
import { finetuneCommand, finetuneUsage } from './finetune';
import { adviseCommand, embedCommand, embedUsage } from './embed';
import { pretextCommand, pretextUsage } from './pretext';
import { compareCommand, compareUsage } from './compare';
import { evaluateCommand, evaluateUsage } from './evaluate';
import { formatCount, formatOutputs, formatShape, type ModelSummary } from '../protocol/model';

export const usage = `Usage: layer-lens <command> [options]

Commands:
  summary <model> [--json]        Print the layer table of a model.
${inspectUsage}${finetuneUsage}${evaluateUsage}${embedUsage}${pretextUsage}${compareUsage}
A <model> is a TF.js model.json, a Keras .h5 or .keras file, or an ONNX .onnx file.

Options:
  --backend auto|tensorflow|wasm|cpu   Compute backend (default auto).
  --help                               Show this help.
`;

export class UsageError extends Error {}

function out(s: string): void {
  process.stdout.write(s + '\n');
}

export function formatSummaryTable(s: ModelSummary): string {
  const header = ['Layer', 'Class', 'Output shape', 'Params', 'Trainable'];
  const rows = s.layers.map((r) => [
    '  '.repeat(r.depth) + r.name,
    r.className,
    formatShape(r.outputShape) + (r.output !== undefined ? ` (output ${r.output + 1})` : ''),
    formatCount(r.params),
    r.isContainer ? '' : r.trainable ? 'yes' : 'no',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 3 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  const lines = [
    `${s.name} (${s.format} model) — ${s.modelPath}`,
    line(header),
    widths.map((w) => '-'.repeat(w)).join('  '),
    ...rows.map(line),
    '',
    `Total params: ${formatCount(s.totalParams)}   Trainable: ${formatCount(s.trainableParams)}   Non-trainable: ${formatCount(s.totalParams - s.trainableParams)}`,
    `Input ${formatShape(s.inputShape)} → ${s.outputs?.length > 1 ? '' : 'output '}${formatOutputs(s)}${s.labels ? `   Labels: ${s.labels.join(', ')}` : ''}`,
  ];
  if (s.normalizationFrom) lines.push(`Pixels: ${s.normalization} (${s.normalizationFrom})`);
  if (s.onnx) {
    const o = s.onnx;
    lines.push(
      `ONNX opset ${o.opset}, IR ${o.irVersion}${o.producer ? `, made by ${o.producer}` : ''}; input "${o.inputName}" ${formatShape(o.inputShape)} (${o.layout}); run by ONNX Runtime ${o.runtime}` +
        (o.constantNodes > 0 ? `; ${o.constantNodes} node${o.constantNodes === 1 ? '' : 's'} computing constants not listed` : ''),
    );
  }
  if (s.graphInput) lines.push(`Graph input ${formatShape(s.graphInput.shape)}: ${s.graphInput.note}`);
  for (const w of s.warnings) lines.push(`Warning: ${w}`);
  return lines.join('\n');
}

async function summary(args: string[]): Promise<void> {
  const { values, positionals } = parseCommand(args, { json: { type: 'boolean' }, backend: { type: 'string' } });
  if (positionals.length !== 1) throw new UsageError('summary takes exactly one model path.');
  await startBackend(values.backend);
  const model = await loadModel(positionals[0]);
  out(values.json ? JSON.stringify(model.summary, null, 2) : formatSummaryTable(model.summary));
}

function backendOption(v: string | undefined): BackendPreference {
  if (v === undefined) return 'auto';
  if (v === 'auto' || v === 'tensorflow' || v === 'wasm' || v === 'cpu') return v;
  throw new UsageError(`--backend must be auto, tensorflow, wasm or cpu (got "${v}").`);
}

const backendNames: Record<BackendPreference, string> = { auto: 'auto', tensorflow: 'tfjs-node (tensorflow)', wasm: 'wasm', cpu: 'cpu' };

/** Starts the backend --backend names; a backend other than the one asked for is said, with why, not silently used. */
async function startBackend(v: string | undefined): Promise<BackendInfo> {
  const prefer = backendOption(v);
  const info = await initBackend({ prefer });
  if (prefer !== 'auto' && info.name !== prefer) {
    process.stderr.write(`layer-lens: warning: --backend ${v} is not available (${info.notes.join('; ') || 'it did not start'}); using ${backendNames[info.name]} instead.\n`);
  }
  return info;
}

const ctx: CliContext = { usageError: (m) => new UsageError(m), backendOption, startBackend, out };

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'summary':
        await summary(rest);
        return 0;
      case 'inspect':
        await inspectCommand(rest, ctx);
        return 0;
      case 'finetune':
        return await finetuneCommand(rest, ctx);
      case 'evaluate':
        return await evaluateCommand(rest, ctx);
      case 'embed':
        return await embedCommand(rest, ctx);
      case 'advise':
        return await adviseCommand(rest, ctx);
      case 'pretext':
        return await pretextCommand(rest, ctx);
      case 'compare':
        await compareCommand(rest, ctx);
        return 0;
      case undefined:
      case '--help':
      case '-h':
      case 'help':
        out(usage);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`Unknown command "${command}".`);
    }
  } catch (e) {
    if (e instanceof UsageError || (e instanceof TypeError && (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS'))) {
      process.stderr.write(`layer-lens: ${e.message}\n\n${usage}`);
      return 2;
    }
    if (e instanceof CancelledError) {
      process.stderr.write(`layer-lens: ${e.message.replace(/\.$/, '')}; nothing was written.\n`);
      return 130;
    }
    e = explainTrap(e);
    // A file-system failure the engine did not word itself still gets its cause in words, never "unexpected error: EIO".
    const text = isEngineError(e) ? e.message : (fsErrorLine(e) ?? `unexpected error: ${messageOf(e)}`);
    process.stderr.write(`layer-lens: ${text}\n`);
    return 1;
  }
}

if (require.main === module) {
  void main(process.argv.slice(2)).then(finish);
}
