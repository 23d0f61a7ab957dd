/**
 * Reading the command line, one way for every command: node's parseArgs,
 * with a negative number after a value option taken as its value ("--seed
 * -1" is the value -1, which parseArgs calls "ambiguous"), and numbers that
 * must be written as decimal numbers ("0x2", "", "Infinity" and "1e400" are
 * not) before their range is checked, in words.
 */
import { parseArgs } from 'node:util';
import type { z } from 'zod';

type Options = Record<string, { type: 'string' | 'boolean'; short?: string }>;

/** parseArgs with positionals allowed, and "--flag -1" joined into "--flag=-1" for value options. */
export function parseCommand<O extends Options>(args: string[], options: O) {
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const name = /^--([^=]+)$/.exec(a)?.[1];
    if (name !== undefined && options[name]?.type === 'string' && i + 1 < args.length && /^-[\d.]/.test(args[i + 1])) {
      joined.push(`${a}=${args[i + 1]}`);
      i++;
    } else joined.push(a);
  }
  return parseArgs({ args: joined, allowPositionals: true, options, strict: true });
}

const decimal = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

export interface NumberRule {
  integer?: boolean;
  min?: number;
  /** `min` itself is not allowed ("more than 0"). */
  minExclusive?: boolean;
  max?: number;
}

/** The value of a number flag, or `usageError` saying what is wrong with it. */
export function numberArg(flag: string, raw: string | undefined, rule: NumberRule, usageError: (m: string) => Error): number | undefined {
  if (raw === undefined) return undefined;
  const v = Number(raw.trim());
  if (!decimal.test(raw.trim()) || !Number.isFinite(v)) throw usageError(`${flag} ${raw}: not a number${/^[+-]?0[xob]/i.test(raw.trim()) ? ' (write it in decimal)' : ''}.`);
  if (rule.integer && !Number.isInteger(v)) throw usageError(`${flag} ${raw}: must be a whole number.`);
  if (rule.min !== undefined && (rule.minExclusive ? v <= rule.min : v < rule.min)) throw usageError(`${flag} ${raw}: must be ${rule.minExclusive ? 'more than' : 'at least'} ${rule.min}.`);
  if (rule.max !== undefined && v > rule.max) throw usageError(`${flag} ${raw}: must be at most ${rule.max}.`);
  return v;
}

/**
 * The value of a number flag checked against a zod schema (a recipe field's),
 * with zod's refusal in words ("must be at least 1", not "Too small:
 * expected number to be >=1").
 */
export function schemaNumberArg(flag: string, raw: string | undefined, schema: z.ZodType, usageError: (m: string) => Error): number | undefined {
  if (raw === undefined) return undefined;
  const v = numberArg(flag, raw, {}, usageError)!;
  const checked = schema.safeParse(v);
  if (checked.success) return v;
  const issue = checked.error.issues[0] as { code?: string; expected?: string; minimum?: unknown; maximum?: unknown; inclusive?: boolean } | undefined;
  const why =
    issue?.code === 'too_small'
      ? `must be ${issue.inclusive === false ? 'more than' : 'at least'} ${String(issue.minimum)}`
      : issue?.code === 'too_big'
        ? `must be ${issue.inclusive === false ? 'less than' : 'at most'} ${String(issue.maximum)}`
        : issue?.code === 'invalid_type' && issue.expected === 'int'
          ? 'must be a whole number'
          : 'out of range';
  throw usageError(`${flag} ${raw}: ${why}.`);
}
