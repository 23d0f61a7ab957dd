/**
 * Writes ONNX models: a small graph builder over the protobuf schema
 * (float32 initializers as raw little-endian data, typed attributes, value
 * infos with shapes). The engine uses it to append a trained head to a
 * backbone graph; the tests and the benchmark use it to write models whose
 * weights they also write as TF.js models.
 */
import { encodeModel, type OnnxAttribute, type OnnxModelProto, type OnnxNode, type OnnxTensor, type OnnxValueInfo } from './proto';

/** Attribute values by kind, as ONNX types them. */
export const attrs = {
  int: (name: string, i: number): OnnxAttribute => ({ name, type: 2, i }),
  float: (name: string, f: number): OnnxAttribute => ({ name, type: 1, f }),
  ints: (name: string, ints: number[]): OnnxAttribute => ({ name, type: 7, ints }),
  floats: (name: string, floats: number[]): OnnxAttribute => ({ name, type: 6, floats }),
  string: (name: string, s: string): OnnxAttribute => ({ name, type: 3, s: new TextEncoder().encode(s) }),
};

/** A float32 tensor with its values as raw data (ONNX stores raw_data little-endian; so do x86 and ARM). */
export function floatTensor(name: string, data: Float32Array, dims: number[]): OnnxTensor {
  const n = dims.reduce((a, b) => a * b, 1);
  if (n !== data.length) throw new RangeError(`tensor ${name}: ${data.length} values for dims [${dims.join(', ')}]`);
  return { name, dims, dataType: 1, rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

export function int64Tensor(name: string, data: number[], dims: number[]): OnnxTensor {
  return { name, dims, dataType: 7, int64Data: data };
}

export function valueInfo(name: string, dims: (number | string)[], elemType = 1): OnnxValueInfo {
  return {
    name,
    type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  };
}

export class GraphBuilder {
  readonly nodes: OnnxNode[] = [];
  readonly initializers: OnnxTensor[] = [];
  readonly inputs: OnnxValueInfo[] = [];
  readonly outputs: OnnxValueInfo[] = [];
  readonly valueInfos: OnnxValueInfo[] = [];

  constructor(readonly name = 'graph') {}

  input(name: string, dims: (number | string)[]): string {
    this.inputs.push(valueInfo(name, dims));
    return name;
  }

  output(name: string, dims: (number | string)[]): void {
    this.outputs.push(valueInfo(name, dims));
  }

  weight(name: string, data: Float32Array, dims: number[]): string {
    this.initializers.push(floatTensor(name, data, dims));
    return name;
  }

  /** Adds a node named `name` whose one output is also `name` (a value named after its node, as the inspector shows it). */
  node(opType: string, name: string, inputs: string[], attributes: OnnxAttribute[] = [], outputs: string[] = [name]): string {
    this.nodes.push({ name, opType, input: inputs, output: outputs, attribute: attributes });
    return outputs[0];
  }

  model(o: { opset?: number; producer?: string; producerVersion?: string; metadata?: Record<string, string>; docString?: string } = {}): OnnxModelProto {
    return {
      irVersion: 8,
      opsetImport: [{ domain: '', version: o.opset ?? 13 }],
      producerName: o.producer ?? 'Layer Lens',
      producerVersion: o.producerVersion ?? '',
      docString: o.docString ?? '',
      graph: {
        name: this.name,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
        valueInfo: this.valueInfos,
      },
      metadataProps: Object.entries(o.metadata ?? {}).map(([key, value]) => ({ key, value })),
    };
  }

  bytes(o: Parameters<GraphBuilder['model']>[0] = {}): Uint8Array {
    return encodeModel(this.model(o));
  }
}
