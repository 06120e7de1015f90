/**
 * The browser side of the 'mediapipe' landmark engine, as source text served by the engine's local HTTP server
 * (tsc only emits .ts, so the page lives here as strings).
 *
 * Protocol (all on 127.0.0.1):
 * - GET  /                 this page; it imports /vision/vision_bundle.mjs and the wasm files from /wasm/
 * - GET  /model.task       the FaceLandmarker bundle (fetched once, kept as bytes so reset() can rebuild the task)
 * - GET  /batch/<id>       one batch of frames: `count` frames of width×height×channels uint8, row-major
 * - POST /result/<id>      the page's answer: Float32Array, RESULT_STRIDE floats per frame (layout below)
 *
 * Per-frame result layout (RESULT_STRIDE floats): [faces, score, roiSide, x0, y0, z0, x1, ... x477, y477, z477]
 * with points in pixels of the full frame (z × the width of the image the landmarker saw, i.e. same scale as x)
 * and NaN points when no face. `faces` is the number of distinct faces found (0, 1, 2 ...). `score` is the mean
 * per-landmark presence the Tasks graph reports, or NaN when this model does not output one.
 */

export const POINTS = 478;
/** Floats per frame in a result batch. */
export const RESULT_STRIDE = 3 + POINTS * 3;

export interface PageConfig {
  numFaces: number;
  minFaceDetectionConfidence: number;
  minFacePresenceConfidence: number;
  minTrackingConfidence: number;
  /** Zoom onto the face (crop a square ROI around it) when the face is smaller than this fraction of min(w, h). */
  zoomBelow: number;
  /** ROI side as a multiple of the face box side. */
  roiScale: number;
  /** Search overlapping tiles when the whole frame shows no face and the frame's shorter side is at least this. */
  tileMinSide: number;
}

export const PAGE_HTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>difftalk landmarks</title></head>
<body><script type="module" src="/page.mjs"></script></body></html>
`;

/** The page module: builds the FaceLandmarker (VIDEO mode, CPU delegate) and exposes window.__difftalk. */
export const PAGE_MODULE = String.raw`
import { FilesetResolver, FaceLandmarker } from '/vision/vision_bundle.mjs';

const POINTS = ${POINTS};
const STRIDE = ${RESULT_STRIDE};
const state = { ready: false, error: null };
window.__difftalk = state;

let cfg, fileset, model, video, image, ts = 0, roi = null;

async function make(mode) {
  return FaceLandmarker.createFromOptions(fileset, {
    baseOptions: { modelAssetBuffer: model, delegate: 'CPU' },
    runningMode: mode,
    numFaces: cfg.numFaces,
    minFaceDetectionConfidence: cfg.minFaceDetectionConfidence,
    minFacePresenceConfidence: cfg.minFacePresenceConfidence,
    minTrackingConfidence: cfg.minTrackingConfidence,
    outputFaceBlendshapes: false,
    outputFacialTransformationMatrixes: false,
  });
}

function toImageData(bytes, off, w, h, ch) {
  const n = w * h;
  const rgba = new Uint8ClampedArray(n * 4);
  if (ch === 4) rgba.set(bytes.subarray(off, off + n * 4));
  else {
    for (let i = 0, j = off, k = 0; i < n; i++, j += 3, k += 4) {
      rgba[k] = bytes[j]; rgba[k + 1] = bytes[j + 1]; rgba[k + 2] = bytes[j + 2]; rgba[k + 3] = 255;
    }
  }
  return new ImageData(rgba, w, h);
}

function crop(img, r) {
  const out = new Uint8ClampedArray(r.w * r.h * 4);
  const src = img.data;
  for (let y = 0; y < r.h; y++) {
    const s = ((r.y + y) * img.width + r.x) * 4;
    out.set(src.subarray(s, s + r.w * 4), y * r.w * 4);
  }
  return new ImageData(out, r.w, r.h);
}

// Landmarks of one Tasks result mapped into frame pixels: [{pts: Float32Array(478*3), score, box}].
function collect(res, region) {
  const faces = [];
  for (const lm of res.faceLandmarks) {
    const pts = new Float32Array(POINTS * 3);
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity, pres = 0, npres = 0;
    for (let i = 0; i < POINTS && i < lm.length; i++) {
      const p = lm[i];
      const x = region.x + p.x * region.w, y = region.y + p.y * region.h;
      pts[i * 3] = x; pts[i * 3 + 1] = y; pts[i * 3 + 2] = p.z * region.w;
      if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
      const q = p.presence ?? p.visibility;
      if (typeof q === 'number' && q > 0) { pres += q; npres++; }
    }
    faces.push({ pts, score: npres ? pres / npres : NaN, box: { x: x0, y: y0, w: x1 - x0, h: y1 - y0 } });
  }
  return faces;
}

function clampRegion(cx, cy, side, W, H) {
  side = Math.max(16, Math.min(Math.round(side), W, H));
  const x = Math.min(Math.max(0, Math.round(cx - side / 2)), W - side);
  const y = Math.min(Math.max(0, Math.round(cy - side / 2)), H - side);
  return { x, y, w: side, h: side };
}

// Distinct faces: boxes whose centres are closer than half the smaller box side are one face (overlapping tiles).
function dedupe(faces) {
  const out = [];
  for (const f of faces) {
    const cx = f.box.x + f.box.w / 2, cy = f.box.y + f.box.h / 2;
    const same = out.find((g) => {
      const gx = g.box.x + g.box.w / 2, gy = g.box.y + g.box.h / 2;
      const s = Math.min(Math.max(f.box.w, f.box.h), Math.max(g.box.w, g.box.h));
      return Math.hypot(cx - gx, cy - gy) < s / 2;
    });
    if (!same) out.push(f);
    else if (Math.max(f.box.w, f.box.h) > Math.max(same.box.w, same.box.h)) out[out.indexOf(same)] = f;
  }
  return out;
}

// Overlapping square tiles (side = half the shorter side, stride = half a tile) for faces too small for the detector.
function tileSearch(full) {
  const W = full.width, H = full.height;
  const side = Math.floor(Math.min(W, H) / 2), step = Math.floor(side / 2);
  const found = [];
  for (let y = 0; y + side <= H; y += step) {
    for (let x = 0; x + side <= W; x += step) {
      const r = { x, y, w: side, h: side };
      found.push(...collect(image.detect(crop(full, r)), r));
    }
  }
  return dedupe(found);
}

function detectFrame(full) {
  const W = full.width, H = full.height;
  ts += 40;
  let faces;
  if (roi) {
    faces = collect(video.detectForVideo(crop(full, roi), ts), roi);
    if (faces.length === 0) { roi = null; faces = collect(image.detect(full), { x: 0, y: 0, w: W, h: H }); }
  } else {
    faces = collect(video.detectForVideo(full, ts), { x: 0, y: 0, w: W, h: H });
  }
  if (faces.length === 0 && Math.min(W, H) >= cfg.tileMinSide) faces = tileSearch(full);
  faces = dedupe(faces);
  if (faces.length === 1) {
    const b = faces[0].box, size = Math.max(b.w, b.h), cx = b.x + b.w / 2, cy = b.y + b.h / 2;
    if (size < cfg.zoomBelow * Math.min(W, H)) {
      const want = size * cfg.roiScale;
      const moved = roi && (Math.hypot(cx - (roi.x + roi.w / 2), cy - (roi.y + roi.h / 2)) > 0.15 * roi.w || Math.abs(want - roi.w) > 0.2 * roi.w);
      if (!roi || moved) roi = clampRegion(cx, cy, want, W, H);
    } else roi = null;
  }
  return faces;
}

state.init = async () => {
  cfg = await (await fetch('/config.json')).json();
  model = new Uint8Array(await (await fetch('/model.task')).arrayBuffer());
  fileset = await FilesetResolver.forVisionTasks('/wasm');
  video = await make('VIDEO');
  image = await make('IMAGE');
  state.ready = true;
};

// Forget the tracked faces: a frame without a face empties the VIDEO graph's tracking state, so the next frame
// starts from the detector, as in a fresh task (measured: identical points on a whole clip). Rebuilding the task
// instead costs 170-340 ms here; this costs a few.
const BLANK = new ImageData(64, 64);
state.reset = async () => {
  roi = null;
  ts += 40;
  video.detectForVideo(BLANK, ts);
};

state.run = async (id, w, h, ch, count) => {
  const bytes = new Uint8Array(await (await fetch('/batch/' + id)).arrayBuffer());
  const out = new Float32Array(count * STRIDE);
  const frameBytes = w * h * ch;
  for (let f = 0; f < count; f++) {
    const faces = detectFrame(toImageData(bytes, f * frameBytes, w, h, ch));
    const o = f * STRIDE;
    out[o] = faces.length;
    out[o + 1] = faces.length ? faces[0].score : 0;
    out[o + 2] = roi ? roi.w : 0;
    if (faces.length) out.set(faces[0].pts, o + 3);
    else out.fill(NaN, o + 3, o + STRIDE);
  }
  const r = await fetch('/result/' + id, { method: 'POST', body: out.buffer });
  if (!r.ok) throw new Error('result upload failed: ' + r.status);
  return count;
};
`;
