#!/usr/bin/env python3
"""FID between two feature sets, as pytorch-fid's calculate_frechet_distance computes it (numpy + scipy only).

    python3 tests/reference/fid_from_features.py a.npy b.npy     # prints {"fid": ..., "fid_sqrtm": ..., "n_a": ..., "n_b": ...}

Each .npy holds float32 features, one row per image (N × 2048 for pool3). Written from pytorch-fid's documented steps,
not from the TypeScript code: mu = mean over rows, sigma = np.cov(rowvar=False) (ddof 1), covmean = sqrtm(sigma_a ·
sigma_b) (scipy.linalg.sqrtm, disp=False; pytorch-fid adds eps·I to both sigmas when the product is singular enough to
give non-finite values, and keeps the real part), FID = |mu_a − mu_b|² + tr(sigma_a) + tr(sigma_b) − 2 tr(covmean).
Computed in float64.

With fewer images than features (6 frames × 2048) both covariances are singular and scipy's sqrtm of their product
carries round-off of ~1e-5 relative; `fid` therefore takes tr(covmean) exactly as the nuclear norm (sum of singular
values, numpy SVD) of the n_a × n_b matrix Ac·Bcᵀ / sqrt((n_a − 1)(n_b − 1)) of the centred features — the nonzero
eigenvalues of sigma_a·sigma_b are the squared singular values of that matrix — and `fid_sqrtm` is pytorch-fid's
sqrtm route, for comparison.
"""
import json
import sys

import numpy as np
from scipy import linalg


def fid(a, b, eps=1e-6):
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(s1.dot(s2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def fid_low_rank(a, b):
    ac, bc = a - a.mean(axis=0), b - b.mean(axis=0)
    diff = a.mean(axis=0) - b.mean(axis=0)
    na, nb = a.shape[0], b.shape[0]
    tr1 = (ac * ac).sum() / (na - 1)
    tr2 = (bc * bc).sum() / (nb - 1)
    nuclear = np.linalg.svd(ac.dot(bc.T) / np.sqrt((na - 1) * (nb - 1)), compute_uv=False).sum()
    return float(diff.dot(diff) + tr1 + tr2 - 2 * nuclear)


if __name__ == '__main__':
    a = np.load(sys.argv[1]).astype(np.float64)
    b = np.load(sys.argv[2]).astype(np.float64)
    print(json.dumps({'fid': fid_low_rank(a, b), 'fid_sqrtm': fid(a, b), 'n_a': a.shape[0], 'n_b': b.shape[0]}))
