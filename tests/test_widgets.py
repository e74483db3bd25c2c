from __future__ import annotations

import base64
import json
import re
import zlib

import numpy as np
import pytest
from conftest import as_tensor

import harmlib
from harmlib.config import SSIMConfig
from harmlib.widgets import StaticExplorer, VolumeViewer, explorer_html, live_explorer, viewer_html


def test_static_explorer_is_self_contained(brain_pair):
    x, y, dr = brain_pair
    html = explorer_html(x[:, :, 45], y[:, :, 45], dr, SSIMConfig(alpha=0.5))
    assert "http" not in html.split("<script>", 1)[1]  # the inline script loads nothing
    assert not re.search(r"<script[^>]*src=", html)
    spec = json.loads(re.search(r'<script type="application/json">(.*?)</script>', html).group(1))
    assert spec["shape"] == [91, 109] and spec["data_range"] == pytest.approx(dr)
    assert 'data-param="alpha"' in html and 'value="0.5"' in html
    assert StaticExplorer(x[:, :, 45], y[:, :, 45], dr)._repr_html_().startswith('<div class="harmlib-ssim-explorer"')


def test_explorer_rejects_mismatched_slices(brain_pair):
    x, y, dr = brain_pair
    with pytest.raises(ValueError, match="2D slices of the same shape"):
        explorer_html(x[:, :, 45], y[:, :, 44:46], dr)
    with pytest.raises(ValueError, match="2D slices"):
        explorer_html(x, y, dr)


def test_live_explorer_recomputes_with_harmlib(brain_pair):
    x, y, dr = brain_pair
    a, b = x[:, :, 45], y[:, :, 45]
    box = live_explorer(a, b, dr)
    sliders = {s.description: s for row in box.children[:2] for s in row.children}
    sliders["gamma"].value = 2.0
    sliders["win_size"].value = 7
    label = box.children[2].value
    shown = float(re.search(r"SSIM = ([0-9.]+)", label).group(1))
    expected = harmlib.ssim(as_tensor(a), as_tensor(b), 1.0, 1.0, 2.0, data_range=dr, win_size=7).item()
    assert shown == pytest.approx(expected, abs=1e-5)


def test_the_explorer_has_a_colorbar_with_the_ramp_its_maps_are_drawn_with(brain_pair):
    import json
    import re

    from harmlib.widgets import RAMP, explorer_html

    x, y, dr = brain_pair
    html = explorer_html(x[:, :, 45], y[:, :, 45], dr)
    spec = json.loads(re.search(r'<script type="application/json">(.*?)</script>', html).group(1))
    assert [tuple(c) for c in spec["ramp"]] == list(RAMP)  # the script draws with the spec's ramp
    bar = re.search(r'class="ssim-colorbar".*?</div>', html).group(0)
    assert all(f"rgb{c}" in bar for c in RAMP) and "-1" in bar and ">1<" in bar


def _viewer_spec(page: str) -> dict:
    return json.loads(re.search(r'<script type="application/json">(.*?)</script>', page).group(1))


def test_viewer_sends_the_brains_box_once_per_version_and_loads_nothing(brain_pair):
    x, y, _ = brain_pair
    y = np.where(x > 0, y, 0.0)  # skull-stripped, as the cohort's volumes are
    page = viewer_html({"scan": y, "truth": x}, (2.0, 2.0, 2.0), title="one subject")
    spec = _viewer_spec(page)
    assert [v["name"] for v in spec["versions"]] == ["scan", "truth"]
    box = np.nonzero((x > 0) | (y > 0))
    # the box of every nonzero voxel, 2 voxels each side where the grid has them
    want = [min(int(i.max()) + 3, n) - max(int(i.min()) - 2, 0) for i, n in zip(box, x.shape)]
    assert spec["shape"] == want and np.prod(want) < x.size
    raw = zlib.decompress(base64.b64decode(spec["versions"][1]["data"]))
    assert len(raw) == np.prod(spec["shape"])
    assert not re.search(r"<script[^>]*src=", page) and "http" not in page.split("<script>", 1)[1]


def test_viewer_scales_each_version_by_its_own_brain(brain_pair):
    x, _, _ = brain_pair
    a = _viewer_spec(viewer_html({"x": x}, (2.0, 2.0, 2.0)))
    b = _viewer_spec(viewer_html({"x": 7.0 * x}, (2.0, 2.0, 2.0)))  # the same image at another scale
    assert a["versions"][0]["data"] == b["versions"][0]["data"]


def test_viewer_refuses_versions_on_different_grids(brain_pair):
    x, _, _ = brain_pair
    with pytest.raises(ValueError, match="same grid"):
        viewer_html({"a": x, "b": x[1:]}, (2.0, 2.0, 2.0))
    with pytest.raises(ValueError, match="3D volume"):
        viewer_html({"a": x[:, :, 40]}, (2.0, 2.0))


def test_viewer_draws_switches_and_follows_clicks_offline_in_chromium(brain_pair, tmp_path):
    """Rendered in headless Chromium from file:// with no network: all three views are drawn, the slider and the
    buttons switch the version (the pixels change), a click moves the crosshair, and the console stays clean."""
    from conftest import chromium_driver
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    x, y, _ = brain_pair
    page = tmp_path / "viewer.html"
    VolumeViewer({"scan": y, "truth": x, "blank": np.where(x > 0, 1.0, 0.0)}, (2.0, 2.0, 2.0)).save(page)
    browser = chromium_driver(offline=True)
    pixels = "return Array.from(document.querySelector(\"canvas[data-view='axial']\").getContext('2d').getImageData(0, 0, 40, 40).data.filter((_, i) => i % 4 == 0)).join(',')"
    try:
        browser.get(page.as_uri())
        WebDriverWait(browser, 20).until(
            lambda b: b.execute_script("return document.querySelector('.harmlib-volume-viewer').dataset.ready")
        )
        sizes = browser.execute_script("return [...document.querySelectorAll('canvas')].map(c => [c.width, c.height])")
        first = browser.execute_script(pixels)
        browser.find_element(By.CSS_SELECTOR, "button[data-version='1']").click()
        assert (
            browser.execute_script("return document.querySelector('.harmlib-volume-viewer').dataset.version") == "truth"
        )
        second = browser.execute_script(pixels)
        browser.execute_script(
            "const s = document.querySelector(\"input[data-control='version']\"); s.value = 2; s.dispatchEvent(new Event('input'))"
        )
        assert (
            browser.execute_script("return document.querySelector('.harmlib-volume-viewer').dataset.version") == "blank"
        )
        before = browser.find_element(By.CSS_SELECTOR, "[data-show='voxel']").text
        coronal = browser.find_element(By.CSS_SELECTOR, "canvas[data-view='coronal']")
        ActionChains(browser).move_to_element_with_offset(
            coronal, 20, -30
        ).click().perform()  # right of and above centre
        after = browser.find_element(By.CSS_SELECTOR, "[data-show='voxel']").text
        errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        browser.quit()
    spec = _viewer_spec(page.read_text())
    nx, ny, nz = spec["shape"]
    assert sizes == [[nx, ny], [nx, nz], [ny, nz]]
    assert first != second and len(set(first.split(","))) > 1
    moved = [int(v) for v in re.search(r"voxel \((\d+), (\d+), (\d+)\)", after).groups()]
    assert before.startswith(f"voxel ({nx // 2}, {ny // 2}, {nz // 2}): ")  # the crosshair starts at the centre
    assert moved[0] > nx // 2 and moved[1] == ny // 2 and moved[2] > nz // 2  # right and up on the coronal view
    assert errors == []


def test_viewer_shows_only_the_mask_and_refuses_a_mask_of_another_grid(brain_pair):
    x, y, _ = brain_pair  # y has noise everywhere: without a mask the box is the whole grid
    head = x > 0
    spec = _viewer_spec(viewer_html({"y": y}, (2.0, 2.0, 2.0), mask=head))
    box = np.nonzero(head)
    assert spec["shape"] == [min(int(i.max()) + 3, n) - max(int(i.min()) - 2, 0) for i, n in zip(box, x.shape)]
    shown = np.frombuffer(zlib.decompress(base64.b64decode(spec["versions"][0]["data"])), np.uint8)
    assert (shown == 0).sum() >= (~head).sum() - (head.size - np.prod(spec["shape"]))  # black outside the head
    with pytest.raises(ValueError, match="mask's shape"):
        viewer_html({"y": y}, (2.0, 2.0, 2.0), mask=head[1:])
