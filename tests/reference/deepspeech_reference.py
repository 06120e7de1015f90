#!/usr/bin/env python3
"""Independent reference for tests/models/deepspeech.test.ts and tests/prep/deepspeech-prep.test.ts.

    python3 tests/reference/deepspeech_reference.py graph OUT.pb
        writes a small GraphDef of DeepSpeech 0.1.0's structure (the real names h1 b1 … h6 b6 and
        bidirectional_rnn/{fw,bw}/basic_lstm_cell/{kernel,bias}; 494 inputs and 29 classes as in the real model, small
        hidden sizes 12/10/8, 6 LSTM cells, 7) with deterministic weights, plus Placeholder/Identity/MatMul/Reshape
        nodes as a frozen graph has them. Most Const values are tensor_content; b6 is a float_val list and b2 one
        float_val that TensorFlow broadcasts, so both TensorProto encodings are exercised.
    python3 tests/reference/deepspeech_reference.py run GRAPH.pb WAV OUTDIR
        AD-NeRF's data_util/deepspeech_features pipeline on WAV with that graph, in float64 NumPy: writes
        input.f32 (T x 494), logits.f32 (T x 29), windows.f32 (W x 16 x 29) and meta.json.

Written from the published formulas, not from the TypeScript code: the GraphDef is built and parsed with
google.protobuf from a descriptor of the tensorflow/core/framework/*.proto subset (as tfevents_reader.py does);
python_speech_features 0.6.1 mfcc(numcep=26) re-derived from its documented recipe (pre-emphasis 0.97, 400/160
frames zero-padded at the end, nfft 512 power spectrum / nfft, 26 mel filters with PSF's floor((nfft+1)·hz/sr) bins,
eps for zeros, natural log, scipy DCT-II ortho, lifter 22, c0 = log energy); every second row; 9 zero context rows
each side; 19-row strides flattened; one scalar mean / population std; the BiRNN of DeepSpeech 0.1.0 (clipped ReLU
20, BasicLSTMCell gates i, j, f, o with forget bias 1.0, backward direction on the reversed sequence); np.interp onto
int(round(len_s * 50)) stamps k/50; 8 zero rows each side; windows range(0, n - 16, 2) — AD-NeRF's loop literally.
"""
import json
import math
import os
import sys

import numpy as np
import scipy.io.wavfile
from scipy.fftpack import dct
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto
SIZES = dict(input=494, h1=12, h2=10, h3=8, cell=6, h5=7, classes=29)


def classes():
    fdp = descriptor_pb2.FileDescriptorProto(name='tf_subset.proto', package='tfsubset', syntax='proto3')
    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED

    def msg(name, fields, parent=None):
        m = (parent if parent is not None else fdp.message_type).add(name=name)
        for fname, num, ftype, label, tname in fields:
            f = m.field.add(name=fname, number=num, type=ftype, label=label)
            if tname:
                f.type_name = '.tfsubset.' + tname
        return m

    shape = msg('TensorShapeProto', [('dim', 2, F.TYPE_MESSAGE, rep, 'TensorShapeProto.Dim'),
                                     ('unknown_rank', 3, F.TYPE_BOOL, opt, None)])
    msg('Dim', [('size', 1, F.TYPE_INT64, opt, None), ('name', 2, F.TYPE_STRING, opt, None)], shape.nested_type)
    msg('TensorProto', [('dtype', 1, F.TYPE_INT32, opt, None), ('tensor_shape', 2, F.TYPE_MESSAGE, opt, 'TensorShapeProto'),
                        ('version_number', 3, F.TYPE_INT32, opt, None), ('tensor_content', 4, F.TYPE_BYTES, opt, None),
                        ('float_val', 5, F.TYPE_FLOAT, rep, None), ('int_val', 7, F.TYPE_INT32, rep, None)])
    msg('AttrValue', [('s', 2, F.TYPE_BYTES, opt, None), ('i', 3, F.TYPE_INT64, opt, None), ('f', 4, F.TYPE_FLOAT, opt, None),
                      ('b', 5, F.TYPE_BOOL, opt, None), ('type', 6, F.TYPE_INT32, opt, None),
                      ('shape', 7, F.TYPE_MESSAGE, opt, 'TensorShapeProto'), ('tensor', 8, F.TYPE_MESSAGE, opt, 'TensorProto')])
    node = msg('NodeDef', [('name', 1, F.TYPE_STRING, opt, None), ('op', 2, F.TYPE_STRING, opt, None),
                           ('input', 3, F.TYPE_STRING, rep, None), ('device', 4, F.TYPE_STRING, opt, None),
                           ('attr', 5, F.TYPE_MESSAGE, rep, 'NodeDef.AttrEntry')])
    entry = msg('AttrEntry', [('key', 1, F.TYPE_STRING, opt, None), ('value', 2, F.TYPE_MESSAGE, opt, 'AttrValue')], node.nested_type)
    entry.options.map_entry = True
    msg('GraphDef', [('node', 1, F.TYPE_MESSAGE, rep, 'NodeDef')])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    fac = message_factory.MessageFactory(pool)
    return fac.GetPrototype(pool.FindMessageTypeByName('tfsubset.GraphDef'))


def weights():
    s = SIZES
    rng = np.random.default_rng(20171130)
    w = {}

    def dense(n, i, o, scale):
        w['h' + n] = (rng.standard_normal((i, o)) * scale).astype(np.float32)
        w['b' + n] = (rng.standard_normal(o) * 0.5).astype(np.float32)

    dense('1', s['input'], s['h1'], 0.3)
    dense('2', s['h1'], s['h2'], 0.6)
    dense('3', s['h2'], s['h3'], 0.6)
    dense('5', 2 * s['cell'], s['h5'], 3.0)
    dense('6', s['h5'], s['classes'], 0.8)
    w['b1'][:3] = 25.0  # three units always past the clip at 20
    w['b2'][:] = np.float32(0.25)  # stored as one broadcast float_val
    c = s['cell']
    for d in ('fw', 'bw'):
        w['k_' + d] = (rng.standard_normal((s['h3'] + c, 4 * c)) * 0.4).astype(np.float32)
        w['bias_' + d] = (rng.standard_normal(4 * c) * 0.3).astype(np.float32)
    return w


def make_graph(out):
    GraphDef = classes()
    g = GraphDef()
    w = weights()

    def const(name, arr, mode='content'):
        n = g.node.add(name=name, op='Const')
        n.attr['dtype'].type = 1
        t = n.attr['value'].tensor
        t.dtype = 1
        for d in arr.shape:
            t.tensor_shape.dim.add(size=int(d))
        if mode == 'content':
            t.tensor_content = arr.astype('<f4').tobytes()
        elif mode == 'list':
            t.float_val.extend(arr.ravel().tolist())
        else:
            t.float_val.append(float(arr.ravel()[0]))
        g.node.add(name=name + '/read', op='Identity', input=[name]).attr['T'].type = 1

    ph = g.node.add(name='input_node', op='Placeholder')
    ph.attr['dtype'].type = 1
    ph.attr['shape'].shape.dim.add(size=1)
    ph.attr['shape'].shape.dim.add(size=-1)
    ph.attr['shape'].shape.dim.add(size=494)
    g.node.add(name='input_lengths', op='Placeholder').attr['dtype'].type = 3
    for k in ('1', '2', '3', '5', '6'):
        const('h' + k, w['h' + k])
        const('b' + k, w['b' + k], 'broadcast' if k == '2' else 'list' if k == '6' else 'content')
    for d in ('fw', 'bw'):
        const('bidirectional_rnn/%s/basic_lstm_cell/kernel' % d, w['k_' + d])
        const('bidirectional_rnn/%s/basic_lstm_cell/bias' % d, w['bias_' + d])
    shp = g.node.add(name='Reshape/shape', op='Const')
    shp.attr['dtype'].type = 3
    shp.attr['value'].tensor.dtype = 3
    shp.attr['value'].tensor.tensor_shape.dim.add(size=3)
    shp.attr['value'].tensor.int_val.extend([-1, 1, 29])
    g.node.add(name='MatMul', op='MatMul', input=['Reshape', 'h1/read']).attr['T'].type = 1
    g.node.add(name='logits', op='Reshape', input=['Add_5', 'Reshape/shape']).attr['T'].type = 1
    data = g.SerializeToString()
    with open(out, 'wb') as f:
        f.write(data)


def read_graph(path):
    GraphDef = classes()
    g = GraphDef()
    with open(path, 'rb') as f:
        g.ParseFromString(f.read())
    out = {}
    for n in g.node:
        if n.op != 'Const' or n.attr['value'].tensor.dtype != 1:
            continue
        t = n.attr['value'].tensor
        shape = [d.size for d in t.tensor_shape.dim]
        if t.tensor_content:
            a = np.frombuffer(t.tensor_content, dtype='<f4').reshape(shape)
        else:
            a = np.broadcast_to(np.array(t.float_val, dtype=np.float32), shape) if len(t.float_val) == 1 else np.array(t.float_val, dtype=np.float32).reshape(shape)
        out[n.name] = a.astype(np.float64)
    return out


# ---------- python_speech_features 0.6.1 mfcc(numcep=26) ----------
def psf_mfcc26(sig, sr=16000):
    flen, fstep, nfft, nfilt, numcep = 400, 160, 512, 26, 26
    x = sig.astype(np.float64)
    y = np.append(x[0], x[1:] - 0.97 * x[:-1])
    n = len(y)
    nf = 1 if n <= flen else 1 + int(math.ceil((n - flen) / fstep))
    pad = np.concatenate([y, np.zeros((nf - 1) * fstep + flen - n)])
    frames = pad[np.arange(flen)[None, :] + fstep * np.arange(nf)[:, None]]
    p = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft
    energy = p.sum(1)
    energy = np.where(energy == 0, np.finfo(float).eps, energy)
    hz2mel = lambda f: 2595 * np.log10(1 + f / 700.0)
    mel2hz = lambda m: 700 * (10 ** (m / 2595.0) - 1)
    b = np.floor((nfft + 1) * mel2hz(np.linspace(hz2mel(0), hz2mel(sr / 2), nfilt + 2)) / sr)
    fb = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        for i in range(int(b[j]), int(b[j + 1])):
            fb[j, i] = (i - b[j]) / (b[j + 1] - b[j])
        for i in range(int(b[j + 1]), int(b[j + 2])):
            fb[j, i] = (b[j + 2] - i) / (b[j + 2] - b[j + 1])
    feat = p @ fb.T
    feat = np.where(feat == 0, np.finfo(float).eps, feat)
    c = dct(np.log(feat), type=2, axis=1, norm='ortho')[:, :numcep]
    c *= 1 + (22 / 2.0) * np.sin(np.pi * np.arange(numcep) / 22)
    c[:, 0] = np.log(energy)
    return c


def input_vector(audio):
    f = psf_mfcc26(audio.astype(np.int16))[::2]
    steps = len(f)
    f = np.concatenate([np.zeros((9, 26)), f, np.zeros((9, 26))])
    x = np.stack([f[t:t + 19].reshape(-1) for t in range(steps)])
    return (x - np.mean(x)) / np.std(x)


def birnn(x, w):
    clip = lambda v: np.minimum(np.maximum(v, 0), 20.0)
    sig = lambda v: 1 / (1 + np.exp(-v))
    l1 = clip(x @ w['h1'] + w['b1'])
    l2 = clip(l1 @ w['h2'] + w['b2'])
    l3 = clip(l2 @ w['h3'] + w['b3'])

    def lstm(seq, d):
        k = w['bidirectional_rnn/%s/basic_lstm_cell/kernel' % d]
        b = w['bidirectional_rnn/%s/basic_lstm_cell/bias' % d]
        c = np.zeros(k.shape[1] // 4)
        h = np.zeros_like(c)
        out = []
        for xt in seq:
            z = np.concatenate([xt, h]) @ k + b
            i, j, f, o = np.split(z, 4)
            c = c * sig(f + 1.0) + sig(i) * np.tanh(j)
            h = np.tanh(c) * sig(o)
            out.append(h)
        return np.array(out)

    fw = lstm(l3, 'fw')
    bw = lstm(l3[::-1], 'bw')[::-1]
    l5 = clip(np.concatenate([fw, bw], 1) @ w['h5'] + w['b5'])
    return l5 @ w['h6'] + w['b6']


def ad_nerf_windows(logits, n_samples, sr):
    num_frames = int(round(float(n_samples) / sr * 50))
    t_in = np.arange(len(logits)) / 50.0
    t_out = np.arange(num_frames) / 50.0
    rows = np.stack([np.interp(t_out, t_in, logits[:, k]) for k in range(logits.shape[1])], 1)
    rows = np.concatenate([np.zeros((8, 29)), rows, np.zeros((8, 29))])
    return np.array([rows[i:i + 16] for i in range(0, rows.shape[0] - 16, 2)]), num_frames


def run(graph, wav, outdir):
    sr, audio = scipy.io.wavfile.read(wav)
    assert sr == 16000 and audio.ndim == 1, (sr, audio.shape)
    w = read_graph(graph)
    x = input_vector(audio)
    logits = birnn(x, w)
    windows, rows = ad_nerf_windows(logits, len(audio), sr)
    os.makedirs(outdir, exist_ok=True)
    x.astype('<f4').tofile(os.path.join(outdir, 'input.f32'))
    logits.astype('<f4').tofile(os.path.join(outdir, 'logits.f32'))
    windows.astype('<f4').tofile(os.path.join(outdir, 'windows.f32'))
    clip_frac = float(np.mean(np.minimum(np.maximum(x @ w['h1'] + w['b1'], 0), 1e9) > 20))
    # Python's round on a few durations (halves to even), for the row-count rule
    lengths = [176000, 160, 480, 800, 16000 * 3 + 160, 16000 * 3 + 480, 12345]
    meta = dict(samples=int(len(audio)), steps=int(x.shape[0]), rows=int(rows), windows=int(windows.shape[0]),
                x_first=x[0, :5].tolist(), clip_fraction_layer1=clip_frac,
                round_rows={str(n): int(round(n / 16000.0 * 50)) for n in lengths})
    with open(os.path.join(outdir, 'meta.json'), 'w') as f:
        json.dump(meta, f)


if __name__ == '__main__':
    if sys.argv[1] == 'graph':
        make_graph(sys.argv[2])
    elif sys.argv[1] == 'run':
        run(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit('usage: deepspeech_reference.py graph OUT.pb | run GRAPH.pb WAV OUTDIR')
