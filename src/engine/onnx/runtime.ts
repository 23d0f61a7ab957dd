/**
 * ONNX Runtime (onnxruntime-node: native, N-API) as the engine uses it:
 * loaded on first use, sessions created from bytes (never from a path, so
 * Runtime reads no file of its own), and its errors turned into messages
 * that name the model, the node and the fix.
 *
 * Runs where the engine runs: the compute worker (or the CLI), never the
 * extension host.
 */
import * as os from 'node:os';
import { EngineError } from '../errors';
import { clipText as clip } from '../io/files';
import type * as OrtTypes from 'onnxruntime-node';

export type Ort = typeof OrtTypes;
export type OrtSession = OrtTypes.InferenceSession;
export type OrtTensor = OrtTypes.Tensor;

let ort: Ort | undefined;

/** The onnxruntime-node module, loaded on first use. */
export function runtime(): Ort {
  if (!ort) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      ort = require('onnxruntime-node') as Ort;
      ort.env.logLevel = 'fatal';
    } catch (e) {
      throw new EngineError(
        'internal',
        `ONNX Runtime could not be loaded on ${process.platform}-${process.arch} (${clip(e instanceof Error ? e.message.split('\n')[0] : String(e), 160)}); ONNX models need the onnxruntime-node package built for this platform (reinstall Layer Lens, or run npm ci).`,
      );
    }
  }
  return ort;
}

export function runtimeVersion(): string {
  return runtime().env.versions?.node ?? 'unknown';
}

/**
 * Session options: intra-op threads for the free cores (Runtime's default
 * spins one per core), one inter-op thread, every graph optimisation.
 */
function sessionOptions(threads?: number): OrtTypes.InferenceSession.SessionOptions {
  const cores = os.availableParallelism();
  return {
    intraOpNumThreads: Math.max(1, Math.min(threads ?? cores, cores)),
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    // Fatal only: Runtime's own error lines would land on the extension host's stderr; its errors reach us as exceptions.
    logSeverityLevel: 4,
  };
}

/** ONNX Runtime's message for a model it refuses, as one line a user can act on. */
export function explainRuntimeError(e: unknown, shown: string): EngineError {
  const raw = e instanceof Error ? e.message : String(e);
  const line = raw.replace(/\s+/g, ' ').trim();
  const noKernel = /Could not find an implementation for (\S+?)\((\d+)\) node with name '([^']*)'/.exec(line);
  if (noKernel) {
    return new EngineError(
      'unknown-layer',
      `${shown}: node "${clip(noKernel[3] || '(unnamed)', 60)}" uses ${clip(noKernel[1], 40)} (opset ${noKernel[2]}) with input types ONNX Runtime ${runtimeVersionSafe()} has no CPU kernel for; export with another opset or supported types.`,
    );
  }
  const unknownOp = /(?:No Op registered for|Unrecognized operator:?)\s*'?(\w+)'? with domain_version of (\d+)|No Op registered for (\w+) with domain_version of (\d+)/.exec(line);
  if (unknownOp) {
    const op = unknownOp[1] ?? unknownOp[3];
    const v = unknownOp[2] ?? unknownOp[4];
    return new EngineError('unknown-layer', `${shown} uses operator ${clip(op, 40)} (opset ${v}), which ONNX Runtime ${runtimeVersionSafe()} does not implement (a custom or newer operator?); export the model with standard operators or an older opset.`);
  }
  const opsetTooNew = /ONNX Runtime only \*guarantees\* support for models stamped with official released onnx opset versions|Opset (\d+) is under development|opset version (\d+) is not supported/i.exec(line);
  if (opsetTooNew) return new EngineError('not-a-model', `${shown} uses an operator set newer than ONNX Runtime ${runtimeVersionSafe()} supports (${clip(line, 160)}); export with an older opset.`);
  return new EngineError('not-a-model', `${shown}: ONNX Runtime cannot run this model (${clip(line.replace(/^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*/, ''), 200)}).`);
}

function runtimeVersionSafe(): string {
  try {
    return runtimeVersion();
  } catch {
    return '';
  }
}

/** A session from model bytes; Runtime's refusal becomes an EngineError naming `shown`. */
export async function createSession(bytes: Uint8Array, shown: string, threads?: number): Promise<OrtSession> {
  const o = runtime();
  try {
    return await o.InferenceSession.create(bytes, sessionOptions(threads));
  } catch (e) {
    throw explainRuntimeError(e, shown);
  }
}
