#!/usr/bin/env python3
"""An independent face box for crop tests: scikit-image's LBP frontal-face cascade (OpenCV's lbpcascade_frontalface
model, shipped with scikit-image) on frames decoded by ffmpeg, written from the scikit-image docs, no MediaPipe.

    python3 tests/reference/face_box_reference.py frame.png [frame.png ...]
    # prints [{"x":..,"y":..,"w":..,"h":..} | null, ...]  (the largest detection per frame, in that frame's pixels)

The frame is searched at half resolution when its longer side exceeds 1000 px (boxes are scaled back).
"""
import json
import sys

import numpy as np
from skimage import data, io
from skimage.color import rgb2gray
from skimage.feature import Cascade
from skimage.transform import rescale


def largest_face(path, detector):
    img = io.imread(path)
    gray = rgb2gray(img[..., :3])
    scale = 0.5 if max(gray.shape) > 1000 else 1.0
    if scale != 1.0:
        gray = rescale(gray, scale, anti_aliasing=True)
    found = detector.detect_multi_scale(img=gray, scale_factor=1.1, step_ratio=1, min_size=(48, 48), max_size=(800, 800), min_neighbour_number=4)
    if not found:
        return None
    f = max(found, key=lambda d: d['width'] * d['height'])
    return {'x': f['c'] / scale, 'y': f['r'] / scale, 'w': f['width'] / scale, 'h': f['height'] / scale}


if __name__ == '__main__':
    detector = Cascade(data.lbp_frontal_face_cascade_filename())
    print(json.dumps([largest_face(p, detector) for p in sys.argv[1:]]))
