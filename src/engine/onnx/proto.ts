/**
 * ONNX protobuf messages through protobufjs (the schema is schema.ts): decode,
 * encode, and the plain TypeScript shapes of the decoded objects that the
 * engine reads. protobufjs decodes int64 fields as Long objects (the `long`
 * package): `int()` turns them into numbers, refusing values past 2^53.
 */
import * as protobuf from 'protobufjs';
import { ONNX_PROTO } from './schema';

type Int = number | { toNumber(): number; high: number; low: number };

export interface OnnxStringEntry {
  key?: string;
  value?: string;
}

export interface OnnxTensor {
  name?: string;
  dims?: Int[];
  dataType?: number;
  rawData?: Uint8Array;
  floatData?: number[];
  int32Data?: number[];
  int64Data?: Int[];
  doubleData?: number[];
  uint64Data?: Int[];
  stringData?: Uint8Array[];
  externalData?: OnnxStringEntry[];
  dataLocation?: number;
  docString?: string;
}

export interface OnnxDimension {
  dimValue?: Int;
  dimParam?: string;
}

export interface OnnxType {
  tensorType?: { elemType?: number; shape?: { dim?: OnnxDimension[] } };
  sequenceType?: unknown;
  mapType?: unknown;
  optionalType?: unknown;
  sparseTensorType?: unknown;
}

export interface OnnxValueInfo {
  name?: string;
  type?: OnnxType;
  docString?: string;
}

export interface OnnxAttribute {
  name?: string;
  type?: number;
  f?: number;
  i?: Int;
  s?: Uint8Array;
  t?: OnnxTensor;
  g?: OnnxGraph;
  floats?: number[];
  ints?: Int[];
  strings?: Uint8Array[];
  tensors?: OnnxTensor[];
  graphs?: OnnxGraph[];
  refAttrName?: string;
}

export interface OnnxNode {
  input?: string[];
  output?: string[];
  name?: string;
  opType?: string;
  domain?: string;
  attribute?: OnnxAttribute[];
  docString?: string;
}

export interface OnnxGraph {
  node?: OnnxNode[];
  name?: string;
  initializer?: OnnxTensor[];
  sparseInitializer?: { values?: OnnxTensor; indices?: OnnxTensor; dims?: Int[] }[];
  input?: OnnxValueInfo[];
  output?: OnnxValueInfo[];
  valueInfo?: OnnxValueInfo[];
  docString?: string;
}

export interface OnnxFunction {
  name?: string;
  domain?: string;
  input?: string[];
  output?: string[];
  node?: OnnxNode[];
}

export interface OnnxModelProto {
  irVersion?: Int;
  opsetImport?: { domain?: string; version?: Int }[];
  producerName?: string;
  producerVersion?: string;
  domain?: string;
  modelVersion?: Int;
  docString?: string;
  graph?: OnnxGraph;
  metadataProps?: OnnxStringEntry[];
  functions?: OnnxFunction[];
  trainingInfo?: unknown[];
}

/** TensorProto.DataType values the engine names or reads. */
export const DataType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
  BFLOAT16: 16,
} as const;

const typeNames: Record<number, string> = {
  1: 'float32', 2: 'uint8', 3: 'int8', 4: 'uint16', 5: 'int16', 6: 'int32', 7: 'int64', 8: 'string', 9: 'bool', 10: 'float16',
  11: 'float64', 12: 'uint32', 13: 'uint64', 14: 'complex64', 15: 'complex128', 16: 'bfloat16', 17: 'float8e4m3fn', 18: 'float8e4m3fnuz',
  19: 'float8e5m2', 20: 'float8e5m2fnuz', 21: 'uint4', 22: 'int4', 23: 'float4e2m1',
};

/** Bytes per element of a data type (0 for strings; fractional for 4-bit types). */
export function elementBytes(dataType: number): number | undefined {
  switch (dataType) {
    case 1: case 6: case 12: return 4;
    case 2: case 3: case 9: case 17: case 18: case 19: case 20: return 1;
    case 4: case 5: case 10: case 16: return 2;
    case 7: case 11: case 13: case 14: return 8;
    case 15: return 16;
    case 21: case 22: case 23: return 0.5;
    case 8: return 0;
    default: return undefined;
  }
}

export function dataTypeName(dataType: number | undefined): string {
  return dataType === undefined ? 'undefined' : (typeNames[dataType] ?? `type ${dataType}`);
}

let root: protobuf.Root | undefined;

function types(): { model: protobuf.Type } {
  root ??= protobuf.parse(ONNX_PROTO, { keepCase: false }).root;
  return { model: root.lookupType('onnx.ModelProto') };
}

/** Decodes a ModelProto; throws protobufjs's error on damaged bytes. */
export function decodeModel(bytes: Uint8Array): OnnxModelProto {
  return types().model.decode(bytes) as unknown as OnnxModelProto;
}

export function encodeModel(model: OnnxModelProto): Uint8Array {
  return types().model.encode(model as unknown as protobuf.Message).finish();
}

/** An int64 field as a number; throws past 2^53 (no shape, offset or opset is that large). */
export function int(v: Int | undefined | null): number {
  if (v === undefined || v === null) return 0;
  if (typeof v === 'number') return v;
  const n = v.toNumber();
  if (!Number.isSafeInteger(n)) throw new RangeError(`an integer field holds ${n}, beyond 2^53`);
  return n;
}

export function attr(node: OnnxNode, name: string): OnnxAttribute | undefined {
  return node.attribute?.find((a) => a.name === name);
}

/** A tensor's dims when every one is a known non-negative integer, else undefined. */
export function valueShape(v: OnnxValueInfo | undefined): (number | string | null)[] | undefined {
  const dims = v?.type?.tensorType?.shape?.dim;
  if (!dims) return undefined;
  return dims.map((d) => (d.dimValue !== undefined && d.dimValue !== null && int(d.dimValue) > 0 ? int(d.dimValue) : (d.dimParam || null)));
}
