"""Save a DiffTalk checkpoint the way the reference PyTorch code does (torch.save of a Lightning-style dict), for
`train ldm --init` (tests/train/init.test.ts).

Usage: torch_difftalk_save.py <unet config json> <audio window> <audio dim> <out.ckpt> <dump.json>

The modules are the reference ones of checkpoint_reference.py (openaimodel UNet, AudioNet, AudioAttNet, LdmNet), with
AudioNet's input width set by the dataset's audio feature (the reference: 16 × 29). Weights: torch.manual_seed(23)
normal × 0.05; the LitEma copies are 0.9 × the weights with num_updates 42. The state_dict is named as LatentDiffusion
names it (schedule buffers, model.diffusion_model.*, model_ema.*, cond_stage_model_for_*). `first_stage_model.*` is
left out (the run's first stage comes from --first-stage). dump.json lists every tensor's name, shape and values.
"""
import json
import math
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checkpoint_reference import SCHEDULE, AudioAttNet, LdmNet, UNetModel, lrelu, schedule  # noqa: E402


class AudioNetW(nn.Module):
    """AudioNet with the input width and window of the dataset's feature (encoder_fc1.0 reads 64 × L₄)."""

    def __init__(self, dim, win, dim_aud=64):
        super().__init__()
        self.encoder_conv = nn.Sequential(nn.Conv1d(dim, 32, 3, 2, 1), lrelu(), nn.Conv1d(32, 32, 3, 2, 1), lrelu(),
                                          nn.Conv1d(32, 64, 3, 2, 1), lrelu(), nn.Conv1d(64, 64, 3, 2, 1), lrelu())
        length = win
        for _ in range(4):
            length = math.ceil(length / 2)
        self.encoder_fc1 = nn.Sequential(nn.Linear(64 * length, 64), lrelu(), nn.Linear(64, dim_aud))


def main():
    cfg = json.loads(sys.argv[1])
    win, dim = int(sys.argv[2]), int(sys.argv[3])
    out, dump = sys.argv[4], sys.argv[5]
    torch.manual_seed(23)
    parts = {
        "model.diffusion_model.": UNetModel(cfg),
        "cond_stage_model_for_audio.": AudioNetW(dim, win),
        "cond_stage_model_for_audio_smooth.": AudioAttNet(),
        "cond_stage_model_for_ldm.": LdmNet(),
    }
    with torch.no_grad():
        for m in parts.values():
            for p in m.parameters():
                p.copy_(torch.randn(p.shape) * 0.05)
    sd = {}
    for k, v in schedule().items():
        sd[k] = torch.from_numpy(v)
    unet = parts["model.diffusion_model."]
    for k, v in unet.state_dict().items():
        sd["model.diffusion_model." + k] = v.clone()
    sd["model_ema.decay"] = torch.tensor(0.9999, dtype=torch.float32)
    sd["model_ema.num_updates"] = torch.tensor(42, dtype=torch.int)
    for k, v in unet.state_dict().items():
        sd["model_ema.diffusion_model" + k.replace(".", "")] = (v * 0.9).clone()
    for prefix in ["cond_stage_model_for_audio.", "cond_stage_model_for_audio_smooth.", "cond_stage_model_for_ldm."]:
        for k, v in parts[prefix].state_dict().items():
            sd[prefix + k] = v.clone()
    torch.save({"epoch": 3, "global_step": 42, "state_dict": sd}, out)
    with open(dump, "w") as f:
        json.dump({k: {"shape": list(v.shape), "values": v.float().flatten().tolist()} for k, v in sd.items() if k not in SCHEDULE}, f)


if __name__ == "__main__":
    main()
