"""Reference side of the metric bench (bench/metrics.ts): each eval metric as the Python reference computes it, on
this machine's CPU, at the sizes difftalk's bench uses, one JSON object on stdout.

Usage: python3 bench/torch/metrics_bench.py SPEC.json
SPEC: {"budget_s": seconds per item, "quick": bool (one timed run per item, no warm-up), "frames": PSNR/SSIM batch,
       "lpips_batch", "fid_batch", "fvd_clips", "sync_windows", "lmd_frames", "items": names to run (default: all)}
Output: {"torch": version, "threads": n, "results": {item: {"fps": frames (or windows) per second, "impl": what ran}}}

Items (frames of 256×256 RGB uint8 unless stated):
- psnr_skimage: skimage.metrics.peak_signal_noise_ratio(gt, pred, data_range=255), one call per frame;
  psnr_numpy: the same formula vectorised over the batch in numpy (float32 differences, float64 mean).
- ssim_gaussian: skimage structural_similarity(channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False) per frame — the metric's default variant; ssim_skimage: skimage's defaults (7×7 box).
- lpips_alex / lpips_vgg: torchvision AlexNet / VGG16 `.features` up to the last tap, LPIPS v0.1 scaling layer,
  unit-normalise, squared difference, 1×1 heads (no bias), spatial mean, summed (../shared/docs/eval-metrics.md §3;
  the `lpips` package is not installed, so this is its computation with random weights: same shapes and FLOPs).
- fid: pytorch-fid's resize to 299² (bilinear) and torchvision Inception-v3 to pool3 (2048-d), random weights.
- fvd: the FVD I3D (the PyTorch I3D of tests/reference/i3d_reference.py, torch-initialised weights) on clips of 16
  frames of 256² resized to 224² (F.interpolate bilinear), x/127.5 − 1, return_features=True; clips per second.
- lse: SyncNet v2 (syncnet_python SyncNetModel: Conv3d lip branch on 5×224×224 BGR crops, Conv2d audio branch on
  13×20 MFCC, both to 1024-d) and calc_pdist over ±15 shifts; windows per second.
- lmd: numpy landmark distance on mouth points (48–67) after mean-centring, mean over points, per frame.
torch.set_num_threads(all cores); float32; eval mode; no grad.
"""
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def timeit(fn, frames, budget, quick):
    if not quick:
        fn()
    runs = 0
    t0 = time.perf_counter()
    while True:
        fn()
        runs += 1
        if quick or time.perf_counter() - t0 >= budget:
            break
    return runs * frames / (time.perf_counter() - t0)


def frames_u8(n, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, 256, 256, 3), dtype=np.uint8)


class LpipsTwin(nn.Module):
    TAPS = {'alex': [1, 4, 7, 9, 11], 'vgg': [3, 8, 15, 22, 29]}
    CHANS = {'alex': [64, 192, 384, 256, 256], 'vgg': [64, 128, 256, 512, 512]}

    def __init__(self, net):
        super().__init__()
        import torchvision
        feats = (torchvision.models.alexnet if net == 'alex' else torchvision.models.vgg16)(weights=None).features
        self.taps = self.TAPS[net]
        self.features = feats[:self.taps[-1] + 1].eval()
        self.lins = [torch.rand(1, c, 1, 1) for c in self.CHANS[net]]
        self.register_buffer('shift', torch.tensor([-.030, -.088, -.188]).view(1, 3, 1, 1))
        self.register_buffer('scale', torch.tensor([.458, .448, .450]).view(1, 3, 1, 1))

    def forward(self, x0, x1):
        n = x0.shape[0]
        h = (torch.cat([x0, x1], 0) - self.shift) / self.scale
        total, k = 0, 0
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.taps:
                f = h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                d = (f[:n] - f[n:]).pow(2)
                total = total + F.conv2d(d, self.lins[k]).mean((2, 3))
                k += 1
        return total


def cbr(conv, bn):
    return [conv, bn, nn.ReLU()]


class SyncNetTwin(nn.Module):
    """syncnet_python's SyncNetModel.S (layer for layer, as src/models/syncnet.ts lists it)."""

    def __init__(self):
        super().__init__()
        self.aud = nn.Sequential(
            *cbr(nn.Conv2d(1, 64, 3, 1, 1), nn.BatchNorm2d(64)), nn.MaxPool2d(1, 1),
            *cbr(nn.Conv2d(64, 192, 3, 1, 1), nn.BatchNorm2d(192)), nn.MaxPool2d(3, (1, 2)),
            *cbr(nn.Conv2d(192, 384, 3, 1, 1), nn.BatchNorm2d(384)),
            *cbr(nn.Conv2d(384, 256, 3, 1, 1), nn.BatchNorm2d(256)),
            *cbr(nn.Conv2d(256, 256, 3, 1, 1), nn.BatchNorm2d(256)), nn.MaxPool2d(3, 2),
            *cbr(nn.Conv2d(256, 512, (5, 4), 1, 0), nn.BatchNorm2d(512)))
        self.fcaud = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 1024))
        self.lip = nn.Sequential(
            *cbr(nn.Conv3d(3, 96, (5, 7, 7), (1, 2, 2), 0), nn.BatchNorm3d(96)), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *cbr(nn.Conv3d(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), nn.BatchNorm3d(256)), nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            *cbr(nn.Conv3d(256, 256, (1, 3, 3), 1, (0, 1, 1)), nn.BatchNorm3d(256)),
            *cbr(nn.Conv3d(256, 256, (1, 3, 3), 1, (0, 1, 1)), nn.BatchNorm3d(256)),
            *cbr(nn.Conv3d(256, 256, (1, 3, 3), 1, (0, 1, 1)), nn.BatchNorm3d(256)), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *cbr(nn.Conv3d(256, 512, (1, 6, 6), 1, 0), nn.BatchNorm3d(512)))
        self.fclip = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 1024))

    def forward(self, video, mfcc):
        v = self.fclip(self.lip(video).flatten(1))
        a = self.fcaud(self.aud(mfcc).flatten(1))
        return v, a


def calc_pdist(v, a, vshift=15):
    pad = F.pad(a, (0, 0, vshift, vshift))
    return [F.pairwise_distance(v[[i], :].repeat(2 * vshift + 1, 1), pad[i:i + 2 * vshift + 1, :]) for i in range(len(v))]


def main():
    s = json.load(open(sys.argv[1]))
    torch.set_num_threads(os.cpu_count() or 1)
    budget, quick = s['budget_s'], s.get('quick', False)
    wanted = set(s.get('items') or ITEMS)
    out = {'torch': torch.__version__, 'threads': torch.get_num_threads(), 'results': {}}
    for name in ITEMS:
        if name not in wanted:
            continue
        try:
            impl, frames, fn = ITEMS[name](s)
            out['results'][name] = {'fps': timeit(fn, frames, budget, quick), 'impl': impl}
        except Exception as e:  # one item failing leaves the others' numbers
            out['results'][name] = {'error': str(e).split('\n')[0][:300]}
    json.dump(out, sys.stdout)


def _frames(s):
    n = s['frames']
    return n, frames_u8(n, 0), frames_u8(n, 1)


def psnr_skimage(s):
    from skimage.metrics import peak_signal_noise_ratio
    n, a, b = _frames(s)
    return 'skimage peak_signal_noise_ratio, per frame', n, lambda: [peak_signal_noise_ratio(b[i], a[i], data_range=255) for i in range(n)]


def psnr_numpy(s):
    n, a, b = _frames(s)
    return 'numpy, vectorised over the batch', n, lambda: 10 * np.log10(255.0 ** 2 / np.square(a.astype(np.float32) - b).mean(axis=(1, 2, 3), dtype=np.float64))


def ssim_gaussian(s):
    from skimage.metrics import structural_similarity
    n, a, b = _frames(s)
    return ('skimage structural_similarity (gaussian 11/1.5, population cov.)', n,
            lambda: [structural_similarity(b[i], a[i], channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
                     for i in range(n)])


def ssim_skimage(s):
    from skimage.metrics import structural_similarity
    n, a, b = _frames(s)
    return 'skimage structural_similarity (defaults: 7×7 box)', n, lambda: [structural_similarity(b[i], a[i], channel_axis=-1, data_range=255) for i in range(n)]


def lpips(net):
    def build(s):
        nb = s['lpips_batch']
        x0 = torch.rand(nb, 3, 256, 256) * 2 - 1
        x1 = torch.rand(nb, 3, 256, 256) * 2 - 1
        m = LpipsTwin(net)

        def run():
            with torch.no_grad():
                return m(x0, x1)
        return f'PyTorch {torch.__version__} CPU, torchvision {net} features + LPIPS heads', nb, run
    return build


def fid(s):
    import torchvision
    inc = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).eval()
    inc.fc = nn.Identity()
    fb = s['fid_batch']
    xi = torch.rand(fb, 3, 256, 256)

    def run():
        with torch.no_grad():
            return inc(F.interpolate(xi, size=(299, 299), mode='bilinear', align_corners=False) * 2 - 1)
    return f'PyTorch {torch.__version__} CPU, torchvision Inception-v3 to pool3, 256² resized to 299²', fb, run


def i3d_reference():
    """The oracle's PyTorch I3D (tests/reference/i3d_reference.py); its import sets one thread, so all cores again."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'tests', 'reference'))
    import i3d_reference
    torch.set_num_threads(os.cpu_count() or 1)
    return i3d_reference.I3D().eval()


def fvd(s):
    net = i3d_reference()
    nc = s['fvd_clips']
    clips = torch.from_numpy(np.random.default_rng(4).integers(0, 256, (nc * 16, 3, 256, 256)).astype(np.float32))

    def run():
        with torch.no_grad():
            x = F.interpolate(clips, size=(224, 224), mode='bilinear', align_corners=False) / 127.5 - 1
            x = x.reshape(nc, 16, 3, 224, 224).permute(0, 2, 1, 3, 4)
            return net(x, rescale=False, resize=False, return_features=True)
    return f'PyTorch {torch.__version__} CPU, I3D (16 frames, 224²) to the 400-d logits', nc, run


def lse(s):
    sync = SyncNetTwin().eval()
    w = s['sync_windows']
    video = torch.rand(w, 3, 5, 224, 224) * 255
    mfcc = torch.randn(w, 1, 13, 20)

    def run():
        with torch.no_grad():
            v, au = sync(video, mfcc)
            d = torch.stack(calc_pdist(v, au)).mean(0)
            return d.min(), d.median()
    return f'PyTorch {torch.__version__} CPU, SyncNet v2 both branches + calc_pdist', w, run


def lmd(s):
    nl = s['lmd_frames']
    rng = np.random.default_rng(2)
    p68, g68 = rng.random((nl, 68, 2)) * 256, rng.random((nl, 68, 2)) * 256

    def run():
        p, g = p68[:, 48:68], g68[:, 48:68]
        d = (p - p.mean(1, keepdims=True)) - (g - g.mean(1, keepdims=True))
        return np.sqrt((d ** 2).sum(-1)).mean(-1)
    return 'numpy, mouth points, mean-centred', nl, run


ITEMS = {'psnr_skimage': psnr_skimage, 'psnr_numpy': psnr_numpy, 'ssim_gaussian': ssim_gaussian, 'ssim_skimage': ssim_skimage,
         'lpips_alex': lpips('alex'), 'lpips_vgg': lpips('vgg'), 'fid': fid, 'fvd': fvd, 'lse': lse, 'lmd': lmd}


if __name__ == '__main__':
    main()
