/**
 * A strict JSON parser (RFC 8259) that records where every value is, for
 * the recipe's diagnostics: JSON.parse cannot say where a value is, and in
 * Node 20 not always where a syntax error is.
 */

export type JsonPath = (string | number)[];

export interface Span {
  start: number;
  end: number;
  /** The property name's span, for values inside objects. */
  keyStart?: number;
  keyEnd?: number;
}

export interface ParsedJson {
  value: unknown;
  spans: Map<string, Span>;
  /** Keys that appear twice in one object (the last one wins, as in JSON.parse). */
  duplicates: JsonPath[];
}

export class JsonSyntaxError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
  }
}

export const spanKey = (p: JsonPath): string => JSON.stringify(p);
export const maxDepth = 64;

export function describeChar(c: string | undefined): string {
  if (c === undefined) return 'end of the file'; // "unexpected end of the file", not "unexpected the end…"
  if (c === '\n' || c === '\r') return 'a line break';
  return `'${c}'`;
}

export function parseJsonWithSpans(text: string): ParsedJson {
  const spans = new Map<string, Span>();
  const duplicates: JsonPath[] = [];
  let i = 0;

  const ws = () => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  };
  const fail = (expected: string): never => {
    const c = text[i];
    if (c === '/') throw new JsonSyntaxError('comments are not allowed in JSON; remove them', i);
    if (c === "'") throw new JsonSyntaxError('strings must be in double quotes (") in JSON', i);
    throw new JsonSyntaxError(`unexpected ${describeChar(c)}; expected ${expected}`, i);
  };

  const str = (): string => {
    const start = i;
    i++; // opening quote
    let out = '';
    for (;;) {
      const c = text[i];
      if (c === undefined) throw new JsonSyntaxError('a string is not closed: add the missing "', start);
      if (c === '"') {
        i++;
        return out;
      }
      if (c < ' ') throw new JsonSyntaxError('a line break or control character inside a string must be escaped (\\n, \\t)', i);
      if (c === '\\') {
        const e = text[i + 1];
        const simple: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
        if (e !== undefined && e in simple) {
          out += simple[e];
          i += 2;
        } else if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) {
          out += String.fromCharCode(parseInt(text.slice(i + 2, i + 6), 16));
          i += 6;
        } else throw new JsonSyntaxError(`invalid escape \\${e ?? ''} in a string`, i);
      } else {
        out += c;
        i++;
      }
    }
  };

  const value = (p: JsonPath, depth: number, key?: { start: number; end: number }): unknown => {
    if (depth > maxDepth) throw new JsonSyntaxError(`nested deeper than ${maxDepth} levels`, i);
    ws();
    const start = i;
    const c = text[i];
    let v: unknown;
    if (c === '{') {
      i++;
      const obj: Record<string, unknown> = {};
      ws();
      if (text[i] === '}') i++;
      else {
        for (;;) {
          ws();
          if (text[i] !== '"') {
            if (text[i] === '}') throw new JsonSyntaxError("a trailing comma before '}' is not allowed in JSON; remove it", i);
            if (/[A-Za-z_$]/.test(text[i] ?? '')) throw new JsonSyntaxError('property names must be in double quotes in JSON', i);
            fail('a property name in double quotes');
          }
          const ks = i;
          const k = str();
          const ke = i;
          ws();
          if (text[i] !== ':') fail(`':' after "${k}"`);
          i++;
          const child = [...p, k];
          if (Object.prototype.hasOwnProperty.call(obj, k)) duplicates.push(child);
          // defineProperty, not assignment: a key "__proto__" must stay a plain key.
          Object.defineProperty(obj, k, { value: value(child, depth + 1, { start: ks, end: ke }), enumerable: true, writable: true, configurable: true });
          ws();
          if (text[i] === ',') {
            i++;
            continue;
          }
          if (text[i] === '}') {
            i++;
            break;
          }
          fail("',' or '}'");
        }
      }
      v = obj;
    } else if (c === '[') {
      i++;
      const arr: unknown[] = [];
      ws();
      if (text[i] === ']') i++;
      else {
        for (;;) {
          ws();
          if (text[i] === ']') throw new JsonSyntaxError("a trailing comma before ']' is not allowed in JSON; remove it", i);
          arr.push(value([...p, arr.length], depth + 1));
          ws();
          if (text[i] === ',') {
            i++;
            continue;
          }
          if (text[i] === ']') {
            i++;
            break;
          }
          fail("',' or ']'");
        }
      }
      v = arr;
    } else if (c === '"') {
      v = str();
    } else {
      const m = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/.exec(text.slice(i, i + 400));
      const word = /^(true|false|null)\b/.exec(text.slice(i, i + 6));
      if (m && m[0].length > 0) {
        v = Number(m[0]);
        i += m[0].length;
      } else if (word) {
        v = word[1] === 'true' ? true : word[1] === 'false' ? false : null;
        i += word[1].length;
      } else fail('a value (an object, array, string, number, true, false or null)');
    }
    spans.set(spanKey(p), { start, end: i, ...(key ? { keyStart: key.start, keyEnd: key.end } : {}) });
    return v;
  };

  if (text.charCodeAt(0) === 0xfeff) i = 1; // a BOM, as some editors write
  ws();
  if (i >= text.length) throw new JsonSyntaxError('the file is empty; write {} for the defaults, or delete it', 0);
  const root = value([], 0);
  ws();
  if (i < text.length) throw new JsonSyntaxError(`unexpected ${describeChar(text[i])} after the end of the JSON value`, i);
  return { value: root, spans, duplicates };
}

/** 1-based line and column of a UTF-16 offset. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let k = 0; k < offset && k < text.length; k++) {
    if (text[k] === '\n') {
      line++;
      lineStart = k + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}
