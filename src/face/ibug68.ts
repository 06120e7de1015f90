/**
 * The fixed map from MediaPipe's 478-point face mesh to the 68-point iBUG (300-W / dlib / face-alignment) layout that
 * DiffTalk conditions on. One mesh vertex per iBUG point (no averaging), chosen on MediaPipe's canonical face model:
 * "right"/"left" are the person's, so the person's right side is on the image's left, as in iBUG.
 *
 * | iBUG    | region                           | mesh vertices |
 * |---------|----------------------------------|---------------|
 * | 0–16    | jaw, person's right ear → chin (8) → left ear | 127 234 93 58 172 136 150 176 **152** 400 379 365 397 288 323 454 356 |
 * | 17–21   | right brow, outer → inner        | 70 63 105 66 107 |
 * | 22–26   | left brow, inner → outer         | 336 296 334 293 300 |
 * | 27–30   | nose bridge, top → tip (30)      | 168 197 5 4 |
 * | 31–35   | nose base, right → left (33 = subnasale) | 75 97 2 326 305 |
 * | 36–41   | right eye: outer corner, upper ×2, inner corner, lower ×2 | 33 160 158 133 153 144 |
 * | 42–47   | left eye: inner corner, upper ×2, outer corner, lower ×2  | 362 385 387 263 373 380 |
 * | 48–59   | outer lip from right corner, upper then lower | 61 40 37 0 267 270 291 321 314 17 84 91 |
 * | 60–67   | inner lip from right corner      | 78 81 13 311 308 402 14 178 |
 *
 * The jaw uses the mesh's face-oval ring at (roughly) even spacing; the oval is the visible contour for frontal
 * faces. Mirror pairs of the mesh keep the map left/right symmetric (e.g. 127↔356, 58↔288, 33↔263, 61↔291).
 */
/** Points of the iBUG-68 layout and floats per face (x, y interleaved). */
export const IBUG68_POINTS = 68;
export const LM68_VALUES = IBUG68_POINTS * 2;

export const IBUG68_FROM_MESH: readonly number[] = Object.freeze([
  // jaw 0–16
  127, 234, 93, 58, 172, 136, 150, 176, 152, 400, 379, 365, 397, 288, 323, 454, 356,
  // brows 17–26
  70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
  // nose 27–35
  168, 197, 5, 4, 75, 97, 2, 326, 305,
  // eyes 36–47
  33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
  // outer lips 48–59
  61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91,
  // inner lips 60–67
  78, 81, 13, 311, 308, 402, 14, 178,
]);

/** iBUG-68 regions (for drawing and for DiffTalk's landmark condition). */
export const IBUG68_REGIONS = {
  jaw: [0, 17],
  rightBrow: [17, 22],
  leftBrow: [22, 27],
  noseBridge: [27, 31],
  noseBase: [31, 36],
  rightEye: [36, 42],
  leftEye: [42, 48],
  outerLip: [48, 60],
  innerLip: [60, 68],
} as const satisfies Record<string, readonly [number, number]>;

/**
 * The 68 iBUG points (x, y interleaved, 136 floats) of one face, from its 478×3 (or 468×3) mesh points.
 * NaN in → NaN out (frames without a face stay NaN).
 */
export function toIbug68(points: Float32Array): Float32Array {
  const out = new Float32Array(LM68_VALUES);
  if (points.length < 468 * 3) {
    out.fill(Number.NaN);
    return out;
  }
  for (let k = 0; k < 68; k++) {
    const i = IBUG68_FROM_MESH[k]!;
    out[k * 2] = points[i * 3]!;
    out[k * 2 + 1] = points[i * 3 + 1]!;
  }
  return out;
}
