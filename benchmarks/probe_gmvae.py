"""Probe one GM-VAE setting (GMM-DRIT stage 1): train it and print E1 (ACC, NMI, ARI against the
training scanners) every ``--every`` steps, with the intensity-histogram k-means baseline.

    .venv/bin/python benchmarks/probe_gmvae.py --set "gmvae.likelihood=gaussian" --steps 400 --every 100
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import torch

import harmlib
from harmlib.data import read_manifest
from harmlib.evaluation.clustering import clustering_scores, histogram_kmeans
from harmlib.gmvae.task import attribute_space, build_task, export_model
from harmlib.train.loop import fit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--set", default="")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--out", default="/tmp/probe_gmvae")
    ap.add_argument("--export", default="", help="write the probe's model file here (for probe_drit.py --gmvae)")
    a = ap.parse_args()
    over = harmlib.config.parse_overrides(a.set)
    cfg = harmlib.load_config(
        a.profile, over | {"gmvae.train.iterations": a.steps, "gmvae.train.checkpoint_every": a.every}
    )
    man = read_manifest(cfg.data_dir / "manifest.csv")
    shutil.rmtree(a.out, ignore_errors=True)
    task, meta = build_task(cfg, man)
    data = meta["dataset"]
    x = torch.stack([data[i]["image"] for i in range(len(data))]).numpy()
    dom = np.array([data[i]["domain_index"] for i in range(len(data))])
    print(
        "histogram k-means baseline:",
        {k: round(v, 3) for k, v in histogram_kmeans(x, dom, len(meta["domains"]), seed=cfg.seed).items()},
        flush=True,
    )
    t0 = time.perf_counter()
    for stop in range(a.every, a.steps + 1, a.every):
        log = fit(task, cfg.gmvae.train, cfg.runtime, Path(a.out), seed=cfg.seed, stop_after=stop)
        w, tail = cfg.gmvae.weights, log.tail(20)  # the label-free objective: what a choice among runs may read
        objective = float((w.rec * tail.rec + w.gauss * tail.gauss + w.cat * tail.cat).mean())
        space = attribute_space(task.nets["gmvae"], meta["inputs"], data.domain_indices)
        s = clustering_scores(space["domain"], space["cluster"])
        sizes = np.bincount(space["cluster"], minlength=len(meta["domains"])).tolist()
        print(
            f"step {stop:4d} ({(time.perf_counter() - t0) / 60:.1f} min) ACC {s['ACC']:.3f} NMI {s['NMI']:.3f} ARI {s['ARI']:.3f} "
            f"sizes {sizes} mean max q(y|x) {float(space['prob'].max(1).mean()):.2f} L_GMVAE {objective:.1f}",
            flush=True,
        )
    if a.export:
        print("model file:", export_model(task, meta, a.export)[0], flush=True)


if __name__ == "__main__":
    main()
