"""Shared fixtures: real brain data from the MNI152 template that ships with nilearn."""

from __future__ import annotations

import os
import shutil

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


def chromium_driver(offline: bool = False):
    """Headless Chromium through Selenium; offline: no host resolves, every request meets a closed port."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        msg = "headless Chromium is needed for the explorer test: sudo apt-get install chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--allow-file-access-from-files",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, for the no-error test
    if offline:  # every host name fails to resolve and every request goes to a closed port: no network at all
        opts.add_argument("--host-resolver-rules=MAP * ~NOTFOUND")
        opts.add_argument("--proxy-server=http://127.0.0.1:9")
    return webdriver.Chrome(service=Service(driver), options=opts)
