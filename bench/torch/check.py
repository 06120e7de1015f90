"""Check the PyTorch twin (twin.py) against ../shared/data/fixtures/expected.json on CPU, float32.

Usage: python3 bench/torch/check.py FIXTURES_DIR   → one JSON object on stdout:
  {"torch": version, "unet": {...}, "vq_z": {...}, "vq_recon": {...}, "audionet": ..., "audioatt": ..., "ldmnet": ...,
   "names": {"unet_tiny": [missing, extra], "unet_paper": [...], "vq": [...], "encoders": [...]}, "paper_params": count}
Each numeric entry: max |twin − expected| over the full output (or first8/last8 where only those are stored), the
largest |expected|, and sum / abs_sum of the twin's output next to the fixture's.
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twin  # noqa: E402

torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False


def cmp(out, ref, full_key=None):
    y = out.detach().double().numpy().ravel()
    r = {'shape_ok': list(out.shape) == ref['shape'], 'sum': float(y.sum()), 'ref_sum': ref['sum'], 'abs_sum': float(np.abs(y).sum()),
         'ref_abs_sum': ref['abs_sum']}
    if full_key is not None:
        e = np.asarray(full_key, dtype=np.float64)
        r['max_abs_err'] = float(np.abs(y - e).max())
        r['max_ref'] = float(np.abs(e).max())
    else:
        e = np.asarray(ref['first8'] + ref['last8'], dtype=np.float64)
        got = np.concatenate([y[:8], y[-8:]])
        r['max_abs_err'] = float(np.abs(got - e).max())
        r['max_ref'] = float(np.abs(e).max())
    return r


def name_diff(module, expected, ignore=()):
    got = {k: list(v.shape) for k, v in module.state_dict().items() if not any(k.startswith(p) for p in ignore)}
    exp = {k: list(s) for k, s in expected}
    missing = sorted(set(exp) - set(got))
    extra = sorted(set(got) - set(exp))
    shape = sorted(k for k in set(exp) & set(got) if exp[k] != got[k])
    return {'missing': missing, 'extra': extra, 'shape_mismatch': shape}


def main():
    fx = json.load(open(os.path.join(sys.argv[1], 'expected.json')))
    res = {'torch': torch.__version__}
    torch.set_grad_enabled(False)

    # UNet, tiny fixture config
    u = fx['unet']
    c = u['config']
    cfg = twin.unet_config(imageSize=c['image_size'], inChannels=c['in_channels'], outChannels=c['out_channels'], modelChannels=c['model_channels'],
                           attentionResolutions=c['attention_resolutions'], numResBlocks=c['num_res_blocks'], channelMult=c['channel_mult'],
                           numHeadChannels=c['num_head_channels'], transformerDepth=c['transformer_depth'], contextDim=c['context_dim'])
    net = twin.load_det(twin.UNet(cfg).eval())
    res['names'] = {'unet_tiny': name_diff(net, u['params'])}
    x = torch.from_numpy(twin.detinput((1, 9, 16, 16), 0.7))
    ctx = torch.from_numpy(twin.detinput((1, 1, 128), 2.3))
    res['unet'] = cmp(net(x, torch.tensor(u['t']), ctx), u['out'], u['out_full'])

    # the paper UNet on the meta device: names and shapes only
    twin.build_on('meta')
    paper = twin.UNet(twin.PRESETS['paper']['unet'])
    twin.build_on(None)
    res['names']['unet_paper'] = name_diff(paper, u['paper_config_params'])
    res['paper_params'] = int(sum(p.numel() for p in paper.parameters()))

    # VQ, tiny fixture config (no codebook lookup)
    v = fx['vq_f4']
    vc = v['config']
    vcfg = dict(twin.VQ_F4, resolution=vc['resolution'], inChannels=vc['in_channels'], outCh=vc['out_ch'], ch=vc['ch'], chMult=vc['ch_mult'],
                numResBlocks=vc['num_res_blocks'], zChannels=vc['z_channels'], embedDim=vc['z_channels'], nEmbed=16)
    vq = twin.load_det(twin.VQ(vcfg).eval())
    res['names']['vq'] = name_diff(vq, v['params'], ignore=('quantize.',))
    z = vq.encode(torch.from_numpy(twin.detinput((1, 3, 32, 32), 0.2)))
    res['vq_z'] = cmp(z, v['z'], v['z_full'])
    res['vq_recon'] = cmp(vq.decode_unquantized(z), v['recon'])

    # encoders
    d = fx['difftalk_encoders']
    an = twin.load_det(twin.AudioNet(), 'audio.')
    aa = twin.load_det(twin.AudioAttNet(), 'audio_att.')
    ln = twin.load_det(twin.LdmNet(), 'ldm.')
    got = [('audio.' + k, list(t.shape)) for k, t in an.state_dict().items()]
    got += [('audio_att.' + k, list(t.shape)) for k, t in aa.state_dict().items()]
    got += [('ldm.' + k, list(t.shape)) for k, t in ln.state_dict().items()]
    exp = {k: list(s) for k, s in d['params']}
    res['names']['encoders'] = {'missing': sorted(set(exp) - {k for k, _ in got}), 'extra': sorted({k for k, _ in got} - set(exp)),
                                'shape_mismatch': sorted(k for k, s in got if k in exp and exp[k] != s)}
    audio = torch.from_numpy(twin.detinput((2, 8, 16, 29), 0.3))
    e = an(audio.reshape(16, 16, 29))
    res['audionet'] = cmp(e, d['audionet_out'])
    res['audioatt'] = cmp(aa(e.reshape(2, 8, 64)), d['audioatt_out'], d['audioatt_out_full'])
    res['ldmnet'] = cmp(ln(torch.from_numpy(twin.detinput((2, 39, 2), 1.1, 100, 128))), d['ldmnet_out'], d['ldmnet_out_full'])
    json.dump(res, sys.stdout)


if __name__ == '__main__':
    main()
