/** What every CLI command gets from main.ts: how to fail with usage, read --backend, and print a line. */
import type { BackendPreference } from '../engine/backend';

export interface CliContext {
  usageError: (message: string) => Error;
  backendOption: (v: string | undefined) => BackendPreference;
  out: (line: string) => void;
}
