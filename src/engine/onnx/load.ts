/**
 * loadModel for `.onnx` files: read and check the file (io/onnx.ts), create
 * the ONNX Runtime sessions (model.ts), and describe it as the engine
 * describes every model (ModelSummary), labels and preprocessing included:
 * from metadata.json or labels.txt beside the model, else the model's own
 * metadata_props.
 */
import type { ModelFiles } from '../io/files';
import { readOnnxFile } from '../io/onnx';
import type { ModelSummary, Normalization } from '../../protocol/model';
import { OnnxModel } from './model';
import { int } from './proto';
import { runtimeVersion } from './runtime';

/** A LoadedModel (engine/model.ts) whose model is ONNX. */
export interface OnnxLoaded {
  files: ModelFiles;
  summary: ModelSummary;
  onnx: OnnxModel;
}

type MetaReader = (folder: string) => Promise<{ labels?: string[]; normalization?: Normalization; normalizationFrom?: string; origin?: 'teachable-machine' }>;

const NORMALIZATIONS = new Set(['zeroOne', 'minusOneOne', 'imagenet', 'raw']);

export async function loadOnnxModel(modelPath: string, readMeta: MetaReader): Promise<OnnxLoaded> {
  const start = performance.now();
  const files = await readOnnxFile(modelPath);
  const onnx = await OnnxModel.create(files);
  try {
    const meta = await readMeta(files.files.folder);
    const labels = meta.labels ?? onnx.metadataLabels();
    const norm = onnx.metadataProps['normalization'];
    const fromProps = NORMALIZATIONS.has(norm) ? (norm as Normalization) : undefined;
    const normalization = meta.normalization ?? fromProps;
    const normalizationFrom = meta.normalization ? meta.normalizationFrom : fromProps ? "the model's metadata_props" : undefined;
    const warnings = [...files.files.warnings];
    if (!onnx.fixedSize()) warnings.push(`${onnx.shown} accepts images of any size; node shapes are known after the first inspection, and training needs "imageSize" in its recipe.`);
    const summary: ModelSummary = {
      modelPath: files.files.modelJsonPath,
      name: onnx.name,
      format: 'onnx',
      inputShape: onnx.imageShape(),
      outputShape: [null, ...(onnx.shapes.get(onnx.outputName)?.slice(1) ?? [])],
      outputs: onnx.outputs(),
      layers: onnx.rows(),
      totalParams: onnx.totalParams(),
      trainableParams: 0,
      ...(labels ? { labels } : {}),
      ...(normalization ? { normalization } : {}),
      ...(normalizationFrom ? { normalizationFrom } : {}),
      warnings,
      loadMs: Math.round(performance.now() - start),
      onnx: {
        opset: onnx.opset,
        irVersion: int(files.model.irVersion),
        producer: onnx.producer,
        layout: onnx.layout,
        inputShape: onnx.inputDims,
        inputName: onnx.inputName,
        outputName: onnx.outputName,
        constantNodes: onnx.nodes.filter((n) => !n.dynamic).length,
        runtime: runtimeVersion(),
      },
    };
    return { files: files.files, summary, onnx };
  } catch (e) {
    await onnx.release();
    throw e;
  }
}
