#!/usr/bin/env python3
"""Independent check of a `difftalk export difftalk` folder with the reading lines of DiffTalk's loader.

Reimplements ONLY what TALKBase.__init__/__getitem__ (ldm/data/talk_data_ref_smooth.py, sstzal/DiffTalk b49a607;
../shared/docs/difftalk-reference.md §1.2-1.3) read, with numpy and PIL, and runs it on every listed frame:
  data.txt line vid-1 -> N (second token); reference = random.choice({1..N-1} - {f-60..f+59}) with random.seed(23);
  image: PIL RGB, resize (256,256) bicubic, x/127.5-1 float32; landmarks: np.loadtxt float32 (68,2), condition
  concat(lm[0:4], lm[13:48]) / (w/256); mask: rows >= int(lm[30][1]/scaler) zeroed, then /127.5-1;
  audio_smooth: np.load(...).astype(float32); reference image as the image.
Asserts shapes, dtypes, value ranges, the mask rule and the reference rule here, loads every .npy in audio_smooth, and
prints a JSON report (per-sample mask row, landmark point 30, audio sha256, image mean) for the TypeScript test.

usage: difftalk_loader.py <export root (the folder holding data/)>
"""
import hashlib
import json
import os
import random
import sys

import numpy as np
from PIL import Image

SIZE = 256


def read_lines(path):
    with open(path, "r") as f:
        return f.read().splitlines()


def load_image(path):
    image = Image.open(path)
    if not image.mode == "RGB":
        image = image.convert("RGB")
    img = np.array(image).astype(np.uint8)
    image = Image.fromarray(img)
    w, h = image.size  # the loader names these (h, w); it is (width, height)
    image = image.resize((SIZE, SIZE), resample=Image.BICUBIC)
    return np.array(image).astype(np.uint8), w, h


def main(root):
    data_root = os.path.join(root, "data", "HDTF")
    image_num = read_lines(os.path.join(data_root, "data.txt"))
    random.seed(23)
    report = {"data_txt_lines": len(image_num), "splits": {}, "samples": {}}
    for split in ("train", "test"):
        names = read_lines(os.path.join(root, "data", f"data_{split}.txt"))
        # TALKBase.__init__: the reference of every listed frame, drawn once (random.choice raises on an empty set).
        refs = []
        for l in names:
            vid, frame = int(l.split("_")[0]), int(l.split("_")[1])
            n = int(image_num[vid - 1].split()[1])
            cands = sorted(set(range(1, n)) - set(range(frame - 60, frame + 60)))
            assert cands, f"{l}: no reference candidate (N={n})"
            ref = random.choice(cands)
            assert 1 <= ref <= n - 1 and (ref <= frame - 61 or ref >= frame + 60), (l, ref, n)
            refs.append(f"{vid}_{ref}")
        report["splits"][split] = len(names)
        for l, ref in zip(names, refs):
            image, w, h = load_image(os.path.join(data_root, "images", l + ".jpg"))
            assert (w, h) == (SIZE, SIZE), f"{l}.jpg is {w}x{h}"
            x = (image / 127.5 - 1.0).astype(np.float32)
            landmarks = np.loadtxt(os.path.join(data_root, "landmarks", l + ".lms"), dtype=np.float32)
            assert landmarks.shape == (68, 2) and landmarks.dtype == np.float32, landmarks.shape
            assert np.isfinite(landmarks).all()
            scaler = w / SIZE
            cond = np.concatenate((landmarks[0:4], landmarks[13:48])) / scaler
            assert cond.shape == (39, 2)
            row = (landmarks[30][1] / scaler).astype(int)
            mask = np.ones((SIZE, SIZE))
            mask[row:, :] = 0.0
            mask = mask[..., None]
            image_mask = ((image * mask).astype(np.uint8) / 127.5 - 1.0).astype(np.float32)
            # the mask rule: rows above the nose tip keep the image, rows from it down are -1
            assert 0 < row < SIZE, (l, row)
            assert np.array_equal(image_mask[:row], x[:row]) and (image_mask[row:] == -1.0).all(), l
            audio = np.load(os.path.join(data_root, "audio_smooth", l + ".npy")).astype(np.float32)
            assert audio.shape == (8, 16, 29) and audio.dtype == np.float32, audio.shape
            ref_img, rw, rh = load_image(os.path.join(data_root, "images", ref + ".jpg"))
            assert (rw, rh) == (SIZE, SIZE)
            r = (ref_img / 127.5 - 1.0).astype(np.float32)
            for name, a in (("image", x), ("image_mask", image_mask), ("reference_img", r)):
                assert a.shape == (SIZE, SIZE, 3) and a.dtype == np.float32, (name, a.shape, a.dtype)
                assert a.min() >= -1.0 and a.max() <= 1.0, (name, a.min(), a.max())
            assert cond.min() >= -SIZE and cond.max() <= 2 * SIZE
            report["samples"][l] = {
                "split": split,
                "mask_row": int(row),
                "y30": float(landmarks[30][1]),
                "cond_first": [float(cond[0][0]), float(cond[0][1])],
                "audio_sha256": hashlib.sha256(np.load(os.path.join(data_root, "audio_smooth", l + ".npy")).tobytes()).hexdigest(),
                "image_mean": float(x.mean()),
                "ref": ref,
            }
    # numpy loads every .npy written, not only the listed ones
    npy = sorted(os.listdir(os.path.join(data_root, "audio_smooth")))
    for f in npy:
        a = np.load(os.path.join(data_root, "audio_smooth", f))
        assert a.shape == (8, 16, 29) and a.dtype == np.float32, (f, a.shape, a.dtype)
    report["npy_files"] = len(npy)
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
