"""Probe for E1: the GM-VAE on each slice's plane of its volume's smooth intensity field instead of the slice.

    .venv/bin/python benchmarks/probe_gmvae_view.py [SCALE] [STEPS]

The thesis's GM-VAE reads whole coronal slices
on the cpu cohort its mixture follows anatomy (E1 ACC 0.30). Here
the same model class and objective (harmlib.gmvae, Gaussian likelihood, the cpu profile's weights) read, for each
training slice, the coronal plane at that slice's position of its volume's log low-pass intensity field (Gaussian
sigma 24 mm after the landmark curve to the cohort's standard, relative to the cohort's mean: the site field's
input, ``models.blocks.log_lowpass``), resampled to 32x32 and multiplied by SCALE into the model's [-1, 1].
It prints E1 (ACC, NMI, ARI against the true training sites) every 100 steps. Not wired into GMM-DRIT: its stage 2
re-encodes translated slices, whose field planes only a generator with the site field defines.
"""

import sys
import time

import torch
import torch.nn.functional as F

import harmlib
from harmlib.config import GMVAEArch, arch_fields
from harmlib.data import read_manifest
from harmlib.evaluation.clustering import clustering_scores
from harmlib.gmvae.losses import gmvae_loss
from harmlib.gmvae.model import GMVAE, GMVAESpec, temperature
from harmlib.gmvae.task import slice_dataset
from harmlib.models.blocks import LANDMARK_PERCENTILES, brain_landmarks, log_lowpass, pad_multiple, piecewise_linear

cfg = harmlib.load_config("cpu")
man = read_manifest(cfg.data_dir / "manifest.csv")
g = cfg.gmvae
data = slice_dataset(man, g.slices, man.domains("train"), pad_multiple(g.n_down))
vols = torch.stack([torch.from_numpy(data.volumes.normalized(i)[0]) for i in range(len(data.volumes))])[:, None]
pc = torch.tensor(LANDMARK_PERCENTILES)
lm = brain_landmarks(vols, pc)
std = piecewise_linear(vols, lm, lm.mean(0).expand(len(vols), -1))
sig, step = (
    12.0,
    int(sys.argv[3]) if len(sys.argv) > 3 else 2,
)  # sigma 24 mm on the 2 mm grid; grid step (2: a plane per slice)
logs, ok = log_lowpass(std, sig, step)
valid = ok.float().mean(0) > 0.5
rel = torch.where(valid, logs - (logs * ok).sum(0) / ok.sum(0).clamp_min(1), torch.zeros(()))
ny = vols.shape[3]
ys = torch.linspace(0, ny - 1, rel.shape[2])
planes = []
for v in range(len(vols)):
    for s in data.slices:
        j = int((ys - s).abs().argmin())
        planes.append(rel[v, :, j, :])
P = torch.stack(planes)[:, None]  # (150, 1, gx, gz)
P = F.interpolate(P, size=(32, 32), mode="bilinear", align_corners=True)
scale = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
X = (P * scale).clamp(-1, 1)  # the model's [-1, 1] input range
y = data.domain_indices
print("input", X.shape, "range", float(X.min()), float(X.max()), "sd", float(X.std()))
spec = GMVAESpec(size=(32, 32), n_components=5, **(arch_fields(g, GMVAEArch) | {"n_down": 2}))
torch.manual_seed(0)
m = GMVAE(spec)
m.init_output(X.mean(0)[0])
opt = torch.optim.Adam(m.parameters(), lr=1e-3)
t0 = time.time()
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 400
for it in range(steps):
    idx = torch.randperm(len(X))[:64]
    f = m(X[idx], temperature(it, steps, g.temp_init, g.temp_min))
    loss, terms = gmvae_loss(f, X[idx], g.weights, likelihood="gaussian", sigma=g.sigma)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if (it + 1) % 100 == 0:
        with torch.no_grad():
            pred = m.encoder.q_y(m.encoder.features(X)).argmax(1).numpy()
        s = clustering_scores(y, pred)
        print(
            f"step {it + 1} {time.time() - t0:.0f}s ACC {s['ACC']:.3f} NMI {s['NMI']:.3f} ARI {s['ARI']:.3f} clusters {len(set(pred))} {terms}",
            flush=True,
        )
