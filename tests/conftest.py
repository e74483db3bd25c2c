"""Shared fixtures: real brain data from the MNI152 template that ships with nilearn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harmlib.data import Appearance, apply_appearance, mni_t1

OTHER_SCANNER = Appearance(gamma=0.6, scale=0.85, bias=0.35, bias_scale_mm=80, blur_mm=2.5, noise=0.03)


def as_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]


@pytest.fixture(scope="session")
def brain_pair() -> tuple[np.ndarray, np.ndarray, float]:
    """The 2 mm MNI template and the same anatomy seen by another scanner, plus the data range."""
    x, _ = mni_t1(2)
    y = apply_appearance(x, OTHER_SCANNER, voxel_mm=2, seed=1)
    return x, y, float(max(x.max(), y.max()) - min(x.min(), y.min()))
