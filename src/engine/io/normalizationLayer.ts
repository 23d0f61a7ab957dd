/**
 * Keras's Normalization preprocessing layer, which tfjs-layers lacks: a model
 * that starts with one (Keras 2 and 3 configs alike) would otherwise be
 * refused as using an unknown layer class.
 *
 * It computes (x - mean) / max(sqrt(variance), 1e-7) per position of the
 * kept axes (`axis`, -1 by default), or the inverse with `invert`. Mean and
 * variance come from the config when the model was made with
 * Normalization(mean=..., variance=...), else from its weights "mean",
 * "variance" (and "count", which Keras keeps for old saves and we only load).
 */
import * as tf from '@tensorflow/tfjs';

type Config = tf.serialization.ConfigDict & {
  axis?: number | number[] | null;
  mean?: number | number[] | null;
  variance?: number | number[] | null;
  invert?: boolean;
};

const EPSILON = 1e-7;

export class NormalizationLayer extends tf.layers.Layer {
  static className = 'Normalization';
  private readonly axis: number[];
  private readonly configMean?: number | number[];
  private readonly configVariance?: number | number[];
  private readonly invert: boolean;
  private meanWeight?: tf.LayerVariable;
  private varianceWeight?: tf.LayerVariable;
  private broadcastShape: number[] = [];

  constructor(config: Config) {
    super(config as tf.serialization.ConfigDict);
    const a = config.axis;
    this.axis = a === null ? [] : a === undefined ? [-1] : Array.isArray(a) ? a.map(Number) : [Number(a)];
    this.configMean = config.mean ?? undefined;
    this.configVariance = config.variance ?? undefined;
    this.invert = config.invert === true;
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as (number | null)[];
    const rank = shape.length;
    const keep = this.axis.map((d) => (d < 0 ? d + rank : d)).sort((x, y) => x - y);
    if (keep.some((d) => d < 0 || d >= rank || shape[d] === null)) {
      throw new Error(`Normalization ${this.name}: axis ${JSON.stringify(this.axis)} does not fit an input of rank ${rank} with known sizes`);
    }
    this.broadcastShape = shape.map((d, i) => (keep.includes(i) ? (d as number) : 1));
    if (this.configMean === undefined) {
      const varShape = keep.map((d) => shape[d] as number);
      this.meanWeight = this.addWeight('mean', varShape, 'float32', tf.initializers.zeros(), undefined, false);
      this.varianceWeight = this.addWeight('variance', varShape, 'float32', tf.initializers.ones(), undefined, false);
      this.addWeight('count', [], 'int32', tf.initializers.zeros(), undefined, false);
    }
    this.built = true;
  }

  /** Mean and variance shaped to broadcast against the input. */
  stats(): { mean: tf.Tensor; variance: tf.Tensor } {
    return tf.tidy(() => {
      const fromConfig = (v: number | number[]) => {
        const t = tf.tensor(v);
        // Keras aligns a shorter mean with the kept axes from the right.
        return t.rank === 0 ? t : tf.reshape(t, this.broadcastShape);
      };
      if (this.meanWeight && this.varianceWeight) {
        return { mean: tf.reshape(this.meanWeight.read(), this.broadcastShape), variance: tf.reshape(this.varianceWeight.read(), this.broadcastShape) };
      }
      return { mean: fromConfig(this.configMean ?? 0), variance: fromConfig(this.configVariance ?? 1) };
    });
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const x = Array.isArray(inputs) ? inputs[0] : inputs;
      const { mean, variance } = this.stats();
      const std = tf.maximum(tf.sqrt(variance), EPSILON);
      return this.invert ? tf.add(tf.mul(x, std), mean) : tf.div(tf.sub(x, mean), std);
    });
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape | tf.Shape[] {
    return inputShape;
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      axis: this.axis.length === 1 ? this.axis[0] : this.axis,
      mean: (this.configMean ?? null) as tf.serialization.ConfigDictValue,
      variance: (this.configVariance ?? null) as tf.serialization.ConfigDictValue,
      invert: this.invert,
    };
  }
}

tf.serialization.registerClass(NormalizationLayer);
