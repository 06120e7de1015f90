"""PyTorch twin of difftalk's networks, written from the project's own TypeScript definitions.

Sources (each class names the TS function it mirrors):
  src/models/unet.ts      -> UNet           (layout(), resBlock(), spatialTransformer(), unetForward())
  src/models/blocks.ts    -> conv/linear/GroupNorm/LayerNorm/GELU/attention/upsample semantics
  src/models/vq-f4.ts     -> VQ             (vqEncode(), vqDecodeUnquantized())
  src/models/audio-net.ts -> AudioNet, AudioAttNet
  src/models/ldm-net.ts   -> LdmNet
  src/models/presets.ts   -> PRESETS (unet/vq configs of paper/small/tiny)

Layout is NCHW (PyTorch's); parameter names are the TS ParamSpec names (the upstream state_dict keys), so a
checkpoint exported by `Params.toTorch()` loads with `load_state_dict` and the det() weights of the fixtures apply.
Works with torch 1.13 (Debian) and torch 2.x (the GPU machine). No dependency beyond torch and numpy.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------------------------------------------
# configs (src/models/presets.ts)

PAPER_AUDIO = dict(featureDim=29, winSize=16, seqLen=8, dimAud=64, attDim=32)
PAPER_LDM = dict(points=39, hidden=128, dimLdm=64)


def unet_config(**over):
    c = dict(imageSize=64, inChannels=9, outChannels=3, modelChannels=256, attentionResolutions=[8, 4, 2], numResBlocks=2,
             channelMult=[1, 2, 3, 4], numHeadChannels=32, transformerDepth=1, contextDim=PAPER_AUDIO['dimAud'] + PAPER_LDM['dimLdm'])
    c.update(over)
    return c


VQ_F4 = dict(resolution=256, inChannels=3, outCh=3, ch=128, chMult=[1, 2, 4], numResBlocks=2, zChannels=3, embedDim=3, nEmbed=8192)

PRESETS = {
    'paper': dict(imageSize=256, vq=VQ_F4, unet=unet_config()),
    'small': dict(imageSize=128, vq=dict(VQ_F4, resolution=128, ch=64, numResBlocks=1, nEmbed=1024),
                  unet=unet_config(imageSize=32, modelChannels=64, channelMult=[1, 2, 3], attentionResolutions=[2, 4], numResBlocks=1)),
    'tiny': dict(imageSize=32, vq=dict(VQ_F4, resolution=32, ch=32, chMult=[1, 1, 2], numResBlocks=1, nEmbed=256),
                 unet=unet_config(imageSize=8, modelChannels=32, channelMult=[1, 2], attentionResolutions=[2], numResBlocks=1, numHeadChannels=8)),
}

# Modules are built on this device ('meta' lists names and shapes of the 530 M-parameter paper UNet without memory).
_DEVICE = {'d': None}


def build_on(device):
    _DEVICE['d'] = device


def _conv(cin, cout, k, bias=True):
    return nn.Conv2d(cin, cout, k, bias=bias, device=_DEVICE['d'])


def _conv1d(cin, cout, k):
    return nn.Conv1d(cin, cout, k, device=_DEVICE['d'])


def _linear(cin, cout, bias=True):
    return nn.Linear(cin, cout, bias=bias, device=_DEVICE['d'])


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the autocast dtype (CUDA autocast's policy for group_norm; torch 1.13's
    CPU autocast would otherwise mix a bf16 input with fp32 weights and fail)."""

    def forward(self, x):
        with torch.autocast(device_type=x.device.type, enabled=False):
            return F.group_norm(x.float(), self.num_groups, self.weight, self.bias, self.eps)


class LayerNorm32(nn.LayerNorm):
    def forward(self, x):
        with torch.autocast(device_type=x.device.type, enabled=False):
            return F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps)


def _gn(ch, eps):
    return GroupNorm32(32, ch, eps=eps, device=_DEVICE['d'])


def _ln(ch):
    return LayerNorm32(ch, eps=1e-5, device=_DEVICE['d'])


class Slot(nn.Module):
    """A parameter-free placeholder, so Sequential indices (and thus names) match the TS ParamSpec names."""

    def forward(self, x):  # pragma: no cover - never called
        raise RuntimeError('placeholder')


def _seq(**idx):
    """nn.Sequential whose children sit at the given integer indices (others are parameter-free slots)."""
    n = max(int(k[1:]) for k in idx) + 1
    mods = [idx.get(f'i{i}', Slot()) for i in range(n)]
    return nn.Sequential(*mods)


# ---------------------------------------------------------------------------------------------------------------
# blocks.ts ops


def attention(q, k, v, heads):
    """blocks.ts attention(): q [B,N,h·d], k/v [B,M,h·d]; softmax(q·kᵀ/√d)·v per head."""
    b, n, inner = q.shape
    m = k.shape[1]
    d = inner // heads
    qh = q.reshape(b, n, heads, d).transpose(1, 2)
    kh = k.reshape(b, m, heads, d).transpose(1, 2)
    vh = v.reshape(b, m, heads, d).transpose(1, 2)
    attn = torch.softmax(torch.matmul(qh, kh.transpose(-1, -2)) * (1 / math.sqrt(d)), dim=-1)
    return torch.matmul(attn, vh).transpose(1, 2).reshape(b, n, inner)


def upsample2x(x):
    return F.interpolate(x, scale_factor=2, mode='nearest')


def timestep_embedding(t, dim, max_period=10000):
    """unet.ts timestepEmbedding(): [cos(t·f), sin(t·f)], f_i = exp(−ln(maxPeriod)·i/half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float().reshape(-1, 1) * freqs.reshape(1, -1)
    emb = torch.cat([torch.cos(args), torch.sin(args)], 1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], 1)
    return emb


# ---------------------------------------------------------------------------------------------------------------
# unet.ts


class ResBlock(nn.Module):
    def __init__(self, cin, cout, time_dim):
        super().__init__()
        self.in_layers = _seq(i0=_gn(cin, 1e-5), i2=_conv(cin, cout, 3))
        self.emb_layers = _seq(i1=_linear(time_dim, cout))
        self.out_layers = _seq(i0=_gn(cout, 1e-5), i3=_conv(cout, cout, 3))
        self.skip_connection = _conv(cin, cout, 1) if cin != cout else None
        self.cout = cout

    def forward(self, x, emb, ctx):
        h = self.in_layers[2](F.silu(self.in_layers[0](x)))
        h = h + self.emb_layers[1](F.silu(emb)).reshape(-1, self.cout, 1, 1)
        h = self.out_layers[3](F.silu(self.out_layers[0](h)))
        skip = x if self.skip_connection is None else self.skip_connection(x)
        return skip + h


class CrossAttention(nn.Module):
    def __init__(self, inner, ctx_dim, heads):
        super().__init__()
        self.heads = heads
        self.to_q = _linear(inner, inner, bias=False)
        self.to_k = _linear(ctx_dim, inner, bias=False)
        self.to_v = _linear(ctx_dim, inner, bias=False)
        self.to_out = _seq(i0=_linear(inner, inner))

    def forward(self, x, ctx):
        return self.to_out[0](attention(self.to_q(x), self.to_k(ctx), self.to_v(ctx), self.heads))


class GEGLU(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.proj = _linear(inner, inner * 8)

    def forward(self, x):
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.net = _seq(i0=GEGLU(inner), i2=_linear(inner * 4, inner))

    def forward(self, x):
        return self.net[2](self.net[0](x))


class TransformerBlock(nn.Module):
    def __init__(self, inner, ctx_dim, heads):
        super().__init__()
        self.attn1 = CrossAttention(inner, inner, heads)
        self.ff = FeedForward(inner)
        self.attn2 = CrossAttention(inner, ctx_dim, heads)
        self.norm1, self.norm2, self.norm3 = _ln(inner), _ln(inner), _ln(inner)

    def forward(self, s, ctx):
        n1 = self.norm1(s)
        s = self.attn1(n1, n1) + s
        s = self.attn2(self.norm2(s), ctx) + s
        return self.ff(self.norm3(s)) + s


class SpatialTransformer(nn.Module):
    def __init__(self, ch, heads, depth, ctx_dim):
        super().__init__()
        self.norm = _gn(ch, 1e-6)
        self.proj_in = _conv(ch, ch, 1)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(ch, ctx_dim, heads) for _ in range(depth)])
        self.proj_out = _conv(ch, ch, 1)

    def forward(self, x, emb, ctx):
        b, c, hh, ww = x.shape
        h = self.proj_in(self.norm(x))
        s = h.reshape(b, c, hh * ww).transpose(1, 2)
        for blk in self.transformer_blocks:
            s = blk(s, ctx)
        h = self.proj_out(s.transpose(1, 2).reshape(b, c, hh, ww))
        return h + x


class Down(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.op = _conv(ch, ch, 3)

    def forward(self, x, emb, ctx):
        return F.conv2d(x, self.op.weight, self.op.bias, stride=2, padding=1)


class Up(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = _conv(ch, ch, 3)

    def forward(self, x, emb, ctx):
        return self.conv(upsample2x(x))


class ConvIn(nn.Conv2d):
    def forward(self, x, emb=None, ctx=None):
        return super().forward(x)


def _pad_convs(module):
    """Every 3×3 convolution of the TS model pads 1 (blocks.ts conv2d default (k−1)/2)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
            m.padding = (1, 1)


class UNet(nn.Module):
    """unet.ts: eps = UNet(x, t, context); x (B, inChannels, H, W), t (B,), context (B, tokens, contextDim)."""

    def __init__(self, c):
        super().__init__()
        if c['modelChannels'] % 32:
            raise ValueError('modelChannels must be a multiple of 32')
        self.c = c
        mc = c['modelChannels']
        time_dim = mc * 4

        def st(ch):
            if ch % c['numHeadChannels']:
                raise ValueError(f"channels {ch} not divisible by numHeadChannels")
            return SpatialTransformer(ch, ch // c['numHeadChannels'], c['transformerDepth'], c['contextDim'])

        self.time_embed = _seq(i0=_linear(mc, time_dim), i2=_linear(time_dim, time_dim))
        first = ConvIn(c['inChannels'], mc, 3, device=_DEVICE['d'])
        inp = [nn.ModuleList([first])]
        chans = [mc]
        ch, ds = mc, 1
        for level, mult in enumerate(c['channelMult']):
            for _ in range(c['numResBlocks']):
                blk = [ResBlock(ch, mult * mc, time_dim)]
                ch = mult * mc
                if ds in c['attentionResolutions']:
                    blk.append(st(ch))
                inp.append(nn.ModuleList(blk))
                chans.append(ch)
            if level != len(c['channelMult']) - 1:
                inp.append(nn.ModuleList([Down(ch)]))
                chans.append(ch)
                ds *= 2
        self.input_blocks = nn.ModuleList(inp)
        self.middle_block = nn.ModuleList([ResBlock(ch, ch, time_dim), st(ch), ResBlock(ch, ch, time_dim)])
        out = []
        for level, mult in reversed(list(enumerate(c['channelMult']))):
            for r in range(c['numResBlocks'] + 1):
                ich = chans.pop()
                blk = [ResBlock(ch + ich, mc * mult, time_dim)]
                ch = mc * mult
                if ds in c['attentionResolutions']:
                    blk.append(st(ch))
                if level and r == c['numResBlocks']:
                    blk.append(Up(ch))
                    ds //= 2
                out.append(nn.ModuleList(blk))
        self.output_blocks = nn.ModuleList(out)
        self.out = _seq(i0=_gn(ch, 1e-5), i2=_conv(mc, c['outChannels'], 3))
        _pad_convs(self)

    def forward(self, x, t, context):
        emb = self.time_embed[2](F.silu(self.time_embed[0](timestep_embedding(t, self.c['modelChannels']))))
        hs = []
        h = x
        for blk in self.input_blocks:
            for layer in blk:
                h = layer(h, emb, context)
            hs.append(h)
        for layer in self.middle_block:
            h = layer(h, emb, context)
        for blk in self.output_blocks:
            h = torch.cat([h, hs.pop()], 1)
            for layer in blk:
                h = layer(h, emb, context)
        return self.out[2](F.silu(self.out[0](h)))


# ---------------------------------------------------------------------------------------------------------------
# vq-f4.ts


class VqResnet(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1 = _gn(cin, 1e-6)
        self.conv1 = _conv(cin, cout, 3)
        self.norm2 = _gn(cout, 1e-6)
        self.conv2 = _conv(cout, cout, 3)
        self.nin_shortcut = _conv(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class VqAttn(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.norm = _gn(ch, 1e-6)
        self.q, self.k, self.v, self.proj_out = (_conv(ch, ch, 1) for _ in range(4))

    def forward(self, x):
        b, c, h, w = x.shape
        hn = self.norm(x)
        flat = lambda t: t.reshape(b, c, h * w).transpose(1, 2)  # noqa: E731
        o = attention(flat(self.q(hn)), flat(self.k(hn)), flat(self.v(hn)), 1)
        return x + self.proj_out(o.transpose(1, 2).reshape(b, c, h, w))


class VqMid(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.block_1 = VqResnet(ch, ch)
        self.attn_1 = VqAttn(ch)
        self.block_2 = VqResnet(ch, ch)

    def forward(self, h):
        return self.block_2(self.attn_1(self.block_1(h)))


class VqConvHolder(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = _conv(ch, ch, 3)


class VqLevel(nn.Module):
    def __init__(self, blocks, sample_name=None, ch=0):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        if sample_name:
            setattr(self, sample_name, VqConvHolder(ch))


class VqEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv_in = _conv(c['inChannels'], c['ch'], 3)
        in_mult = [1] + c['chMult']
        levels = []
        block_in = c['ch']
        for i, m in enumerate(c['chMult']):
            block_in = c['ch'] * in_mult[i]
            blocks = []
            for _ in range(c['numResBlocks']):
                blocks.append(VqResnet(block_in, c['ch'] * m))
                block_in = c['ch'] * m
            levels.append(VqLevel(blocks, 'downsample' if i != len(c['chMult']) - 1 else None, block_in))
        self.down = nn.ModuleList(levels)
        self.mid = VqMid(block_in)
        self.norm_out = _gn(block_in, 1e-6)
        self.conv_out = _conv(block_in, c['zChannels'], 3)

    def forward(self, x):
        h = self.conv_in(x)
        for lvl in self.down:
            for b in lvl.block:
                h = b(h)
            if hasattr(lvl, 'downsample'):
                conv = lvl.downsample.conv
                h = F.conv2d(F.pad(h, (0, 1, 0, 1)), conv.weight, conv.bias, stride=2)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VqDecoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        block_in = c['ch'] * c['chMult'][-1]
        self.conv_in = _conv(c['zChannels'], block_in, 3)
        self.mid = VqMid(block_in)
        levels = [None] * len(c['chMult'])
        for i in reversed(range(len(c['chMult']))):
            blocks = []
            for _ in range(c['numResBlocks'] + 1):
                blocks.append(VqResnet(block_in, c['ch'] * c['chMult'][i]))
                block_in = c['ch'] * c['chMult'][i]
            levels[i] = VqLevel(blocks, 'upsample' if i != 0 else None, block_in)
        self.up = nn.ModuleList(levels)
        self.norm_out = _gn(block_in, 1e-6)
        self.conv_out = _conv(block_in, c['outCh'], 3)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for lvl in reversed(self.up):
            for b in lvl.block:
                h = b(h)
            if hasattr(lvl, 'upsample'):
                h = lvl.upsample.conv(upsample2x(h))
        return self.conv_out(F.silu(self.norm_out(h)))


class VQ(nn.Module):
    """vq-f4.ts: encode = quant_conv(encoder(x)); decode_unquantized = decoder(post_quant_conv(z))."""

    def __init__(self, c):
        super().__init__()
        self.encoder = VqEncoder(c)
        self.decoder = VqDecoder(c)
        self.quant_conv = _conv(c['zChannels'], c['embedDim'], 1)
        self.post_quant_conv = _conv(c['embedDim'], c['zChannels'], 1)
        self.quantize = nn.Module()
        self.quantize.embedding = nn.Embedding(c['nEmbed'], c['embedDim'], device=_DEVICE['d'])
        _pad_convs(self)
        # the downsample convs pad asymmetrically in forward (0,1,0,1), not in the module
        for lvl in self.encoder.down:
            if hasattr(lvl, 'downsample'):
                lvl.downsample.conv.padding = (0, 0)

    def encode(self, x):
        return self.quant_conv(self.encoder(x))

    def decode_unquantized(self, z):
        return self.decoder(self.post_quant_conv(z))


# ---------------------------------------------------------------------------------------------------------------
# audio-net.ts, ldm-net.ts


def _lrelu(x):
    return F.leaky_relu(x, 0.02)


class AudioNet(nn.Module):
    """(N, winSize, featureDim) → (N, dimAud): four Conv1d k3 s2 p1 + LeakyReLU(0.02), flatten (C, L), fc 64, fc dimAud."""

    def __init__(self, c=PAPER_AUDIO):
        super().__init__()
        ch = [c['featureDim'], 32, 32, 64, c['dimAud']]
        self.encoder_conv = _seq(**{f'i{2 * i}': _conv1d(ch[i], ch[i + 1], 3) for i in range(4)})
        length = c['winSize']
        for _ in range(4):
            length = -(-length // 2)
        self.encoder_fc1 = _seq(i0=_linear(c['dimAud'] * length, 64), i2=_linear(64, c['dimAud']))

    def forward(self, x):
        h = x.transpose(1, 2)
        for i in range(4):
            conv = self.encoder_conv[2 * i]
            h = _lrelu(F.conv1d(h, conv.weight, conv.bias, stride=2, padding=1))
        f = _lrelu(self.encoder_fc1[0](h.reshape(h.shape[0], -1)))
        return self.encoder_fc1[2](f)


class AudioAttNet(nn.Module):
    """(B, seqLen, dimAud) → (B, dimAud): softmax weights from the first attDim channels, weighted sum over frames."""

    def __init__(self, c=PAPER_AUDIO):
        super().__init__()
        ch = [c['attDim'], 16, 8, 4, 2, 1]
        self.att_dim = c['attDim']
        self.attentionConvNet = _seq(**{f'i{2 * i}': _conv1d(ch[i], ch[i + 1], 3) for i in range(5)})
        self.attentionNet = _seq(i0=_linear(c['seqLen'], c['seqLen']))

    def forward(self, x):
        b, seq, _ = x.shape
        y = x[:, :, : self.att_dim].transpose(1, 2)
        for i in range(5):
            conv = self.attentionConvNet[2 * i]
            y = _lrelu(F.conv1d(y, conv.weight, conv.bias, padding=1))
        w = torch.softmax(self.attentionNet[0](y.reshape(b, seq)), dim=-1).reshape(b, seq, 1)
        return (w * x).sum(1)


class LdmNet(nn.Module):
    def __init__(self, c=PAPER_LDM):
        super().__init__()
        self.encoder_fc1 = _seq(i0=_linear(c['points'] * 2, c['hidden']), i2=_linear(c['hidden'], 64), i4=_linear(64, c['dimLdm']))

    def forward(self, x):
        h = _lrelu(self.encoder_fc1[0](x.reshape(x.shape[0], -1)))
        h = _lrelu(self.encoder_fc1[2](h))
        return self.encoder_fc1[4](h)


class DiffTalk(nn.Module):
    """difftalk.ts DifftalkModel: context = concat(audio, landmarks) as one token; eps = UNet(concat(zt, zMasked, zRef))."""

    def __init__(self, unet_cfg, audio=PAPER_AUDIO, ldm=PAPER_LDM):
        super().__init__()
        self.unet = UNet(unet_cfg)
        self.audio_net = AudioNet(audio)
        self.audio_att_net = AudioAttNet(audio)
        self.ldm_net = LdmNet(ldm)
        self.audio = audio

    def context(self, audio, landmarks):
        b, seq, win, dim = audio.shape
        e = self.audio_net(audio.reshape(b * seq, win, dim)).reshape(b, seq, -1)
        return torch.cat([self.audio_att_net(e), self.ldm_net(landmarks)], 1).unsqueeze(1)

    def eps(self, zt, z_masked, z_ref, t, context):
        return self.unet(torch.cat([zt, z_masked, z_ref], 1), t, context)


# ---------------------------------------------------------------------------------------------------------------
# the fixtures' deterministic weights and inputs (../shared/data/fixtures/README.md)


def det(name, shape):
    n = int(np.prod(shape)) if len(shape) else 1
    phase = (sum(ord(ch) for ch in name) % 1000) / 1000 * 2 * math.pi
    base = np.sin(0.618034 * np.arange(n, dtype=np.float64) + phase)
    if name.endswith('num_batches_tracked'):
        return np.zeros(shape, np.int64)
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
    return v.reshape(shape).astype(np.float32)


def detinput(shape, seed, scale=1.0, offset=0.0):
    n = int(np.prod(shape))
    return (offset + scale * np.sin(0.37 * np.arange(n, dtype=np.float64) + seed)).astype(np.float32).reshape(shape)


def load_det(module, prefix=''):
    """Set every parameter of `module` to det(prefix + name, shape)."""
    sd = {k: torch.from_numpy(det(prefix + k, list(v.shape))) for k, v in module.state_dict().items()}
    module.load_state_dict(sd)
    return module
