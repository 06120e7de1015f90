/**
 * MediaPipe's refinement index maps for the attention face-mesh model (478 points): where the lips, eye and iris
 * heads' points go in the 478 layout. Data copied from MediaPipe's graph
 * `mediapipe/modules/face_landmark/tensors_to_face_landmarks_with_attention.pbtxt` (google-ai-edge/mediapipe,
 * Apache-2.0). Lips and eyes replace x, y only; iris z is the mean z of the 16 eye-contour points.
 */

/** 80 lip points (lips head output order). */
export const LIPS_REFINEMENT: readonly number[] = [
  // lower outer
  61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291,
  // upper outer (excluding corners)
  185, 40, 39, 37, 0, 267, 269, 270, 409,
  // lower inner
  78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308,
  // upper inner (excluding corners)
  191, 80, 81, 82, 13, 312, 311, 310, 415,
  // lower semi-outer
  76, 77, 90, 180, 85, 16, 315, 404, 320, 307, 306,
  // upper semi-outer (excluding corners)
  184, 74, 73, 72, 11, 302, 303, 304, 408,
  // lower semi-inner
  62, 96, 89, 179, 86, 15, 316, 403, 319, 325, 292,
  // upper semi-inner (excluding corners)
  183, 42, 41, 38, 12, 268, 271, 272, 407,
];

/** 71 points of the "left eye" head (MediaPipe's naming; mesh indices around vertex 33). */
export const LEFT_EYE_REFINEMENT: readonly number[] = [
  33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173, 130, 25, 110, 24, 23, 22, 26, 112, 243, 247, 30, 29, 27, 28, 56, 190, 226, 31,
  228, 229, 230, 231, 232, 233, 244, 113, 225, 224, 223, 222, 221, 189, 35, 124, 46, 53, 52, 65, 143, 111, 117, 118, 119, 120, 121, 128, 245, 156, 70, 63, 105,
  66, 107, 55, 193,
];

/** 71 points of the "right eye" head (mesh indices around vertex 263). */
export const RIGHT_EYE_REFINEMENT: readonly number[] = [
  263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398, 359, 255, 339, 254, 253, 252, 256, 341, 463, 467, 260, 259, 257, 258, 286,
  414, 446, 261, 448, 449, 450, 451, 452, 453, 464, 342, 445, 444, 443, 442, 441, 413, 265, 353, 276, 283, 282, 295, 372, 340, 346, 347, 348, 349, 350, 357,
  465, 383, 300, 293, 334, 296, 336, 285, 417,
];

/** Iris heads: 5 points each (centre, right, top, left, bottom edge). */
export const LEFT_IRIS_REFINEMENT: readonly number[] = [468, 469, 470, 471, 472];
export const RIGHT_IRIS_REFINEMENT: readonly number[] = [473, 474, 475, 476, 477];

/** Eye contours whose mean z becomes the iris z (first 16 entries of each eye map). */
export const LEFT_EYE_CONTOUR: readonly number[] = LEFT_EYE_REFINEMENT.slice(0, 16);
export const RIGHT_EYE_CONTOUR: readonly number[] = RIGHT_EYE_REFINEMENT.slice(0, 16);
