"""PyTorch side of the GPU bench (bench/gpu.ts): the same ops and networks at the same sizes, in fp32 (TF32 off),
TF32 and bf16 autocast, one JSON object on stdout.

Usage: python3 bench/torch/bench.py SPEC.json   (SPEC written by bench/gpu.ts: sizes, modes, time budget per item)
Output: {"torch": ver, "device": name, "results": {mode: {item: {"ms": per-iteration ms, "iters": n}}}}
Items: conv_fwd, conv_dgrad, conv_wgrad, conv_deep_fwd (+ bias), conv_deep_dgrad, gn_silu, attention (q·kᵀ, softmax, ·v as the project computes it),
attention_train (that forward and autograd's gradients w.r.t. q, k, v),
attention_sdpa (F.scaled_dot_product_attention where torch has it), matmul, unet_train (UNet twin, MSE, backward,
AdamW step), unet_fwd (no grad), lpips_alex (torchvision AlexNet features + LPIPS 1×1 heads), syncnet (the video
branch of SyncNet v2, layer for layer as src/models/syncnet.ts), fid_inception
(torchvision Inception-v3 to pool3; the FID network has the same layers and FLOPs).
Timing: CUDA-synchronised wall time; a warm-up run, a sizing run (the result when it fills the budget alone), then
as many runs as fit the budget, at most max_iters. An item that fails (out of memory, an op torch lacks) gives
{"error": message} and the others still run.
"""
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twin  # noqa: E402


def sync(dev):
    if dev.type == 'cuda':
        torch.cuda.synchronize()


def set_mode(mode):
    tf32 = mode == 'tf32'
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def autocast(mode, dev):
    if mode == 'bf16':
        return torch.autocast(device_type=dev.type, dtype=torch.bfloat16)
    return torch.autocast(device_type=dev.type, enabled=False)


def timeit(fn, dev, budget, max_iters):
    try:
        return _timeit(fn, dev, budget, max_iters)
    except RuntimeError as e:  # one item failing (e.g. out of memory) leaves the others' numbers
        if dev.type == 'cuda':
            torch.cuda.empty_cache()
        return {'error': str(e).split('\n')[0][:300]}


def _timeit(fn, dev, budget, max_iters):
    fn()
    sync(dev)
    t0 = time.perf_counter()
    fn()
    sync(dev)
    one = time.perf_counter() - t0
    n = int(min(max_iters, budget / max(one, 1e-6)))
    if n <= 1:
        return {'ms': one * 1000, 'iters': 1}
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync(dev)
    return {'ms': (time.perf_counter() - t0) / n * 1000, 'iters': n}


def randn(*shape, dev):
    g = torch.Generator().manual_seed(sum(shape))
    return torch.randn(*shape, generator=g).to(dev)


def op_items(s, dev):
    c = s['conv']
    x = randn(c['batch'], c['channels'], c['size'], c['size'], dev=dev)
    w = randn(c['channels'], c['channels'], 3, 3, dev=dev) * (1 / math.sqrt(9 * c['channels']))
    dy = randn(c['batch'], c['channels'], c['size'], c['size'], dev=dev)
    g = s['gn_silu']
    xg = randn(g['batch'], g['channels'], g['size'], g['size'], dev=dev)
    gn = twin.GroupNorm32(32, g['channels'], eps=1e-5).to(dev)
    a = s['attention']
    inner = a['heads'] * a['head_dim']
    q, k, v = (randn(a['batch'], a['tokens'], inner, dev=dev) for _ in range(3))
    m = s['matmul']
    ma, mb = randn(m['size'], m['size'], dev=dev), randn(m['size'], m['size'], dev=dev)
    d = s.get('conv_deep')

    def heads(t):
        return t.reshape(a['batch'], a['tokens'], a['heads'], a['head_dim']).transpose(1, 2)

    items = {
        'conv_fwd': lambda: F.conv2d(x, w, padding=1),
        'conv_dgrad': lambda: torch.nn.grad.conv2d_input(x.shape, w, dy, padding=1),
        'conv_wgrad': lambda: torch.nn.grad.conv2d_weight(x, w.shape, dy, padding=1),
        'gn_silu': lambda: F.silu(gn(xg)),
        'attention': lambda: twin.attention(q, k, v, a['heads']),
        'matmul': lambda: ma @ mb,
    }
    if d:
        # a deep, small-spatial UNet layer at sampling batch (conv + bias as blocks.conv2d), and its input gradient
        xd = randn(d['batch'], d['channels'], d['size'], d['size'], dev=dev)
        wd = randn(d['channels'], d['channels'], 3, 3, dev=dev) * (1 / math.sqrt(9 * d['channels']))
        bd = randn(d['channels'], dev=dev)
        items['conv_deep_fwd'] = lambda: F.conv2d(xd, wd, bd, padding=1)
        items['conv_deep_dgrad'] = lambda: torch.nn.grad.conv2d_input(xd.shape, wd, xd, padding=1)
    qg, kg, vg = (t.clone().requires_grad_(True) for t in (q, k, v))
    dya = randn(a['batch'], a['tokens'], inner, dev=dev) * 0.5

    def attention_train():
        o = twin.attention(qg, kg, vg, a['heads'])
        return torch.autograd.grad((o * dya).sum(), (qg, kg, vg))

    items['attention_train'] = attention_train
    if hasattr(F, 'scaled_dot_product_attention'):
        items['attention_sdpa'] = lambda: F.scaled_dot_product_attention(heads(q), heads(k), heads(v))
    return items


def unet_items(s, dev, mode):
    u = s['unet']
    cfg = twin.unet_config(**u['config'])
    twin.build_on(dev)  # initialised where it runs: the paper UNet's 530 M parameters take seconds on a CPU
    try:
        net = twin.UNet(cfg)
    finally:
        twin.build_on(None)
    hw = cfg['imageSize']
    ctx_dim = cfg['contextDim']
    bt, bf = u['train_batch'], u['fwd_batch']
    xt, nt = randn(bt, cfg['inChannels'], hw, hw, dev=dev), randn(bt, cfg['outChannels'], hw, hw, dev=dev)
    tt, ct = torch.arange(bt, device=dev) * 37 % 1000, randn(bt, 1, ctx_dim, dev=dev)
    xf, tf_, cf = randn(bf, cfg['inChannels'], hw, hw, dev=dev), torch.arange(bf, device=dev) * 31 % 1000, randn(bf, 1, ctx_dim, dev=dev)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-5)

    def train():
        opt.zero_grad(set_to_none=True)
        with autocast(mode, dev):
            loss = F.mse_loss(net(xt, tt, ct).float(), nt)
        loss.backward()
        opt.step()

    def fwd():
        with torch.no_grad(), autocast(mode, dev):
            net(xf, tf_, cf)

    return {'unet_train': train, 'unet_fwd': fwd}, net


def eval_items(s, dev, mode):
    import torchvision

    e = s['eval']
    items = {}
    alex = torchvision.models.alexnet(weights=None).features.to(dev).eval()
    taps = [1, 4, 7, 9, 11]  # the ReLUs LPIPS reads
    chans = [64, 192, 384, 256, 256]
    lins = [torch.rand(1, ch, 1, 1, device=dev) for ch in chans]
    n = e['lpips_batch']
    p0, p1 = randn(n, 3, e['lpips_size'], e['lpips_size'], dev=dev).clamp(-1, 1), randn(n, 3, e['lpips_size'], e['lpips_size'], dev=dev).clamp(-1, 1)

    def lpips():
        with torch.no_grad(), autocast(mode, dev):
            h = torch.cat([p0, p1], 0)
            total = 0
            k = 0
            for i, layer in enumerate(alex):
                h = layer(h)
                if i in taps:
                    f = h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                    d = (f[:n] - f[n:]).pow(2)
                    total = total + F.conv2d(d, lins[k].to(d.dtype)).mean((2, 3))
                    k += 1
                    if k == len(taps):
                        break
            return total

    items['lpips_alex'] = lpips
    # SyncNet v2's video branch as src/models/syncnet.ts lays it out (the 5-frame Conv3d as a 15-channel Conv2d: same
    # FLOPs; every later layer has temporal size 1), eval-mode BatchNorm.
    from torch import nn

    def cbr(cin, cout, k, s=1, p=0):
        return [nn.Conv2d(cin, cout, k, s, p), nn.BatchNorm2d(cout), nn.ReLU()]

    sync = nn.Sequential(*cbr(15, 96, 7, 2), nn.MaxPool2d(3, 2), *cbr(96, 256, 5, 2, 1), nn.MaxPool2d(3, 2, 1), *cbr(256, 256, 3, 1, 1),
                         *cbr(256, 256, 3, 1, 1), *cbr(256, 256, 3, 1, 1), nn.MaxPool2d(3, 2), *cbr(256, 512, 6), nn.Flatten(),
                         nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 1024)).to(dev).eval()
    xs = randn(e['syncnet_batch'], 15, 224, 224, dev=dev)

    def syncnet():
        with torch.no_grad(), autocast(mode, dev):
            return sync(xs)

    items['syncnet'] = syncnet
    inc = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).to(dev).eval()
    inc.fc = torch.nn.Identity()
    xi = randn(e['fid_batch'], 3, 299, 299, dev=dev)

    def fid():
        with torch.no_grad(), autocast(mode, dev):
            inc(xi)

    items['fid_inception'] = fid
    return items


def main():
    s = json.load(open(sys.argv[1]))
    dev = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    torch.backends.cudnn.benchmark = dev.type == 'cuda'
    res = {'torch': torch.__version__, 'device': torch.cuda.get_device_name(0) if dev.type == 'cuda' else 'cpu', 'results': {}}
    budget, max_iters = s['budget_s'], s['max_iters']
    for mode in s['modes']:
        set_mode(mode)
        r = res['results'].setdefault(mode, {})
        for name, fn in op_items(s, dev).items():
            def run(fn=fn):
                with autocast(mode, dev):
                    fn()
            r[name] = timeit(run, dev, budget, max_iters)
        if s.get('unet'):
            try:
                items, net = unet_items(s, dev, mode)
                for name, fn in items.items():
                    r[name] = timeit(fn, dev, s['unet'].get('budget_s', budget), max_iters)
                del net, items
            except (RuntimeError, ImportError) as e:
                r['unet_train'] = {'error': str(e).split('\n')[0][:300]}
        if s.get('eval'):
            try:
                for name, fn in eval_items(s, dev, mode).items():
                    r[name] = timeit(fn, dev, budget, max_iters)
            except (RuntimeError, ImportError, TypeError) as e:  # torchvision missing or too old
                r['lpips_alex'] = {'error': str(e).split('\n')[0][:300]}
        if dev.type == 'cuda':
            torch.cuda.empty_cache()
    set_mode('fp32')
    json.dump(res, sys.stdout)


if __name__ == '__main__':
    main()
