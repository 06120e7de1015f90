"""Independent PyTorch check of a checkpoint written by `difftalk export checkpoint` (tests/export/checkpoint.test.ts).

Usage: checkpoint_reference.py <model.ckpt> <expected.json> <run model.safetensors> <first-stage model.safetensors> <out.json>

1. torch.load(weights_only=True) opens the file.
2. The state_dict's names and shapes equal the reference DiffTalk LatentDiffusion's, built here from the fixtures'
   parameter lists (expected.json: unet.params, vq_f4.params, difftalk_encoders.params) and the rules of the
   reference code: DDPM.register_schedule's 12 persistent buffers, DiffusionWrapper `model.diffusion_model.*`,
   LitEma (`model_ema.decay`, `model_ema.num_updates`, one buffer per UNet parameter named with its dots removed),
   `first_stage_model.*` (VQModelInterface: the fixture list + `quantize.embedding.weight`), and the encoders
   `cond_stage_model_for_audio` / `_audio_smooth` / `_ldm`. Strict: no missing, no unexpected.
3. Values equal the run's safetensors bit for bit (read here with numpy, not difftalk's reader).
4. The schedule buffers equal LDM's make_beta_schedule('linear') + register_schedule recomputed here (float64 → float32).
5. Reference modules written here from the DiffTalk/LDM sources (openaimodel UNetModel with a spatial transformer,
   AudioNet, AudioAttNet, LdmNet) load their parts with load_state_dict(strict=True) and run on the fixtures' inputs;
   their outputs are written to out.json (for comparison with difftalk) and compared with the fixtures' PyTorch
   outputs (which validates these modules: same weights as the fixtures when the run holds det() weights).
"""
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] == "F32", (k, v["dtype"])
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[8 + n + a : 8 + n + b], dtype="<f4").reshape(v["shape"])
    return out


def detinput(shape, seed, scale=1.0, offset=0.0):
    k = np.arange(int(np.prod(shape)), dtype=np.float64)
    return torch.from_numpy((offset + scale * np.sin(0.37 * k + seed)).astype(np.float32).reshape(shape))


SCHEDULE = [
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
    "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
]


def schedule(n=1000, start=0.0015, end=0.0195):
    betas = (torch.linspace(start**0.5, end**0.5, n, dtype=torch.float64) ** 2).numpy()
    alphas = 1.0 - betas
    ac = np.cumprod(alphas, axis=0)
    prev = np.append(1.0, ac[:-1])
    pv = betas * (1.0 - prev) / (1.0 - ac)
    vals = [betas, ac, prev, np.sqrt(ac), np.sqrt(1.0 - ac), np.log(1.0 - ac), np.sqrt(1.0 / ac), np.sqrt(1.0 / ac - 1),
            pv, np.log(np.maximum(pv, 1e-20)), betas * np.sqrt(prev) / (1.0 - ac), (1.0 - prev) * np.sqrt(alphas) / (1.0 - ac)]
    return {k: v.astype(np.float32) for k, v in zip(SCHEDULE, vals)}


# ----- reference modules (openaimodel / attention.py / DiffTalk encoders), names as upstream -----

def gn(ch, eps=1e-5):
    return nn.GroupNorm(32, ch, eps=eps)


def tstep_embedding(t, dim, max_period=10000):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, ch, emb, out):
        super().__init__()
        self.in_layers = nn.Sequential(gn(ch), nn.SiLU(), nn.Conv2d(ch, out, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb, out))
        self.out_layers = nn.Sequential(gn(out), nn.SiLU(), nn.Dropout(0), nn.Conv2d(out, out, 3, padding=1))
        self.skip_connection = nn.Identity() if ch == out else nn.Conv2d(ch, out, 1)

    def forward(self, x, emb):
        h = self.in_layers(x) + self.emb_layers(emb)[..., None, None]
        return self.skip_connection(x) + self.out_layers(h)


class CrossAttention(nn.Module):
    def __init__(self, qdim, cdim, heads, dhead):
        super().__init__()
        inner = heads * dhead
        self.heads, self.scale = heads, dhead**-0.5
        self.to_q = nn.Linear(qdim, inner, bias=False)
        self.to_k = nn.Linear(cdim, inner, bias=False)
        self.to_v = nn.Linear(cdim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, qdim), nn.Dropout(0))

    def forward(self, x, context=None):
        context = x if context is None else context
        h = self.heads
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
        split = lambda t: t.reshape(t.shape[0], t.shape[1], h, -1).permute(0, 2, 1, 3).reshape(t.shape[0] * h, t.shape[1], -1)
        q, k, v = split(q), split(k), split(v)
        attn = (torch.einsum("bid,bjd->bij", q, k) * self.scale).softmax(dim=-1)
        out = torch.einsum("bij,bjd->bid", attn, v)
        b = x.shape[0]
        out = out.reshape(b, h, out.shape[1], -1).permute(0, 2, 1, 3).reshape(b, out.shape[1], -1)
        return self.to_out(out)


class GEGLU(nn.Module):
    def __init__(self, din, dout):
        super().__init__()
        self.proj = nn.Linear(din, dout * 2)

    def forward(self, x):
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * 4), nn.Dropout(0), nn.Linear(dim * 4, dim))

    def forward(self, x):
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, heads, dhead, cdim):
        super().__init__()
        self.attn1 = CrossAttention(dim, dim, heads, dhead)
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(dim, cdim, heads, dhead)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x, context):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    def __init__(self, ch, heads, dhead, depth, cdim):
        super().__init__()
        inner = heads * dhead
        self.norm = gn(ch, eps=1e-6)
        self.proj_in = nn.Conv2d(ch, inner, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(inner, heads, dhead, cdim) for _ in range(depth)])
        self.proj_out = nn.Conv2d(inner, ch, 1)

    def forward(self, x, context):
        b, c, hh, ww = x.shape
        h = self.proj_in(self.norm(x))
        h = h.permute(0, 2, 3, 1).reshape(b, hh * ww, -1)
        for blk in self.transformer_blocks:
            h = blk(h, context)
        h = h.reshape(b, hh, ww, -1).permute(0, 3, 1, 2)
        return self.proj_out(h) + x


class Downsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.op = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Seq(nn.Sequential):
    def forward(self, x, emb, context):
        for m in self:
            x = m(x, emb) if isinstance(m, ResBlock) else m(x, context) if isinstance(m, SpatialTransformer) else m(x)
        return x


class UNetModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        mc, emb = c["model_channels"], c["model_channels"] * 4
        self.mc = mc
        st = lambda ch: SpatialTransformer(ch, ch // c["num_head_channels"], c["num_head_channels"], c["transformer_depth"], c["context_dim"])
        self.time_embed = nn.Sequential(nn.Linear(mc, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.input_blocks = nn.ModuleList([Seq(nn.Conv2d(c["in_channels"], mc, 3, padding=1))])
        chans, ch, ds = [mc], mc, 1
        for level, mult in enumerate(c["channel_mult"]):
            for _ in range(c["num_res_blocks"]):
                layers = [ResBlock(ch, emb, mult * mc)]
                ch = mult * mc
                if ds in c["attention_resolutions"]:
                    layers.append(st(ch))
                self.input_blocks.append(Seq(*layers))
                chans.append(ch)
            if level != len(c["channel_mult"]) - 1:
                self.input_blocks.append(Seq(Downsample(ch)))
                chans.append(ch)
                ds *= 2
        self.middle_block = Seq(ResBlock(ch, emb, ch), st(ch), ResBlock(ch, emb, ch))
        self.output_blocks = nn.ModuleList([])
        for level, mult in list(enumerate(c["channel_mult"]))[::-1]:
            for i in range(c["num_res_blocks"] + 1):
                layers = [ResBlock(ch + chans.pop(), emb, mc * mult)]
                ch = mc * mult
                if ds in c["attention_resolutions"]:
                    layers.append(st(ch))
                if level and i == c["num_res_blocks"]:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(Seq(*layers))
        self.out = nn.Sequential(gn(ch), nn.SiLU(), nn.Conv2d(mc, c["out_channels"], 3, padding=1))

    def forward(self, x, t, context):
        emb = self.time_embed(tstep_embedding(t, self.mc))
        hs, h = [], x
        for m in self.input_blocks:
            h = m(h, emb, context)
            hs.append(h)
        h = self.middle_block(h, emb, context)
        for m in self.output_blocks:
            h = m(torch.cat([h, hs.pop()], dim=1), emb, context)
        return self.out(h)


def lrelu():
    return nn.LeakyReLU(0.02, True)


class AudioNet(nn.Module):
    def __init__(self, dim_aud=64):
        super().__init__()
        self.encoder_conv = nn.Sequential(nn.Conv1d(29, 32, 3, 2, 1), lrelu(), nn.Conv1d(32, 32, 3, 2, 1), lrelu(),
                                          nn.Conv1d(32, 64, 3, 2, 1), lrelu(), nn.Conv1d(64, 64, 3, 2, 1), lrelu())
        self.encoder_fc1 = nn.Sequential(nn.Linear(64, 64), lrelu(), nn.Linear(64, dim_aud))

    def forward(self, x):
        x = x[:, 0:16, :].permute(0, 2, 1)
        return self.encoder_fc1(self.encoder_conv(x).squeeze(-1))


class AudioAttNet(nn.Module):
    def __init__(self, dim_aud=32, seq_len=8):
        super().__init__()
        self.dim_aud = dim_aud
        ch = [dim_aud, 16, 8, 4, 2, 1]
        layers = []
        for i in range(5):
            layers += [nn.Conv1d(ch[i], ch[i + 1], 3, 1, 1), lrelu()]
        self.attentionConvNet = nn.Sequential(*layers)
        self.attentionNet = nn.Sequential(nn.Linear(seq_len, seq_len), nn.Softmax(dim=1))

    def forward(self, x):
        y = x[..., : self.dim_aud].permute(0, 2, 1)
        y = self.attentionConvNet(y).view(x.shape[0], -1)
        w = self.attentionNet(y).unsqueeze(-1)
        return torch.sum(w * x, dim=1)


class LdmNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder_fc1 = nn.Sequential(nn.Linear(78, 128), lrelu(), nn.Linear(128, 64), lrelu(), nn.Linear(64, 64))

    def forward(self, x):
        return self.encoder_fc1(x.reshape(x.shape[0], -1))


def sub(sd, prefix):
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def main():
    ckpt, expected_path, run_st, fs_st, out_path = sys.argv[1:6]
    exp = json.load(open(expected_path))
    d = torch.load(ckpt, map_location="cpu", weights_only=True)
    sd = d["state_dict"]
    res = {"torch": torch.__version__, "top_keys": sorted(d.keys()), "global_step": d.get("global_step")}

    # 2. names and shapes
    want = {k: [1000] for k in SCHEDULE}
    unet = exp["unet"]["params"]
    for n, s in unet:
        want["model.diffusion_model." + n] = s
    want["model_ema.decay"] = []
    want["model_ema.num_updates"] = []
    for n, s in unet:
        want["model_ema.diffusion_model" + n.replace(".", "")] = s
    vq_cfg = exp["vq_f4"]["config"]
    for n, s in exp["vq_f4"]["params"]:
        want["first_stage_model." + n] = s
    want["first_stage_model.quantize.embedding.weight"] = None  # n_embed × embed_dim: not in the fixture list (no codebook there)
    ref = {"audio.": "cond_stage_model_for_audio.", "audio_att.": "cond_stage_model_for_audio_smooth.", "ldm.": "cond_stage_model_for_ldm."}
    for n, s in exp["difftalk_encoders"]["params"]:
        p = next(p for p in ref if n.startswith(p))
        want[ref[p] + n[len(p):]] = s
    got = {k: list(v.shape) for k, v in sd.items()}
    res["missing"] = sorted(set(want) - set(got))
    res["unexpected"] = sorted(set(got) - set(want))
    res["shape_mismatch"] = sorted(k for k in want if k in got and want[k] is not None and want[k] != got[k])
    emb = got.get("first_stage_model.quantize.embedding.weight")
    res["codebook_shape"] = emb
    res["count"] = len(sd)
    res["order_first"] = list(sd.keys())[:3]

    # 3. values vs the run's safetensors (names mapped by the reference rules above)
    run = read_safetensors(run_st)
    fs = read_safetensors(fs_st)
    differ, compared = [], 0
    ema_eq_model = True
    for k, v in sd.items():
        if k.startswith("first_stage_model."):
            src = fs[k[len("first_stage_model."):]]
        elif k.startswith("model.diffusion_model."):
            src = run[k]
        elif k.startswith("model_ema.diffusion_model"):
            src = None
            for n, _ in unet:
                if "model_ema.diffusion_model" + n.replace(".", "") == k:
                    src = run["model_ema.diffusion_model." + n]
        elif k.startswith("cond_stage_model_for_audio_smooth."):
            src = run["audio_att_net." + k[len("cond_stage_model_for_audio_smooth."):]]
        elif k.startswith("cond_stage_model_for_audio."):
            src = run["audio_net." + k[len("cond_stage_model_for_audio."):]]
        elif k.startswith("cond_stage_model_for_ldm."):
            src = run["ldm_net." + k[len("cond_stage_model_for_ldm."):]]
        else:
            continue
        compared += 1
        a = v.numpy()
        if src is None or a.dtype != np.float32 or a.shape != src.shape or not np.array_equal(a.view(np.uint32), src.view(np.uint32)):
            differ.append(k)
    res["values_compared"] = compared
    res["values_differ"] = differ[:10]
    res["ema_decay"] = float(sd["model_ema.decay"])
    res["ema_num_updates"] = int(sd["model_ema.num_updates"])
    res["ema_num_updates_dtype"] = str(sd["model_ema.num_updates"].dtype)

    # 4. schedule
    sch = schedule()
    res["schedule_max_rel"] = max(float(np.max(np.abs(sd[k].numpy().astype(np.float64) - sch[k]) / np.maximum(np.abs(sch[k]), 1e-30))) for k in SCHEDULE)

    # 5. reference modules, strict loading, outputs on the fixtures' inputs
    torch.manual_seed(0)
    u = UNetModel(exp["unet"]["config"]).eval()
    u.load_state_dict(sub(sd, "model.diffusion_model."), strict=True)
    a_net, a_att, l_net = AudioNet().eval(), AudioAttNet().eval(), LdmNet().eval()
    a_net.load_state_dict(sub(sd, "cond_stage_model_for_audio."), strict=True)
    a_att.load_state_dict(sub(sd, "cond_stage_model_for_audio_smooth."), strict=True)
    l_net.load_state_dict(sub(sd, "cond_stage_model_for_ldm."), strict=True)
    with torch.no_grad():
        x = detinput((1, 9, 16, 16), 0.7)
        ctx = detinput((1, 1, 128), 2.3)
        eps = u(x, torch.tensor([37]), ctx)
        audio = detinput((2, 8, 16, 29), 0.3)
        c = audio.reshape(-1, 16, 29)
        aud = a_att(a_net(c).reshape(2, 8, -1))
        lm = l_net(detinput((2, 39, 2), 1.1, scale=100, offset=128))
    res["unet_out"] = eps.flatten().tolist()
    res["audio_out"] = aud.flatten().tolist()
    res["ldm_out"] = lm.flatten().tolist()
    res["unet_vs_fixture"] = float(np.max(np.abs(eps.flatten().numpy() - np.array(exp["unet"]["out_full"], dtype=np.float32))))
    res["audio_vs_fixture"] = float(np.max(np.abs(aud.flatten().numpy() - np.array(exp["difftalk_encoders"]["audioatt_out_full"], dtype=np.float32))))
    res["ldm_vs_fixture"] = float(np.max(np.abs(lm.flatten().numpy() - np.array(exp["difftalk_encoders"]["ldmnet_out_full"], dtype=np.float32))))
    with open(out_path, "w") as f:
        json.dump(res, f)


if __name__ == "__main__":
    main()
