#!/usr/bin/env python3
"""Per-frame PSNR and SSIM as scikit-image computes them, for the frame-metric tests.

    python3 tests/reference/frame_metrics_reference.py pred.raw target.raw COUNT HEIGHT WIDTH
    # prints {"psnr": [...], "ssim_skimage": [...], "ssim_gaussian": [...], "skimage": version}

Each .raw file holds COUNT interleaved RGB uint8 frames (C order, COUNT×HEIGHT×WIDTH×3). Per frame:
- psnr: skimage.metrics.peak_signal_noise_ratio(target, pred, data_range=255) (inf when identical);
- ssim_skimage: structural_similarity(..., channel_axis=-1, data_range=255) — skimage's defaults (7×7 box, sample
  covariance);
- ssim_gaussian: the same with gaussian_weights=True, sigma=1.5, use_sample_covariance=False (Wang et al.; 11×11).
Written from skimage's documented API (../shared/docs/eval-metrics.md §1–2), not from the TypeScript code.
"""
import json
import sys

import numpy as np
import skimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def main():
    pred_path, target_path, count, height, width = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
    shape = (count, height, width, 3)
    pred = np.fromfile(pred_path, dtype=np.uint8).reshape(shape)
    target = np.fromfile(target_path, dtype=np.uint8).reshape(shape)
    out = {'psnr': [], 'ssim_skimage': [], 'ssim_gaussian': [], 'skimage': skimage.__version__}
    for p, t in zip(pred, target):
        if np.array_equal(p, t):
            out['psnr'].append(None)  # inf: not representable in JSON
        else:
            out['psnr'].append(float(peak_signal_noise_ratio(t, p, data_range=255)))
        out['ssim_skimage'].append(float(structural_similarity(t, p, channel_axis=-1, data_range=255)))
        out['ssim_gaussian'].append(
            float(structural_similarity(t, p, channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)))
    json.dump(out, sys.stdout)


if __name__ == '__main__':
    main()
