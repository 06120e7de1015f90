"""PyTorch CPU side of bench/onnx.ts: frames/s of the eval networks at the sizes difftalk runs them, fp32, intra-op
threads = all cores (torch.set_num_threads(os.cpu_count())), no grad. Weights are random (torchvision init): same shapes and FLOPs.

Usage: python3 bench/torch/nets_cpu.py SIZE BATCH SECONDS NETS [SYNC_WINDOWS]
       (NETS: comma-separated, of lpips-alex,lpips-vgg,fid,syncnet,i3d)
Output: one JSON object {"torch": version, "threads": n, <net>: fps …} (i3d: clips/s)
- lpips-<net>: LPIPS v0.1 as the `lpips` package computes it (scaling layer, torchvision <net>.features taps,
  channel unit-normalisation, squared difference, 1×1 linear heads, spatial mean), a frame = one pred/target pair;
- fid: pytorch-fid's input path (bilinear resize to 299², align_corners=False, 2x − 1) and torchvision Inception-v3
  to pool3 (the FID network has the same layers and FLOPs);
- syncnet: SyncNetModel.S both branches (metrics_bench.py SyncNetTwin) on SYNC_WINDOWS windows of 5 × 224² frames and
  13×20 MFCC per call (default 19), a frame = one window;
- i3d: the FVD I3D (tests/reference/i3d_reference.py's PyTorch I3D, torch-initialised weights) on one clip of 16
  frames of SIZE², resized to 224² (bilinear, align_corners=False), x/127.5 − 1, to the 400-d logits; clips/s.
"""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

SIZE, BATCH, SECONDS = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
NETS = sys.argv[4].split(',')
torch.manual_seed(0)
# Debian's torch 1.13 starts with 1 OpenMP thread here (omp_get_max_threads() = 1); give it every core, as onnxruntime.
torch.set_num_threads(os.cpu_count())


def rate(frames, fn):
    with torch.no_grad():
        fn()
        runs = 0
        t0 = time.perf_counter()
        while True:
            fn()
            runs += 1
            if time.perf_counter() - t0 >= SECONDS:
                break
        return runs * frames / (time.perf_counter() - t0)


TAPS = {'alex': [2, 5, 8, 10, 12], 'vgg': [4, 9, 16, 23, 30]}
CHANNELS = {'alex': [64, 192, 384, 256, 256], 'vgg': [64, 128, 256, 512, 512]}
SHIFT = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
SCALE = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)


def lpips_fn(net):
    import torchvision  # only where needed: the syncnet row runs without it
    feats = (torchvision.models.alexnet() if net == 'alex' else torchvision.models.vgg16()).features.eval()
    lins = [torch.nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS[net]]
    taps = TAPS[net]

    def features(x):
        out, h, j = [], x, 0
        for i, layer in enumerate(feats):
            if i >= taps[-1]:
                break
            h = layer(h)
            if i + 1 == taps[j]:
                out.append(h)
                j += 1
        return out

    def run(x, y):
        fx, fy = features((x - SHIFT) / SCALE), features((y - SHIFT) / SCALE)
        total = 0
        for k, (a, b) in enumerate(zip(fx, fy)):
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + lins[k]((a - b) ** 2).mean([2, 3])
        return total

    return run


x = torch.rand(BATCH, 3, SIZE, SIZE) * 2 - 1
y = torch.rand(BATCH, 3, SIZE, SIZE) * 2 - 1
out = {'torch': torch.__version__, 'threads': torch.get_num_threads()}
for net in ['alex', 'vgg']:
    if f'lpips-{net}' in NETS:
        fn = lpips_fn(net)
        out[f'lpips-{net}'] = rate(BATCH, lambda: fn(x, y))

if 'syncnet' in NETS:
    from metrics_bench import SyncNetTwin  # noqa: E402 (same folder)
    windows = int(sys.argv[5]) if len(sys.argv) > 5 else 19
    sync = SyncNetTwin().eval()
    video = torch.rand(windows, 3, 5, 224, 224) * 255
    mfcc = torch.randn(windows, 1, 13, 20)
    out['syncnet'] = rate(windows, lambda: sync(video, mfcc))
if 'i3d' in NETS:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'tests', 'reference'))
    import i3d_reference
    torch.set_num_threads(os.cpu_count())  # the oracle module sets one thread on import
    i3d = i3d_reference.I3D().eval()
    clip = torch.rand(16, 3, SIZE, SIZE) * 255

    def i3d_clip():
        h = F.interpolate(clip, size=(224, 224), mode='bilinear', align_corners=False) / 127.5 - 1
        return i3d(h.permute(1, 0, 2, 3).unsqueeze(0), rescale=False, resize=False, return_features=True)

    out['i3d'] = rate(1, i3d_clip)

if 'fid' not in NETS:
    print(json.dumps(out))
    sys.exit(0)
import torchvision  # noqa: E402

inception = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).eval()
inception.fc = torch.nn.Identity()
inception.dropout = torch.nn.Identity()
img = torch.rand(BATCH, 3, SIZE, SIZE)


def fid():
    h = F.interpolate(img, size=(299, 299), mode='bilinear', align_corners=False)
    return inception(2 * h - 1)


out['fid'] = rate(BATCH, fid)
print(json.dumps(out))
