#!/usr/bin/env python3
"""Reference values for tests/preprocess/audio-features.test.ts (hand-run; output committed as audio_reference.json).

    python3 tests/reference/audio_reference.py            # needs numpy + scipy, reads ../shared/data/media/jfk.wav

Two independent numpy implementations, written from the published formulas (not from the TypeScript code):
- log-mel: librosa's `filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=False, norm='slaney')` formulas (Slaney mel
  scale: linear below 1 kHz, log above; triangles from `mel_frequencies`; area normalisation 2/(f[i+2]-f[i])),
  `np.fft.rfftfreq` bin frequencies, periodic Hann (`scipy.signal.get_window('hann', 400)`), power |rfft|^2,
  natural log of max(., 1e-10); input int16 / 32768; frames as python_speech_features frames them (frame j =
  samples [j*hop, j*hop+win), 1+ceil((N-win)/hop) frames, zero padding at the end).
- MFCC: the python_speech_features 0.6.1 recipe of ../shared/docs/eval-metrics.md section 4, vectorised, used to
  pin the sample-rate-dependent paths (nfft auto = 2048 at 44.1 kHz, 256 at 8 kHz) that the PSF golden values
  (16 kHz only) do not cover. Its 16 kHz output is checked here against those golden values first.
"""
import json
import math
import os

import numpy as np
import scipy.io.wavfile
import scipy.signal
from scipy.fftpack import dct

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get('DIFFTALK_SHARED', os.path.join(HERE, '..', '..', '..', 'shared'))
JFK = os.path.join(SHARED, 'data', 'media', 'jfk.wav')


def psf_frames(sig, flen, fstep):
    n = len(sig)
    nf = 1 if n <= flen else 1 + int(math.ceil((n - flen) / fstep))
    pad = np.concatenate([sig, np.zeros((nf - 1) * fstep + flen - n)])
    idx = np.arange(flen)[None, :] + fstep * np.arange(nf)[:, None]
    return pad[idx]


def half_up(x):
    f = math.floor(x)
    return f + 1 if x - f >= 0.5 else f


# ---------- log-mel (librosa formulas) ----------
def hz_to_mel(f):
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-300) / min_log_hz) / logstep, mels)


def mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(sr, n_fft, n_mels, fmin=0.0, fmax=None):
    fmax = sr / 2 if fmax is None else fmax
    fftfreqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    w = np.zeros((n_mels, len(fftfreqs)))
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        w[i] = np.maximum(0, np.minimum(lower, upper))
    w *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    return w


def log_mel(x, sr, n_mels=80, win=0.025, hop=0.01, n_fft=512):
    flen, fstep = half_up(win * sr), half_up(hop * sr)
    frames = psf_frames(x.astype(np.float64) / 32768.0, flen, fstep)
    frames = frames * scipy.signal.get_window('hann', flen)[None, :]
    p = np.abs(np.fft.rfft(frames, n_fft)) ** 2
    return np.log(np.maximum(p @ mel_filterbank(sr, n_fft, n_mels).T, 1e-10))


# ---------- MFCC (PSF 0.6.1 recipe) ----------
def mfcc(x, sr):
    flen, fstep = half_up(0.025 * sr), half_up(0.01 * sr)
    nfft = 1
    while nfft < 0.025 * sr:
        nfft *= 2
    x = x.astype(np.float64)
    y = np.append(x[0], x[1:] - 0.97 * x[:-1])
    frames = psf_frames(y, flen, fstep)
    p = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft
    energy = p.sum(1)
    energy = np.where(energy == 0, np.finfo(float).eps, energy)
    hz2mel = lambda f: 2595 * np.log10(1 + f / 700.0)
    mel2hz = lambda m: 700 * (10 ** (m / 2595.0) - 1)
    b = np.floor((nfft + 1) * mel2hz(np.linspace(hz2mel(0), hz2mel(sr / 2), 28)) / sr)
    fb = np.zeros((26, nfft // 2 + 1))
    for j in range(26):
        for i in range(int(b[j]), int(b[j + 1])):
            fb[j, i] = (i - b[j]) / (b[j + 1] - b[j])
        for i in range(int(b[j + 1]), int(b[j + 2])):
            fb[j, i] = (b[j + 2] - i) / (b[j + 2] - b[j + 1])
    feat = p @ fb.T
    feat = np.where(feat == 0, np.finfo(float).eps, feat)
    c = dct(np.log(feat), type=2, axis=1, norm='ortho')[:, :13]
    c *= 1 + 11 * np.sin(np.pi * np.arange(13) / 22)
    c[:, 0] = np.log(energy)
    return c


def summary(a, rows):
    return {
        'shape': list(a.shape),
        'sum': float(a.sum()),
        'abs_sum': float(np.abs(a).sum()),
        'rows': {str(r): [float(v) for v in a[r]] for r in rows},
    }


def main():
    sr, x = scipy.io.wavfile.read(JFK)
    assert sr == 16000 and x.dtype == np.int16

    # Self-check of the MFCC reference against the PSF golden values (eval-metrics.md section 4).
    m16 = mfcc(x, 16000)
    assert m16.shape == (1099, 13), m16.shape
    assert abs(m16.sum() - (-72383.28859)) < 1e-4, m16.sum()
    assert abs(m16[100, 0] - 18.255905) < 1e-5 and abs(m16[100, 12] - (-16.87619)) < 1e-5

    fb = mel_filterbank(16000, 512, 80)
    nz = [(int(np.nonzero(r)[0][0]), int(np.nonzero(r)[0][-1])) for r in fb]
    out = {
        'generated_by': 'tests/reference/audio_reference.py (numpy %s, scipy %s)' % (np.__version__, scipy.__version__),
        'input': 'jfk.wav (16 kHz mono int16, 176000 samples)',
        'mel_filterbank_16k_512_80': {
            'shape': list(fb.shape),
            'sum': float(fb.sum()),
            'row_sums': [float(v) for v in fb.sum(1)],
            'nonzero_span': nz,
            'rows': {str(r): [float(v) for v in fb[r]] for r in (0, 1, 40, 79)},
        },
        'log_mel_jfk': summary(log_mel(x, 16000), (0, 100, 555, 1098)),
        # the same int16 samples declared at other rates: exercises nfft auto (2048 / 256) and frame rounding
        'mfcc_jfk_as_44100': summary(mfcc(x, 44100), (0, 100, 397)),
        'mfcc_jfk_as_8000': summary(mfcc(x, 8000), (0, 100, 2198)),
        'log_mel_jfk_as_22050': summary(log_mel(x, 22050, n_fft=1024), (0, 100)),
    }
    with open(os.path.join(HERE, 'audio_reference.json'), 'w') as f:
        json.dump(out, f, indent=1)
        f.write('\n')
    print('wrote audio_reference.json')


if __name__ == '__main__':
    main()
