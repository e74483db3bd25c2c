from __future__ import annotations

import json
import re

import pytest
from conftest import as_tensor

import harmlib
from harmlib.config import SSIMConfig
from harmlib.widgets import StaticExplorer, explorer_html, live_explorer


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
