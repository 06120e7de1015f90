#!/usr/bin/env python3
"""Oracle for tests/metrics/fvd.test.ts: an I3D (Inception-v1 inflated to 3D, the Kinetics-400 network of the TF-Hub
module deepmind/i3d-kinetics-400 that FVD uses) written here in PyTorch from the published architecture (Carreira &
Zisserman 2017, deepmind/kinetics-i3d), NOT from difftalk's TypeScript. Debian torch 1.13, CPU, float32.

    python3 i3d_reference.py save OUT.pt
        TorchScript archive (torch.jit.script + save) of the network with seeded weights (see `build`), in the layout of the
        StyleGAN-V file i3d_torchscript.pt as far as it is known: forward(x, rescale, resize, return_features),
        module tree Conv3d_1a_7x7 … Mixed_5c, logits; each unit has `conv3d` and `bn` (BatchNorm3d, eps 1e-3).
    python3 i3d_reference.py save-bad OUT.pt
        the same archive with Mixed_4c.b1b's conv built with 200 output channels instead of 224 (wrong shapes).
    python3 i3d_reference.py features CLIPS.npy OUT.npy
        CLIPS: uint8 [N, 16, H, W, 3]; each frame resized to 224×224 (F.interpolate bilinear, align_corners=False, on
        the [0, 255] values), scaled x/127.5 − 1, then I3D with return_features=True → float32 [N, 400].
    python3 i3d_reference.py fvd A.npy B.npy
        FVD of two feature sets [N, 400] as StyleGAN-V / LatentSync compute it (np.cov rowvar=False,
        scipy.linalg.sqrtm(Σa·Σb, disp=False), real part of the trace): prints the float.

Architecture (what is implemented below):
- Unit3D = Conv3d (no bias) with TensorFlow "SAME" padding (total pad per axis = max((ceil(n/s) − 1)·s + k − n, 0),
  the smaller half before) → BatchNorm3d(eps=1e-3, eval statistics) → ReLU.
- Conv3d_1a_7x7 (64, k 7, s 2), MaxPool3d_2a_3x3 (k 1×3×3, s 1×2×2, SAME), Conv3d_2b_1x1 (64), Conv3d_2c_3x3 (192),
  MaxPool3d_3a_3x3 (k 1×3×3, s 1×2×2), Mixed_3b, Mixed_3c, MaxPool3d_4a_3x3 (k 3, s 2), Mixed_4b..4f,
  MaxPool3d_5a_2x2 (k 2, s 2), Mixed_5b, Mixed_5c, AvgPool3d (k 2×7×7, s 1, VALID), logits = Conv3d 1×1×1 → 400 with
  bias (no BN, no ReLU), squeeze, mean over time (the "RGB/inception_i3d/Mean" tensor of the TF-Hub graph).
- Mixed block: b0 = 1×1×1; b1a 1×1×1 → b1b 3×3×3; b2a 1×1×1 → b2b 3×3×3; max pool 3×3×3 s 1 SAME → b3b 1×1×1;
  concatenated on channels in that order.
- SAME max pooling pads with −inf (padding never wins), as TensorFlow's does.
"""
import math
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from typing import List

torch.set_num_threads(1)

MIXED = [
    ('Mixed_3b', 192, [64, 96, 128, 16, 32, 32]),
    ('Mixed_3c', 256, [128, 128, 192, 32, 96, 64]),
    ('Mixed_4b', 480, [192, 96, 208, 16, 48, 64]),
    ('Mixed_4c', 512, [160, 112, 224, 24, 64, 64]),
    ('Mixed_4d', 512, [128, 128, 256, 24, 64, 64]),
    ('Mixed_4e', 512, [112, 144, 288, 32, 64, 64]),
    ('Mixed_4f', 528, [256, 160, 320, 32, 128, 128]),
    ('Mixed_5b', 832, [256, 160, 320, 32, 128, 128]),
    ('Mixed_5c', 832, [384, 192, 384, 48, 128, 128]),
]


def same_pads(size: List[int], kernel: List[int], stride: List[int]) -> List[int]:
    """F.pad order (W before/after, H before/after, T before/after) for TF SAME on [T, H, W]."""
    pads: List[int] = []
    for i in [2, 1, 0]:
        out = (size[i] + stride[i] - 1) // stride[i]
        total = max((out - 1) * stride[i] + kernel[i] - size[i], 0)
        pads.append(total // 2)
        pads.append(total - total // 2)
    return pads


class Unit3D(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, s: int = 1, bn_relu: bool = True):
        super().__init__()
        self.kernel = [k, k, k]
        self.stride = [s, s, s]
        self.bn_relu = bn_relu
        self.conv3d = nn.Conv3d(cin, cout, k, s, padding=0, bias=not bn_relu)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3) if bn_relu else nn.Identity()

    def forward(self, x):
        size = [x.shape[2], x.shape[3], x.shape[4]]
        x = self.conv3d(F.pad(x, same_pads(size, self.kernel, self.stride)))
        if self.bn_relu:
            x = F.relu(self.bn(x))
        return x


def max_pool_same(x, k: List[int], s: List[int]):
    size = [x.shape[2], x.shape[3], x.shape[4]]
    x = F.pad(x, same_pads(size, k, s), value=float('-inf'))
    return F.max_pool3d(x, k, s)


class Mixed(nn.Module):
    def __init__(self, cin: int, c: List[int]):
        super().__init__()
        self.b0 = Unit3D(cin, c[0], 1)
        self.b1a = Unit3D(cin, c[1], 1)
        self.b1b = Unit3D(c[1], c[2], 3)
        self.b2a = Unit3D(cin, c[3], 1)
        self.b2b = Unit3D(c[3], c[4], 3)
        self.b3b = Unit3D(cin, c[5], 1)

    def forward(self, x):
        b3 = self.b3b(max_pool_same(x, [3, 3, 3], [1, 1, 1]))
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), b3], 1)


class I3D(nn.Module):
    def __init__(self, bad: bool = False):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, 7, 2)
        self.Conv3d_2b_1x1 = Unit3D(64, 64, 1)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, 3)
        blocks = []
        for name, cin, c in MIXED:
            c = list(c)
            if bad and name == 'Mixed_4c':
                c[2] = 200
            blocks.append((name, Mixed(cin, c)))
        self.Mixed_3b = blocks[0][1]
        self.Mixed_3c = blocks[1][1]
        self.Mixed_4b = blocks[2][1]
        self.Mixed_4c = blocks[3][1]
        self.Mixed_4d = blocks[4][1]
        self.Mixed_4e = blocks[5][1]
        self.Mixed_4f = blocks[6][1]
        self.Mixed_5b = blocks[7][1]
        self.Mixed_5c = blocks[8][1]
        self.logits = Unit3D(1024, 400, 1, bn_relu=False)

    def forward(self, x, rescale: bool = False, resize: bool = False, return_features: bool = False):
        # x: [N, 3, T, H, W]; rescale: [0, 255] → [-1, 1]; resize: each frame to 224² (oracle's own choice)
        if rescale:
            x = x / 127.5 - 1
        if resize:
            n, c, t, h, w = x.shape
            x = x.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)
            x = F.interpolate(x, size=(224, 224), mode='bilinear', align_corners=False)
            x = x.reshape(n, t, c, 224, 224).permute(0, 2, 1, 3, 4)
        x = self.Conv3d_1a_7x7(x)
        x = max_pool_same(x, [1, 3, 3], [1, 2, 2])
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))
        x = max_pool_same(x, [1, 3, 3], [1, 2, 2])
        x = self.Mixed_3c(self.Mixed_3b(x))
        x = max_pool_same(x, [3, 3, 3], [2, 2, 2])
        x = self.Mixed_4f(self.Mixed_4e(self.Mixed_4d(self.Mixed_4c(self.Mixed_4b(x)))))
        x = max_pool_same(x, [2, 2, 2], [2, 2, 2])
        x = self.Mixed_5c(self.Mixed_5b(x))
        x = F.avg_pool3d(x, [2, 7, 7], [1, 1, 1])
        logits = self.logits(x).squeeze(4).squeeze(3).mean(2)
        if return_features:
            return logits
        return F.softmax(logits, 1)


def seeded(name, shape, gen):
    """Seeded weights that keep the features input-dependent: conv He-normal (std sqrt(2 / fan_in)), BN scale
    U(0.8, 1.2), shift U(-0.1, 0.1), mean U(-0.05, 0.05), var U(0.8, 1.2), logits bias U(-0.1, 0.1)."""
    if name.endswith('num_batches_tracked'):
        return torch.zeros(shape, dtype=torch.int64)
    if len(shape) == 5:
        fan_in = shape[1] * shape[2] * shape[3] * shape[4]
        return torch.randn(shape, generator=gen) * math.sqrt(2.0 / fan_in)
    u = torch.rand(shape, generator=gen)
    if name.endswith('bn.weight') or name.endswith('running_var'):
        return 0.8 + 0.4 * u
    if name.endswith('running_mean'):
        return 0.1 * u - 0.05
    return 0.2 * u - 0.1


def build(bad=False):
    """The network with seeded weights (torch.Generator seed 0, parameters in state_dict order). The det() formula
    is not used for the I3D: its rank-2 filters make a 60-layer network's features input-independent (1e-7)."""
    net = I3D(bad).eval()
    gen = torch.Generator().manual_seed(0)
    sd = {k: seeded(k, list(v.shape), gen) for k, v in net.state_dict().items()}
    net.load_state_dict(sd)
    return net


def features(clips):
    net = build()
    out = []
    with torch.no_grad():
        for clip in clips:  # [16, H, W, 3] uint8
            x = torch.from_numpy(clip.astype(np.float32)).permute(0, 3, 1, 2)  # T, C, H, W
            x = F.interpolate(x, size=(224, 224), mode='bilinear', align_corners=False)
            x = (x / 127.5 - 1).permute(1, 0, 2, 3).unsqueeze(0)  # 1, C, T, H, W
            out.append(net(x, rescale=False, resize=False, return_features=True).numpy()[0])
    return np.stack(out).astype(np.float32)


def fvd(a, b):
    import scipy.linalg
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    s, _ = scipy.linalg.sqrtm(np.dot(sa, sb), disp=False)
    return float(np.real(np.square(mu_a - mu_b).sum() + np.trace(sa + sb - s * 2)))


if __name__ == '__main__':
    cmd = sys.argv[1]
    if cmd in ('save', 'save-bad'):
        torch.jit.save(torch.jit.script(build(bad=cmd == 'save-bad')), sys.argv[2])
    elif cmd == 'features':
        np.save(sys.argv[3], features(np.load(sys.argv[2])))
    elif cmd == 'fvd':
        print(repr(fvd(np.load(sys.argv[2]), np.load(sys.argv[3]))))
    else:
        raise SystemExit('usage: i3d_reference.py save|save-bad|features|fvd …')
