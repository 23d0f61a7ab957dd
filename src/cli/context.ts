/** What every CLI command gets from main.ts: how to fail with usage, start the backend --backend names, and print a line. */
import type { BackendInfo, BackendPreference } from '../engine/backend';

export interface CliContext {
  usageError: (message: string) => Error;
  backendOption: (v: string | undefined) => BackendPreference;
  /** Starts the backend --backend asks for; says on stderr when it is not the one in use, and why. */
  startBackend: (v: string | undefined) => Promise<BackendInfo>;
  out: (line: string) => void;
}
