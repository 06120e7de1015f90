/**
 * S3FD face detector as joonson/syncnet_python runs it (`detectors/s3fd`: S3FDNet, PriorBox, Detect, nms_, and
 * `S3FD.detect_faces`), for the reference SyncNet preprocessing (`difftalk eval --sync-crop reference`,
 * ../shared/docs/eval-metrics.md §4).
 *
 * Network (PyTorch state_dict names kept): VGG16 conv1_1…conv5_3 (`vgg.{0,2,5,7,10,12,14,17,19,21,24,26,28}`; 2×2
 * max pools, the third with ceil_mode), fc6 = 3×3 conv dilation 6 (`vgg.31`), fc7 = 1×1 (`vgg.33`), L2Norm on
 * conv3_3/conv4_3/conv5_3 (x / (‖x‖₂ over channels + 1e-10) · weight), extra layers conv6 (`extras.0/1`, 1×1 then 3×3
 * stride 2) and conv7 (`extras.2/3`), each followed by ReLU. Six heads (`loc.i`, `conf.i`, 3×3) on the sources at
 * strides 4, 8, 16, 32, 64, 128; the first conf head has 4 channels: max-out background = max of channels 0..2.
 * Priors: centre ((j + 0.5)·step/W, (i + 0.5)·step/H), size (min/W, min/H), min sizes 16…512. Decoding with variances
 * 0.1 / 0.2, softmax scores, per-image NMS (IoU 0.3, scores > 0.05, best 5000, keep 750) as `Detect`, then
 * detect_faces: boxes scaled to the original image, scores > conf_th, and a second NMS (`nms_`, IoU 0.1).
 * Preprocessing of detect_faces: cv2.resize by `scale` (INTER_LINEAR), RGB order kept, minus (123, 117, 104) for
 * (R, G, B) — the BGR mean [104, 117, 123] subtracted from the BGR-swapped array, then swapped back.
 */
import path from 'node:path';
import { DifftalkError } from '../util/errors.js';
import type { OnEvent } from '../util/events.js';
import { tf } from '../util/tf.js';
import { readSafetensors } from '../weights/safetensors.js';
import { readTorchFile, stateDict, type TensorData } from '../weights/torch.js';
import { loadWeights, pickFloat32Tensors, registerWeightConverter, requireWeights } from './weights-store.js';

export const S3FD_MIN_SIZES = [16, 32, 64, 128, 256, 512] as const;
export const S3FD_STEPS = [4, 8, 16, 32, 64, 128] as const;
export const S3FD_VARIANCE = [0.1, 0.2] as const;
/** syncnet_python's detect_faces call in run_pipeline.py: scale 0.25, conf_th 0.9; its nms_ threshold 0.1. */
export const S3FD_REFERENCE = { scale: 0.25, confTh: 0.9, nmsTh: 0.1 } as const;
/** Detect(): top_k 750, nms_thresh 0.3, conf_thresh 0.05, nms_top_k 5000. */
const DETECT = { topK: 750, nmsTh: 0.3, confTh: 0.05, nmsTopK: 5000 } as const;
/** Per-channel mean subtracted from the RGB input (R, G, B). */
export const S3FD_MEAN_RGB = [123, 117, 104] as const;
const L2_EPS = 1e-10;

interface ConvDef {
  name: string;
  cin: number;
  cout: number;
  k: number;
  stride: number;
  pad: number;
  dilation: number;
}

const conv = (name: string, cin: number, cout: number, k = 3, stride = 1, pad = k === 3 ? 1 : 0, dilation = 1): ConvDef => ({
  name,
  cin,
  cout,
  k,
  stride,
  pad,
  dilation,
});

/** VGG part: convs by index, 'M' = max pool (floor), 'C' = max pool (ceil_mode). */
const VGG: Array<ConvDef | 'M' | 'C'> = [
  conv('vgg.0', 3, 64),
  conv('vgg.2', 64, 64),
  'M',
  conv('vgg.5', 64, 128),
  conv('vgg.7', 128, 128),
  'M',
  conv('vgg.10', 128, 256),
  conv('vgg.12', 256, 256),
  conv('vgg.14', 256, 256), // conv3_3 → L2Norm3_3
  'C',
  conv('vgg.17', 256, 512),
  conv('vgg.19', 512, 512),
  conv('vgg.21', 512, 512), // conv4_3 → L2Norm4_3
  'M',
  conv('vgg.24', 512, 512),
  conv('vgg.26', 512, 512),
  conv('vgg.28', 512, 512), // conv5_3 → L2Norm5_3
  'M',
  conv('vgg.31', 512, 1024, 3, 1, 6, 6), // fc6
  conv('vgg.33', 1024, 1024, 1), // fc7
];
const EXTRAS = [conv('extras.0', 1024, 256, 1), conv('extras.1', 256, 512, 3, 2), conv('extras.2', 512, 128, 1), conv('extras.3', 128, 256, 3, 2)];
const SOURCE_CHANNELS = [256, 512, 512, 1024, 512, 256];
const L2NORMS: Array<[string, number, string]> = [
  ['L2Norm3_3', 256, 'vgg.14'],
  ['L2Norm4_3', 512, 'vgg.21'],
  ['L2Norm5_3', 512, 'vgg.28'],
];
const HEADS = SOURCE_CHANNELS.flatMap((c, i) => [conv(`loc.${i}`, c, 4), conv(`conf.${i}`, c, i === 0 ? 4 : 2)]);
const CONVS = [...VGG.filter((l): l is ConvDef => typeof l !== 'string'), ...EXTRAS, ...HEADS];

/** PyTorch state_dict names and shapes of S3FDNet (as in sfd_face.pth). */
export function s3fdParamShapes(): Array<[string, number[]]> {
  const out: Array<[string, number[]]> = [];
  for (const c of CONVS) out.push([`${c.name}.weight`, [c.cout, c.cin, c.k, c.k]], [`${c.name}.bias`, [c.cout]]);
  for (const [n, ch] of L2NORMS) out.push([`${n}.weight`, [ch]]);
  return out;
}

export interface NamedWeight {
  shape: readonly number[];
  data: Float32Array;
}

/** Raw head outputs of one image, in the order torch concatenates them (per source: row-major over (y, x)). */
export interface S3fdRaw {
  /** P × 4 location offsets. */
  loc: Float32Array;
  /** P × 2 softmax scores (background, face). */
  conf: Float32Array;
  /** P × 4 priors (cx, cy, w, h), normalised. */
  priors: Float64Array;
  /** Feature map size of each source. */
  featureMaps: Array<[number, number]>;
}

/** One detection: box corners in image pixels and the face score. */
export interface Detection {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  score: number;
}

/** PriorBox.forward for an input of imh × imw and the sources' feature map sizes. */
export function s3fdPriors(imh: number, imw: number, featureMaps: ReadonlyArray<readonly [number, number]>): Float64Array {
  const n = featureMaps.reduce((a, [h, w]) => a + h * w, 0);
  const out = new Float64Array(n * 4);
  let p = 0;
  featureMaps.forEach(([fh, fw], k) => {
    const step = S3FD_STEPS[k]!;
    const fkw = imw / step;
    const fkh = imh / step;
    for (let i = 0; i < fh; i++) {
      for (let j = 0; j < fw; j++) {
        // torch.FloatTensor(mean): the priors are float32 in the reference
        out[p++] = Math.fround((j + 0.5) / fkw);
        out[p++] = Math.fround((i + 0.5) / fkh);
        out[p++] = Math.fround(S3FD_MIN_SIZES[k]! / imw);
        out[p++] = Math.fround(S3FD_MIN_SIZES[k]! / imh);
      }
    }
  });
  return out;
}

/** box_utils.decode: (cx, cy, w, h) from priors and offsets, to corners (normalised). */
export function s3fdDecode(loc: ArrayLike<number>, priors: ArrayLike<number>): Float64Array {
  const n = priors.length / 4;
  const out = new Float64Array(n * 4);
  const [v0, v1] = S3FD_VARIANCE;
  for (let i = 0; i < n; i++) {
    const pw = priors[i * 4 + 2]!;
    const ph = priors[i * 4 + 3]!;
    const cx = priors[i * 4]! + loc[i * 4]! * v0 * pw;
    const cy = priors[i * 4 + 1]! + loc[i * 4 + 1]! * v0 * ph;
    const w = pw * Math.exp(loc[i * 4 + 2]! * v1);
    const h = ph * Math.exp(loc[i * 4 + 3]! * v1);
    const x1 = cx - w / 2;
    const y1 = cy - h / 2;
    out.set([x1, y1, w + x1, h + y1], i * 4);
  }
  return out;
}

/**
 * box_utils.nms (the torch one inside Detect): greedy by descending score among the best `topK`, dropping boxes whose
 * IoU with the kept one is > overlap (areas without +1). Returns kept indices, best first.
 */
export function s3fdNmsTorch(boxes: ArrayLike<number>, scores: ArrayLike<number>, overlap: number, topK: number): number[] {
  const n = scores.length;
  // ascending sort, keep the last topK (stable for equal scores, as torch's sort is on CPU for distinct values)
  let idx = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[a]! - scores[b]! || a - b);
  idx = idx.slice(Math.max(0, idx.length - topK));
  const keep: number[] = [];
  const area = (i: number) => (boxes[i * 4 + 2]! - boxes[i * 4]!) * (boxes[i * 4 + 3]! - boxes[i * 4 + 1]!);
  while (idx.length > 0) {
    const i = idx.pop()!;
    keep.push(i);
    idx = idx.filter((j) => {
      const w = Math.max(0, Math.min(boxes[j * 4 + 2]!, boxes[i * 4 + 2]!) - Math.max(boxes[j * 4]!, boxes[i * 4]!));
      const h = Math.max(0, Math.min(boxes[j * 4 + 3]!, boxes[i * 4 + 3]!) - Math.max(boxes[j * 4 + 1]!, boxes[i * 4 + 1]!));
      const inter = w * h;
      return inter / (area(j) - inter + area(i)) <= overlap;
    });
  }
  return keep;
}

/** box_utils.nms_ (numpy, on pixel boxes with scores): greedy by descending score, IoU > thresh dropped. */
export function s3fdNmsNumpy(dets: readonly Detection[], thresh: number): Detection[] {
  // np.argsort(scores)[::-1]: descending; argsort's default quicksort is not stable, ties are not expected
  let order = dets.map((_, i) => i).sort((a, b) => dets[b]!.score - dets[a]!.score || b - a);
  const area = (d: Detection) => (d.x2 - d.x1) * (d.y2 - d.y1);
  const keep: Detection[] = [];
  while (order.length > 0) {
    const a = dets[order[0]!]!;
    keep.push(a);
    order = order.slice(1).filter((j) => {
      const b = dets[j]!;
      const w = Math.max(0, Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1));
      const h = Math.max(0, Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1));
      const inter = w * h;
      return inter / (area(a) + area(b) - inter) <= thresh;
    });
  }
  return keep;
}

/**
 * Detect.forward for one image plus detect_faces' thresholding: the face-class detections (score, corners) after
 * the per-image NMS, best first, scaled to `width × height` pixels, keeping scores > confTh, then nms_(·, nmsTh).
 */
export function s3fdDetections(raw: S3fdRaw, width: number, height: number, opts: { confTh?: number; nmsTh?: number } = {}): Detection[] {
  const confTh = opts.confTh ?? S3FD_REFERENCE.confTh;
  const boxes = s3fdDecode(raw.loc, raw.priors);
  const n = raw.priors.length / 4;
  const candIdx: number[] = [];
  for (let i = 0; i < n; i++) if (raw.conf[i * 2 + 1]! > DETECT.confTh) candIdx.push(i);
  const cb = new Float64Array(candIdx.length * 4);
  const cs = new Float64Array(candIdx.length);
  candIdx.forEach((p, k) => {
    cb.set(boxes.subarray(p * 4, p * 4 + 4), k * 4);
    cs[k] = raw.conf[p * 2 + 1]!;
  });
  const kept = s3fdNmsTorch(cb, cs, DETECT.nmsTh, DETECT.nmsTopK).slice(0, DETECT.topK);
  const dets: Detection[] = [];
  // detect_faces walks the sorted list while score > conf_th
  for (const k of kept) {
    if (!(cs[k]! > confTh)) break;
    dets.push({ x1: cb[k * 4]! * width, y1: cb[k * 4 + 1]! * height, x2: cb[k * 4 + 2]! * width, y2: cb[k * 4 + 3]! * height, score: cs[k]! });
  }
  return dets.length ? s3fdNmsNumpy(dets, opts.nmsTh ?? S3FD_REFERENCE.nmsTh) : [];
}

/**
 * cv2.resize(img, (0, 0), fx=s, fy=s, INTER_LINEAR) of an RGB uint8 image: output size round(W·s) × round(H·s),
 * half-pixel centres (source = (d + 0.5)/s − 0.5, clamped), bilinear, rounded to uint8 (OpenCV's 11-bit fixed-point
 * weights are exact for s = 1/2, 1/4: the reference scale).
 */
export function cvResizeLinear(src: Uint8Array, w: number, h: number, s: number): { data: Uint8Array; width: number; height: number } {
  const ow = Math.max(1, Math.round(w * s));
  const oh = Math.max(1, Math.round(h * s));
  const out = new Uint8Array(ow * oh * 3);
  const axis = (d: number, n: number): [number, number, number] => {
    let f = (d + 0.5) / s - 0.5;
    if (f < 0) f = 0;
    const i0 = Math.min(Math.floor(f), n - 1);
    const i1 = Math.min(i0 + 1, n - 1);
    return [i0, i1, Math.min(f - i0, 1)];
  };
  const xs = Array.from({ length: ow }, (_, x) => axis(x, w));
  for (let y = 0; y < oh; y++) {
    const [y0, y1, wy] = axis(y, h);
    for (let x = 0; x < ow; x++) {
      const [x0, x1, wx] = xs[x]!;
      for (let c = 0; c < 3; c++) {
        const a = src[(y0 * w + x0) * 3 + c]! * (1 - wx) + src[(y0 * w + x1) * 3 + c]! * wx;
        const b = src[(y1 * w + x0) * 3 + c]! * (1 - wx) + src[(y1 * w + x1) * 3 + c]! * wx;
        out[(y * ow + x) * 3 + c] = Math.round(a * (1 - wy) + b * wy);
      }
    }
  }
  return { data: out, width: ow, height: oh };
}

interface LoadedConv {
  def: ConvDef;
  filter: tf.Tensor4D;
  bias: tf.Tensor1D;
}

/** S3FDNet with its weights as tf tensors; call `dispose()` when done. */
export class S3fd {
  private readonly convs = new Map<string, LoadedConv>();
  private readonly l2 = new Map<string, tf.Tensor1D>();

  private constructor(weights: ReadonlyMap<string, NamedWeight>) {
    for (const def of CONVS) {
      const w = weights.get(`${def.name}.weight`)!;
      const b = weights.get(`${def.name}.bias`)!;
      const filter = tf.tidy(() => tf.tensor4d(w.data, [def.cout, def.cin, def.k, def.k]).transpose<tf.Tensor4D>([2, 3, 1, 0]));
      this.convs.set(def.name, { def, filter, bias: tf.tensor1d(b.data) });
    }
    for (const [n] of L2NORMS) this.l2.set(n, tf.tensor1d(weights.get(`${n}.weight`)!.data));
  }

  /** From PyTorch names and shapes (see s3fdParamShapes); throws DifftalkError('bad-weights') naming what is wrong. */
  static fromTensors(weights: ReadonlyMap<string, { shape: readonly number[]; data: unknown }>, source = 'S3FD weights'): S3fd {
    for (const [name, shape] of s3fdParamShapes()) {
      const t = weights.get(name);
      if (!t) throw new DifftalkError('bad-weights', `${source}: tensor ${name} is missing (is this sfd_face.pth?)`);
      if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
        throw new DifftalkError('bad-weights', `${source}: ${name} has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
      if (!(t.data instanceof Float32Array)) throw new DifftalkError('bad-weights', `${source}: ${name} is not float32`);
    }
    return new S3fd(weights as ReadonlyMap<string, NamedWeight>);
  }

  private conv(name: string, x: tf.Tensor4D, relu: boolean): tf.Tensor4D {
    const c = this.convs.get(name)!;
    const d = c.def;
    const pad = d.pad === 0 ? 'valid' : d.dilation > 1 ? 'same' : d.pad;
    return tf.fused.conv2d({ x, filter: c.filter, bias: c.bias, strides: d.stride, pad, dilations: d.dilation, activation: relu ? 'relu' : 'linear' });
  }

  private l2norm(name: string, x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => x.div(x.square().sum(3, true).sqrt().add(L2_EPS)).mul(this.l2.get(name)!));
  }

  /**
   * Raw outputs for one preprocessed image: `x` is [1, H, W, 3] float32, RGB minus S3FD_MEAN_RGB. Head outputs are
   * concatenated as torch does (per source, NHWC flattened), conf softmaxed, priors for this input size.
   */
  async forwardRaw(x: tf.Tensor4D): Promise<S3fdRaw> {
    const [, H, W] = x.shape;
    const heads = tf.tidy(() => {
      const sources: tf.Tensor4D[] = [];
      let h = x;
      for (const l of VGG) {
        if (l === 'M') h = tf.maxPool(h, 2, 2, 'valid');
        else if (l === 'C')
          h = tf.maxPool(h, 2, 2, 'same'); // ceil_mode: the odd last row/column pools alone
        else {
          h = this.conv(l.name, h, true);
          const norm = L2NORMS.find((n) => n[2] === l.name);
          if (norm) sources.push(this.l2norm(norm[0], h));
        }
      }
      sources.push(h);
      EXTRAS.forEach((e, k) => {
        h = this.conv(e.name, h, true);
        if (k % 2 === 1) sources.push(h);
      });
      const locs: tf.Tensor[] = [];
      const confs: tf.Tensor[] = [];
      sources.forEach((s, i) => {
        locs.push(this.conv(`loc.${i}`, s, false).reshape([-1, 4]));
        let c = this.conv(`conf.${i}`, s, false);
        if (i === 0) {
          const [bg, face] = tf.split(c, [3, 1], 3);
          c = tf.concat([bg!.max(3, true), face!], 3) as tf.Tensor4D;
        }
        confs.push(c.reshape([-1, 2]));
      });
      return {
        loc: tf.concat(locs, 0),
        conf: tf.softmax(tf.concat(confs, 0)),
        maps: sources.map((s) => [s.shape[1], s.shape[2]] as [number, number]),
      };
    });
    const loc = new Float32Array(await heads.loc.data<'float32'>());
    const conf = new Float32Array(await heads.conf.data<'float32'>());
    tf.dispose([heads.loc, heads.conf]);
    return { loc, conf, priors: s3fdPriors(H, W, heads.maps), featureMaps: heads.maps };
  }

  /** The network input for an RGB uint8 frame (detect_faces' resize and mean subtraction). */
  static preprocess(rgb: Uint8Array, width: number, height: number, scale: number = S3FD_REFERENCE.scale): tf.Tensor4D {
    const r = scale === 1 ? { data: rgb, width, height } : cvResizeLinear(rgb, width, height, scale);
    const f = new Float32Array(r.data.length);
    for (let i = 0; i < r.data.length; i++) f[i] = r.data[i]! - S3FD_MEAN_RGB[i % 3]!;
    return tf.tensor4d(f, [1, r.height, r.width, 3]);
  }

  /** S3FD.detect_faces(image, conf_th, scales=[scale]) on one RGB uint8 frame: boxes in frame pixels, best first. */
  async detectFaces(rgb: Uint8Array, width: number, height: number, opts: { scale?: number; confTh?: number } = {}): Promise<Detection[]> {
    const x = S3fd.preprocess(rgb, width, height, opts.scale ?? S3FD_REFERENCE.scale);
    try {
      return s3fdDetections(await this.forwardRaw(x), width, height, { confTh: opts.confTh });
    } finally {
      x.dispose();
    }
  }

  dispose(): void {
    for (const c of this.convs.values()) tf.dispose([c.filter, c.bias]);
    for (const t of this.l2.values()) t.dispose();
    this.convs.clear();
    this.l2.clear();
  }
}

/** Converter for `difftalk weights import --kind s3fd --model sfd_face.pth` (and `weights fetch s3fd`). */
registerWeightConverter('s3fd', async ({ inputs }) => {
  const file = inputs.model!;
  const tensors = pickFloat32Tensors(stateDict(await readTorchFile(file), { stripPrefix: 'module.' }), s3fdParamShapes(), file, 'sfd_face.pth');
  return { tensors, metadata: { format: 'difftalk-s3fd', source: 'syncnet_python detectors/s3fd sfd_face.pth', layout: 'pytorch-state-dict' } };
});

/**
 * Load S3FD: from `weights` when given (the PyTorch sfd_face.pth or a converted .safetensors), else the imported
 * `s3fd` kind of the weights cache (`fetch`: downloaded on first use, saying from where; else
 * DifftalkError('weights-missing') naming sfd_face.pth and the import command).
 */
export async function loadS3fd(
  options: { weights?: string; cacheDir?: string; fetch?: boolean; onEvent?: OnEvent } = {},
): Promise<{ net: S3fd; file: string }> {
  if (!options.weights) {
    const file = await requireWeights('s3fd', { cacheDir: options.cacheDir, fetch: options.fetch, onEvent: options.onEvent });
    const tensors = await loadWeights('s3fd', { cacheDir: options.cacheDir, verify: false });
    return { net: S3fd.fromTensors(tensors, file), file };
  }
  const file = path.resolve(options.weights);
  let tensors: Map<string, TensorData>;
  try {
    tensors = file.endsWith('.safetensors') ? (await readSafetensors(file)).tensors : stateDict(await readTorchFile(file), { stripPrefix: 'module.' });
  } catch (e) {
    if (e instanceof DifftalkError) throw e;
    throw new DifftalkError('file-missing', `S3FD weights ${file} do not exist or cannot be read`);
  }
  return { net: S3fd.fromTensors(tensors, file), file };
}
