"""Read what difftalk's pickle / torch writers wrote, with Python's own pickle, zipfile and torch.load.

Usage: torch_writer_reference.py <value.pkl> <model.ckpt>  → JSON on stdout:
- pickle: the value unpickled by Python's pickle module (tuples as {"tuple": [...]}, bytes as {"bytes": hex},
  OrderedDict as {"odict": [[k, v]...]}, big ints as strings so JSON keeps them exact);
- zip: CRC check (testzip), each entry's data offset mod 64, names;
- torch: torch.load(weights_only=True) of the checkpoint: every tensor's dtype, shape and values as float lists.
"""
import json
import pickle
import struct
import sys
import zipfile
from collections import OrderedDict

import torch


def plain(v):
    if isinstance(v, OrderedDict):
        return {"odict": [[plain(k), plain(x)] for k, x in v.items()]}
    if isinstance(v, dict):
        return {"dict": [[plain(k), plain(x)] for k, x in v.items()]}
    if isinstance(v, tuple):
        return {"tuple": [plain(x) for x in v]}
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, bytes):
        return {"bytes": v.hex()}
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return {"int": str(v)}
    if isinstance(v, float):
        return {"float": repr(v)}
    raise TypeError(type(v))


def main():
    pkl, ckpt = sys.argv[1:3]
    out = {"pickle": plain(pickle.loads(open(pkl, "rb").read()))}
    z = zipfile.ZipFile(ckpt)
    out["testzip"] = z.testzip()
    raw = open(ckpt, "rb").read()
    offsets = {}
    for info in z.infolist():
        h = info.header_offset
        name_len, extra_len = struct.unpack("<HH", raw[h + 26 : h + 30])
        offsets[info.filename] = (h + 30 + name_len + extra_len) % 64
        assert info.compress_type == zipfile.ZIP_STORED
    out["align"] = offsets
    d = torch.load(ckpt, weights_only=True)
    out["tensors"] = {k: {"dtype": str(t.dtype), "shape": list(t.shape), "values": t.float().flatten().tolist()} for k, t in d["state_dict"].items()}
    out["meta"] = {k: plain(v) for k, v in d.items() if k != "state_dict"}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
