#!/usr/bin/env python3
"""Reference values for tests/eval/fid.test.ts (hand-run; output committed as fid_reference.json).

    python3 tests/reference/fid_reference.py        # needs numpy only; reads ../shared/data/media/astronaut.png

pytorch-fid resizes its [0,1] input with `F.interpolate(x, size=(299, 299), mode='bilinear', align_corners=False)`.
This is an independent numpy implementation of PyTorch's documented align_corners=False rule (written from the rule,
not from the TypeScript code): for output index d along an axis of input length n and output length m,
    src = (d + 0.5) * (n / m) - 0.5, clamped below at 0;  i0 = floor(src);  i1 = min(i0 + 1, n - 1);  w = src - i0
    out = (1 - w) * in[i0] + w * in[i1]
applied separably (rows, then columns; bilinear is separable so the order does not matter), with no antialiasing
(F.interpolate's default antialias=False, also when downsampling). Input = uint8 / 255 (torchvision ToTensor).
The PNG is decoded here with zlib (8-bit RGB, non-interlaced, PNG filters 0-4) so no imaging library is involved.
"""
import json
import os
import struct
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get('DIFFTALK_SHARED', os.path.join(HERE, '..', '..', '..', 'shared'))


def read_png_rgb(path):
    data = open(path, 'rb').read()
    assert data[:8] == b'\x89PNG\r\n\x1a\n'
    pos, idat, w = 8, b'', None
    while pos < len(data):
        (length,) = struct.unpack('>I', data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b'IHDR':
            w, h, depth, ctype, _, _, interlace = struct.unpack('>IIBBBBB', body)
            assert depth == 8 and ctype == 2 and interlace == 0, 'expects 8-bit RGB, non-interlaced'
        elif kind == b'IDAT':
            idat += body
    raw = zlib.decompress(idat)
    bpp, stride = 3, w * 3
    out = np.zeros((h, stride), np.uint8)
    prev = np.zeros(stride, np.int32)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = np.frombuffer(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)], np.uint8).astype(np.int32)
        cur = np.zeros(stride, np.int32)
        for x in range(stride):
            a = cur[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 0:
                p = 0
            elif f == 1:
                p = a
            elif f == 2:
                p = b
            elif f == 3:
                p = (a + b) // 2
            else:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            cur[x] = (line[x] + p) & 255
        out[y] = cur
        prev = cur
    return out.reshape(h, w, 3)


def axis_weights(n, m):
    d = np.arange(m, dtype=np.float64)
    src = np.maximum((d + 0.5) * (n / m) - 0.5, 0.0)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    return i0, i1, src - i0


def resize_bilinear(img, m=299):
    """img: H x W x C float64 -> m x m x C, PyTorch align_corners=False bilinear."""
    h, w, _ = img.shape
    r0, r1, rw = axis_weights(h, m)
    rows = (1 - rw)[:, None, None] * img[r0] + rw[:, None, None] * img[r1]
    c0, c1, cw = axis_weights(w, m)
    return (1 - cw)[None, :, None] * rows[:, c0] + cw[None, :, None] * rows[:, c1]


# (y, x, c) probes: corners, edges, interior.
PROBES = [(0, 0, 0), (0, 298, 1), (298, 0, 2), (298, 298, 0), (0, 150, 1), (150, 0, 2), (150, 150, 0), (77, 211, 1),
          (211, 77, 2), (1, 1, 0), (297, 297, 1), (123, 45, 2)]


def case(img_u8):
    out = resize_bilinear(img_u8.astype(np.float64) / 255.0)
    return {
        'in_shape': list(img_u8.shape),
        'sum': float(out.sum()),
        'sum_sq': float((out * out).sum()),
        'probes': [[y, x, c, float(out[y, x, c])] for (y, x, c) in PROBES],
    }


def main():
    astro = read_png_rgb(os.path.join(SHARED, 'data', 'media', 'astronaut.png'))
    result = {
        'generated_by': f'tests/reference/fid_reference.py (numpy {np.__version__})',
        'rule': 'torch.nn.functional.interpolate(size=(299,299), mode=bilinear, align_corners=False, antialias=False) on uint8/255',
        'astronaut_sum_u8': int(astro.astype(np.int64).sum()),
        # downsampling 512 -> 299 (no antialias)
        'down_512': case(astro),
        # upsampling a 96x96 crop (rows 100:196, cols 200:296) -> 299, the Wav2Lip face-crop size
        'up_96': case(astro[100:196, 200:296]),
        # non-square 120x200 crop (rows 50:170, cols 150:350)
        'rect_120x200': case(astro[50:170, 150:350]),
    }
    with open(os.path.join(HERE, 'fid_reference.json'), 'w') as f:
        json.dump(result, f, indent=1)
        f.write('\n')


if __name__ == '__main__':
    main()
