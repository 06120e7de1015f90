#!/usr/bin/env python3
"""Oracle for `difftalk eval --sync-crop reference`: syncnet_python's run_pipeline.py preprocessing written
independently in PyTorch / numpy / scipy (joonson/syncnet_python: detectors/s3fd, run_pipeline.py; facts from
../shared/docs/eval-metrics.md §4), with det() weights (../shared/data/fixtures/README.md) so no weight file is needed.

    python3 syncnet_pipeline_reference.py s3fd FRAME.png OUTDIR [CONF_TH]
        S3FDNet on the RGB frame at scale 0.25: writes OUTDIR/loc.npy, conf.npy (softmaxed), priors.npy (float32) and
        prints {"feature_maps", "dets_at": [[x1, y1, x2, y2, score], ...] at CONF_TH (default 0.9), "max_face_score"}.
    python3 syncnet_pipeline_reference.py detect RAWDIR W H CONF_TH
        Detect + detect_faces' thresholding and nms_ on given raw outputs (RAWDIR/loc.npy, conf.npy, priors.npy).
    python3 syncnet_pipeline_reference.py track DETS.json
        DETS.json = {"dets": [[[x1, y1, x2, y2, score], ...] per frame], "width": W, "height": H}; one shot.
        Prints the tracks of track_shot and crop_video's smoothed s/x/y and crop slices.
    python3 syncnet_pipeline_reference.py crop FRAMESDIR TRACK.json OUT.npy
        crop_video on the JPEG frames FRAMESDIR/%06d.jpg (PIL decode) for the track's frames/bbox: pad 110, slice,
        resize 224 (cv2 INTER_LINEAR in float, rounded); writes N×224×224×3 RGB uint8.
    python3 syncnet_pipeline_reference.py score WORKDIR DETS.json
        From run_pipeline.py step 1's output in WORKDIR (frames/%06d.jpg, audio.wav) and given detections: track_shot,
        crop_video, the crop file round trip (ffmpeg mpeg4/XVID avi → JPEG frames, the same commands as difftalk) and
        SyncNetInstance.evaluate (SyncNetModel.S with det weights, python_speech_features 0.6.1 MFCC written in numpy)
        per track; prints [{"first", "last", "lse_d", "lse_c", "offset", "mdist"}].
    python3 syncnet_pipeline_reference.py frames VIDEO WORKDIR
        run_pipeline.py's ffmpeg steps: VIDEO → WORKDIR/video.avi (-qscale:v 2 -async 1 -r 25) → WORKDIR/frames/%06d.jpg
        (-qscale:v 2) and then S3FD (det weights, conf_th 0.9) on every frame; prints detections per frame.
"""
import glob
import json
import math
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from scipy import signal
from scipy.interpolate import interp1d

torch.set_grad_enabled(False)


def det(name, shape):
    n = int(np.prod(shape)) if len(shape) else 1
    phase = (sum(ord(c) for c in name) % 1000) / 1000 * 2 * math.pi
    base = np.sin(0.618034 * np.arange(n, dtype=np.float64) + phase)
    if name.endswith('running_var'):
        v = 1 + 0.5 * np.abs(base)
    elif name.endswith('running_mean'):
        v = 0.1 * base
    elif len(shape) == 1 and name.endswith('weight'):
        v = 1 + 0.1 * base
    elif len(shape) <= 1:
        v = 0.1 * base
    else:
        v = base / math.sqrt(n / shape[0])
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


# ----- S3FD (module names as in sfd_face.pth) -----
class L2Norm(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))

    def forward(self, x):
        return self.weight.view(1, -1, 1, 1) * (x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))


class S3FDNet(nn.Module):
    def __init__(self):
        super().__init__()
        L = []
        cin = 3
        for v in [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'C', 512, 512, 512, 'M', 512, 512, 512, 'M']:
            if v == 'M':
                L.append(nn.MaxPool2d(2, 2))
            elif v == 'C':
                L.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            else:
                L += [nn.Conv2d(cin, v, 3, 1, padding=1), nn.ReLU()]
                cin = v
        L += [nn.Conv2d(512, 1024, 3, 1, padding=6, dilation=6), nn.ReLU(), nn.Conv2d(1024, 1024, 1, 1), nn.ReLU()]
        self.vgg = nn.ModuleList(L)
        self.L2Norm3_3, self.L2Norm4_3, self.L2Norm5_3 = L2Norm(256), L2Norm(512), L2Norm(512)
        self.extras = nn.ModuleList([nn.Conv2d(1024, 256, 1), nn.Conv2d(256, 512, 3, 2, 1), nn.Conv2d(512, 128, 1), nn.Conv2d(128, 256, 3, 2, 1)])
        chans = [256, 512, 512, 1024, 512, 256]
        self.loc = nn.ModuleList([nn.Conv2d(c, 4, 3, 1, 1) for c in chans])
        self.conf = nn.ModuleList([nn.Conv2d(c, 4 if i == 0 else 2, 3, 1, 1) for i, c in enumerate(chans)])

    def forward(self, x):
        src = []
        for k, layer in enumerate(self.vgg):
            x = layer(x)
            if k == 15:
                src.append(self.L2Norm3_3(x))
            elif k == 22:
                src.append(self.L2Norm4_3(x))
            elif k == 29:
                src.append(self.L2Norm5_3(x))
        src.append(x)
        for k, e in enumerate(self.extras):
            x = F.relu(e(x))
            if k % 2 == 1:
                src.append(x)
        locs, confs, maps = [], [], []
        for i, s in enumerate(src):
            l = self.loc[i](s)
            c = self.conf[i](s)
            if i == 0:
                c = torch.cat([c[:, 0:3].max(1, keepdim=True)[0], c[:, 3:]], 1)
            locs.append(l.permute(0, 2, 3, 1).reshape(1, -1, 4))
            confs.append(c.permute(0, 2, 3, 1).reshape(1, -1, 2))
            maps.append((s.shape[2], s.shape[3]))
        return torch.cat(locs, 1)[0], torch.softmax(torch.cat(confs, 1)[0], -1), maps


def det_s3fd():
    net = S3FDNet().eval()
    net.load_state_dict({k: det(k, list(v.shape)) for k, v in net.state_dict().items()})
    return net


def priors(imh, imw, maps):
    out = []
    for k, (fh, fw) in enumerate(maps):
        step, ms = [4, 8, 16, 32, 64, 128][k], [16, 32, 64, 128, 256, 512][k]
        for i in range(fh):
            for j in range(fw):
                out += [(j + 0.5) / (imw / step), (i + 0.5) / (imh / step), ms / imw, ms / imh]
    return torch.tensor(out, dtype=torch.float32).view(-1, 4)


def torch_nms(boxes, scores, overlap, top_k):
    """Greedy NMS of the SSD box_utils: ascending (stable) sort, the last top_k, best popped first; areas without +1."""
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1) * (y2 - y1)
    idx = torch.sort(scores, stable=True)[1][-top_k:].tolist()
    keep = []
    while idx:
        i = idx.pop()
        keep.append(i)
        if not idx:
            break
        o = torch.tensor(idx)
        w = (torch.minimum(x2[o], x2[i]) - torch.maximum(x1[o], x1[i])).clamp(min=0)
        h = (torch.minimum(y2[o], y2[i]) - torch.maximum(y1[o], y1[i])).clamp(min=0)
        inter = w * h
        iou = inter / (area[o] - inter + area[i])
        idx = [j for j, v in zip(idx, iou.tolist()) if v <= overlap]
    return keep


def numpy_nms(dets, thresh):
    if len(dets) == 0:
        return dets
    x1, y1, x2, y2, s = dets.T
    areas = (x2 - x1) * (y2 - y1)
    order = s.argsort()[::-1]
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[order[1:]]) - np.maximum(x1[i], x1[order[1:]]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[order[1:]]) - np.maximum(y1[i], y1[order[1:]]))
        inter = w * h
        ovr = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.where(ovr <= thresh)[0] + 1]
    return dets[keep]


def detections(loc, conf, pri, w, h, conf_th):
    """Detect (variances 0.1/0.2, score > 0.05, NMS 0.3 over the best 5000, keep 750) + detect_faces (> conf_th, nms_ 0.1)."""
    cxcy = pri[:, :2] + loc[:, :2] * 0.1 * pri[:, 2:]
    wh = pri[:, 2:] * torch.exp(loc[:, 2:] * 0.2)
    boxes = torch.cat([cxcy - wh / 2, cxcy + wh / 2], 1)
    sc = conf[:, 1]
    m = sc > 0.05
    b, s = boxes[m], sc[m]
    keep = torch_nms(b, s, 0.3, 5000)[:750] if len(s) else []
    rows = []
    for k in keep:
        if not s[k] > conf_th:
            break
        p = (b[k] * torch.tensor([w, h, w, h], dtype=torch.float32)).numpy()
        rows.append([p[0], p[1], p[2], p[3], float(s[k])])
    return numpy_nms(np.array(rows, dtype=np.float64).reshape(-1, 5), 0.1)


def quarter(img):
    """cv2.resize(img, (0,0), fx=0.25, fy=0.25, INTER_LINEAR) of uint8: mean of the 2×2 pixels at 4i+1, 4i+2, rounded half up."""
    h, w = img.shape[:2]
    oh, ow = int(round(h * 0.25)), int(round(w * 0.25))
    ys = np.minimum(4 * np.arange(oh) + 1, h - 1)
    xs = np.minimum(4 * np.arange(ow) + 1, w - 1)
    ys2, xs2 = np.minimum(ys + 1, h - 1), np.minimum(xs + 1, w - 1)
    a = img.astype(np.int32)
    s = a[ys][:, xs] + a[ys][:, xs2] + a[ys2][:, xs] + a[ys2][:, xs2]
    return ((s + 2) >> 2).astype(np.uint8)


def run_s3fd(net, rgb):
    small = quarter(rgb).astype(np.float32) - np.array([123, 117, 104], dtype=np.float32)
    x = torch.from_numpy(small.transpose(2, 0, 1).copy()).unsqueeze(0)
    loc, conf, maps = net(x)
    return loc, conf, priors(small.shape[0], small.shape[1], maps), maps


# ----- run_pipeline.py: track_shot / crop_video -----
def iou(a, b):
    xA, yA, xB, yB = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, xB - xA) * max(0, yB - yA)
    return inter / float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def track_shot(scenefaces, num_failed_det=25, min_track=100, min_face_size=100):
    tracks = []
    while True:
        track = []
        for framefaces in scenefaces:
            for face in framefaces:  # removing while iterating, as the original does
                if track == []:
                    track.append(face)
                    framefaces.remove(face)
                elif face['frame'] - track[-1]['frame'] <= num_failed_det:
                    if iou(face['bbox'], track[-1]['bbox']) > 0.5:
                        track.append(face)
                        framefaces.remove(face)
                        continue
                else:
                    break
        if track == []:
            break
        elif len(track) > min_track:
            fn = np.array([f['frame'] for f in track])
            bb = np.array([np.array(f['bbox']) for f in track])
            fi = np.arange(fn[0], fn[-1] + 1)
            bi = np.stack([interp1d(fn, bb[:, j])(fi) for j in range(4)], 1)
            if max(np.mean(bi[:, 2] - bi[:, 0]), np.mean(bi[:, 3] - bi[:, 1])) > min_face_size:
                tracks.append({'frame': fi, 'bbox': bi})
    return tracks


def smooth(track):
    s = [max(d[3] - d[1], d[2] - d[0]) / 2 for d in track['bbox']]
    y = [(d[1] + d[3]) / 2 for d in track['bbox']]
    x = [(d[0] + d[2]) / 2 for d in track['bbox']]
    return signal.medfilt(s, kernel_size=13), signal.medfilt(x, kernel_size=13), signal.medfilt(y, kernel_size=13)


def slices(bs, mx0, my0):
    cs = 0.4
    bsi = int(bs * (1 + 2 * cs))
    my, mx = my0 + bsi, mx0 + bsi
    return bsi, int(my - bs), int(my + bs * (1 + 2 * cs)), int(mx - bs * (1 + cs)), int(mx + bs * (1 + cs))


def resize_linear(img, size):
    """cv2.resize INTER_LINEAR (half-pixel centres, clamped), in float64, rounded to uint8."""
    h, w = img.shape[:2]

    def axis(n_out, n_in):
        f = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0)
        i0 = np.minimum(np.floor(f).astype(int), n_in - 1)
        return i0, np.minimum(i0 + 1, n_in - 1), np.minimum(f - i0, 1)

    y0, y1, wy = axis(size, h)
    x0, x1, wx = axis(size, w)
    a = img.astype(np.float64)
    top = a[y0][:, x0] * (1 - wx)[None, :, None] + a[y0][:, x1] * wx[None, :, None]
    bot = a[y1][:, x0] * (1 - wx)[None, :, None] + a[y1][:, x1] * wx[None, :, None]
    return np.floor(top * (1 - wy)[:, None, None] + bot * wy[:, None, None] + 0.5).astype(np.uint8)


def crop_frames(flist, track):
    s, x, y = smooth(track)
    out = []
    for fidx, frame in enumerate(track['frame']):
        bsi, r0, r1, c0, c1 = slices(s[fidx], x[fidx], y[fidx])
        img = np.asarray(Image.open(flist[frame]).convert('RGB'))
        padded = np.pad(img, ((bsi, bsi), (bsi, bsi), (0, 0)), 'constant', constant_values=(110, 110))
        out.append(resize_linear(padded[r0:r1, c0:c1], 224))
    return np.stack(out)


# ----- SyncNetInstance.evaluate (SyncNetModel.S(1024), det weights) -----
def bn_relu(cls, c):
    return [cls(c), nn.ReLU()]


class SyncNetS(nn.Module):
    def __init__(self):
        super().__init__()
        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, 64, 3, 1, 1), *bn_relu(nn.BatchNorm2d, 64), nn.MaxPool2d(1, 1),
            nn.Conv2d(64, 192, 3, 1, 1), *bn_relu(nn.BatchNorm2d, 192), nn.MaxPool2d(3, (1, 2)),
            nn.Conv2d(192, 384, 3, 1, 1), *bn_relu(nn.BatchNorm2d, 384),
            nn.Conv2d(384, 256, 3, 1, 1), *bn_relu(nn.BatchNorm2d, 256),
            nn.Conv2d(256, 256, 3, 1, 1), *bn_relu(nn.BatchNorm2d, 256), nn.MaxPool2d(3, 2),
            nn.Conv2d(256, 512, (5, 4), 1, 0), *bn_relu(nn.BatchNorm2d, 512))
        self.netfcaud = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 1024))
        self.netfclip = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 1024))
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, 96, (5, 7, 7), (1, 2, 2), 0), *bn_relu(nn.BatchNorm3d, 96), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            nn.Conv3d(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), *bn_relu(nn.BatchNorm3d, 256),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            nn.Conv3d(256, 256, (1, 3, 3), 1, (0, 1, 1)), *bn_relu(nn.BatchNorm3d, 256),
            nn.Conv3d(256, 256, (1, 3, 3), 1, (0, 1, 1)), *bn_relu(nn.BatchNorm3d, 256),
            nn.Conv3d(256, 256, (1, 3, 3), 1, (0, 1, 1)), *bn_relu(nn.BatchNorm3d, 256), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            nn.Conv3d(256, 512, (1, 6, 6), 1, 0), *bn_relu(nn.BatchNorm3d, 512))

    def forward_aud(self, x):
        return self.netfcaud(self.netcnnaud(x).view(x.shape[0], -1))

    def forward_lip(self, x):
        return self.netfclip(self.netcnnlip(x).view(x.shape[0], -1))


def det_syncnet():
    net = SyncNetS().eval()
    net.load_state_dict({k: det(k, list(v.shape)) if not k.endswith('num_batches_tracked') else v for k, v in net.state_dict().items()})
    return net


def psf_mfcc(sig, rate=16000):
    """python_speech_features 0.6.1 mfcc() defaults (eval-metrics.md §4), numpy float64."""
    sig = np.asarray(sig, dtype=np.float64)
    sig = np.append(sig[0], sig[1:] - 0.97 * sig[:-1])
    flen, step, nfft = 400, 160, 512
    n = 1 if len(sig) <= flen else 1 + int(math.ceil((len(sig) - flen) / step))
    padded = np.concatenate([sig, np.zeros((n - 1) * step + flen - len(sig))])
    idx = np.arange(flen)[None, :] + step * np.arange(n)[:, None]
    pspec = np.abs(np.fft.rfft(padded[idx], nfft)) ** 2 / nfft
    energy = pspec.sum(1)
    energy = np.where(energy == 0, np.finfo(float).eps, energy)
    hz2mel = lambda hz: 2595 * np.log10(1 + hz / 700.0)
    mel2hz = lambda m: 700 * (10 ** (m / 2595.0) - 1)
    bins = np.floor((nfft + 1) * mel2hz(np.linspace(hz2mel(0), hz2mel(rate / 2), 28)) / rate)
    fb = np.zeros((26, nfft // 2 + 1))
    for j in range(26):
        for i in range(int(bins[j]), int(bins[j + 1])):
            fb[j, i] = (i - bins[j]) / (bins[j + 1] - bins[j])
        for i in range(int(bins[j + 1]), int(bins[j + 2])):
            fb[j, i] = (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
    feat = pspec @ fb.T
    feat = np.log(np.where(feat == 0, np.finfo(float).eps, feat))
    from scipy.fftpack import dct
    feat = dct(feat, type=2, axis=1, norm='ortho')[:, :13]
    feat = feat * (1 + 11 * np.sin(np.pi * np.arange(13) / 22))
    feat[:, 0] = np.log(energy)
    return feat


def sync_evaluate(net, images_bgr, audio, vshift=15):
    im = torch.from_numpy(np.stack(images_bgr, 0).astype(np.float32)).permute(3, 0, 1, 2).unsqueeze(0)  # 1,3,T,H,W
    cc = torch.from_numpy(psf_mfcc(audio).T.astype(np.float32))[None, None]  # 1,1,13,N
    lastframe = min(len(images_bgr), len(audio) // 640) - 5
    lip, aud = [], []
    for i in range(0, lastframe, 20):
        r = range(i, min(lastframe, i + 20))
        lip.append(net.forward_lip(torch.cat([im[:, :, v:v + 5] for v in r], 0)))
        aud.append(net.forward_aud(torch.cat([cc[:, :, :, 4 * v:4 * v + 20] for v in r], 0)))
    lip, aud = torch.cat(lip, 0), torch.cat(aud, 0)
    audp = F.pad(aud, (0, 0, vshift, vshift))
    d = torch.stack([F.pairwise_distance(lip[[i], :].repeat(2 * vshift + 1, 1), audp[i:i + 2 * vshift + 1, :]) for i in range(len(lip))], 1)
    mdist = d.mean(1)
    minval, minidx = torch.min(mdist, 0)
    return {'lse_d': float(minval), 'lse_c': float(torch.median(mdist) - minval), 'offset': int(vshift - minidx), 'mdist': mdist.tolist()}


def crop_round_trip(crops_rgb, work):
    avi = os.path.join(work, 'oracle-crop.avi')
    out = os.path.join(work, 'oracle-crop-frames')
    os.makedirs(out, exist_ok=True)
    for f in glob.glob(os.path.join(out, '*.jpg')):
        os.remove(f)
    subprocess.run(['ffmpeg', '-v', 'error', '-y', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', '224x224', '-r', '25', '-i', '-',
                    '-c:v', 'mpeg4', '-vtag', 'XVID', avi], input=crops_rgb.tobytes(), check=True)
    subprocess.run(['ffmpeg', '-v', 'error', '-y', '-i', avi, '-threads', '1', '-f', 'image2', os.path.join(out, '%06d.jpg')], check=True)
    return [np.asarray(Image.open(f).convert('RGB'))[:, :, ::-1] for f in sorted(glob.glob(os.path.join(out, '*.jpg')))]


def main():
    cmd = sys.argv[1]
    if cmd == 's3fd':
        rgb = np.asarray(Image.open(sys.argv[2]).convert('RGB'))
        out = sys.argv[3]
        th = float(sys.argv[4]) if len(sys.argv) > 4 else 0.9
        loc, conf, pri, maps = run_s3fd(det_s3fd(), rgb)
        for n, t in [('loc', loc), ('conf', conf), ('priors', pri)]:
            np.save(os.path.join(out, n + '.npy'), t.numpy().astype(np.float32))
        d = detections(loc, conf, pri, rgb.shape[1], rgb.shape[0], th)
        print(json.dumps({'feature_maps': maps, 'dets_at': d.tolist(), 'max_face_score': float(conf[:, 1].max())}))
    elif cmd == 'detect':
        rd = sys.argv[2]
        w, h, th = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
        ld = lambda n: torch.from_numpy(np.load(os.path.join(rd, n + '.npy')))
        print(json.dumps(detections(ld('loc'), ld('conf'), ld('priors'), w, h, th).tolist()))
    elif cmd == 'track':
        spec = json.load(open(sys.argv[2]))
        faces = [[{'frame': f, 'bbox': b[:4], 'conf': b[4]} for b in d] for f, d in enumerate(spec['dets'])]
        opts = spec.get('options', {})
        tracks = track_shot(faces, **opts) if len(faces) >= opts.get('min_track', 100) else []
        res = []
        for t in tracks:
            s, x, y = smooth(t)
            res.append({'frames': t['frame'].tolist(), 'bbox': t['bbox'].tolist(), 's': s.tolist(), 'x': x.tolist(), 'y': y.tolist(),
                        'slices': [list(slices(s[i], x[i], y[i])) for i in range(len(s))]})
        print(json.dumps(res))
    elif cmd == 'crop':
        flist = sorted(glob.glob(os.path.join(sys.argv[2], '*.jpg')))
        t = json.load(open(sys.argv[3]))
        np.save(sys.argv[4], crop_frames(flist, {'frame': np.array(t['frames']), 'bbox': np.array(t['bbox'])}))
    elif cmd == 'score':
        from scipy.io import wavfile
        work = sys.argv[2]
        spec = json.load(open(sys.argv[3]))
        flist = sorted(glob.glob(os.path.join(work, 'frames', '*.jpg')))
        _, audio = wavfile.read(os.path.join(work, 'audio.wav'))
        faces = [[{'frame': f, 'bbox': b[:4], 'conf': b[4]} for b in d] for f, d in enumerate(spec['dets'])]
        net = det_syncnet()
        res = []
        for t in track_shot(faces):
            imgs = crop_round_trip(crop_frames(flist, t), work)
            first, last = int(t['frame'][0]), int(t['frame'][-1])
            r = sync_evaluate(net, imgs, audio[first * 640:(last + 1) * 640])
            res.append({'first': first, 'last': last, **r})
        print(json.dumps(res))
    elif cmd == 'frames':
        video, work = sys.argv[2], sys.argv[3]
        os.makedirs(os.path.join(work, 'frames'), exist_ok=True)
        avi = os.path.join(work, 'video.avi')
        subprocess.run(['ffmpeg', '-v', 'error', '-y', '-i', video, '-qscale:v', '2', '-async', '1', '-r', '25', avi], check=True)
        subprocess.run(['ffmpeg', '-v', 'error', '-y', '-i', avi, '-qscale:v', '2', '-threads', '1', '-f', 'image2',
                        os.path.join(work, 'frames', '%06d.jpg')], check=True)
        net = det_s3fd()
        out = []
        for f in sorted(glob.glob(os.path.join(work, 'frames', '*.jpg'))):
            rgb = np.asarray(Image.open(f).convert('RGB'))
            loc, conf, pri, _ = run_s3fd(net, rgb)
            out.append({'dets': detections(loc, conf, pri, rgb.shape[1], rgb.shape[0], 0.9).tolist(), 'max_face_score': float(conf[:, 1].max())})
        print(json.dumps(out))
    else:
        raise SystemExit(__doc__)


if __name__ == '__main__':
    main()
