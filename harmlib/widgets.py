"""The SSIM-exponent explorer: live ipywidgets in a kernel, self-contained HTML/JS in the book.

* ``live_explorer``: sliders for alpha, beta, gamma, the window and the constants; every move
  recomputes with ``harmlib.ssim`` and redraws the l, c, s and combined maps.
* ``explorer_html``: the same explorer for the static book, where no kernel runs. It embeds the
  two slices (float32, base64) and ``static/ssim_explorer.js``, a port of ``harmlib.ssim`` that
  recomputes in the browser. It loads nothing from anywhere: no CDN, no widget manager.
"""

from __future__ import annotations

import base64
import html
import json
import uuid
from pathlib import Path

import numpy as np
import torch

from harmlib.config import SSIMConfig
from harmlib.ssim import ssim_components

_JS = Path(__file__).parent / "static" / "ssim_explorer.js"

# (name, min, max, step) of every control; the same ranges for both explorers.
CONTROLS = {
    "alpha": (0.0, 3.0, 0.05),
    "beta": (0.0, 3.0, 0.05),
    "gamma": (0.0, 3.0, 0.05),
    "win_size": (3, 21, 2),
    "sigma": (0.5, 3.0, 0.1),
    "k1": (0.001, 0.1, 0.001),
    "k2": (0.001, 0.1, 0.001),
}


def _as_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]


def _check_pair(x: np.ndarray, y: np.ndarray) -> None:
    if np.ndim(x) != 2 or np.shape(x) != np.shape(y):
        raise ValueError(f"explorer: x and y must be 2D slices of the same shape, got {np.shape(x)} and {np.shape(y)}")


def live_explorer(x: np.ndarray, y: np.ndarray, data_range: float, cfg: SSIMConfig = SSIMConfig()):
    """ipywidgets sliders that recompute the SSIM maps of two 2D slices with ``harmlib.ssim``."""
    import ipywidgets as W
    import matplotlib.pyplot as plt
    from IPython.display import display

    from harmlib.plots import plot_ssim_maps

    _check_pair(x, y)
    tx, ty = _as_tensor(x), _as_tensor(y)
    fig = plt.figure(figsize=(13, 2.8))
    plt.close(fig)  # drawn into the Output widget only
    out, label = W.Output(), W.HTML()
    sliders = {}
    for name, (lo, hi, step) in CONTROLS.items():
        cls = W.IntSlider if name == "win_size" else W.FloatSlider
        kw = {} if name == "win_size" else {"readout_format": ".3f"}
        sliders[name] = cls(
            value=getattr(cfg, name), min=lo, max=hi, step=step, description=name, continuous_update=False, **kw
        )

    def update(_=None) -> None:
        v = {k: s.value for k, s in sliders.items()}
        comps = ssim_components(tx, ty, data_range, win_size=v["win_size"], sigma=v["sigma"], k1=v["k1"], k2=v["k2"])
        value = comps.combine(v["alpha"], v["beta"], v["gamma"]).mean().item()
        label.value = f"<b>SSIM = {value:.5f}</b> &nbsp; L_SSIM = {1 - value:.5f}"
        with out:
            out.clear_output(wait=True)
            display(plot_ssim_maps(x, y, comps, v["alpha"], v["beta"], v["gamma"], fig=fig))

    for s in sliders.values():
        s.observe(update, names="value")
    update()
    return W.VBox([W.HBox(list(sliders.values())[:4]), W.HBox(list(sliders.values())[4:]), label, out])


# The maps' colour ramp (a short viridis), written once: the page's script draws with it and its colorbar shows it.
RAMP = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))


def colorbar_html() -> str:
    """The maps' colorbar: the ramp from its low end (0 for l and c, -1 for s and the product) to 1."""
    stops = ", ".join(f"rgb{c}" for c in RAMP)
    return (
        '<div class="ssim-colorbar" style="display:flex;align-items:center;gap:.5em;font-size:80%;margin:.3em 0">'
        "<span>0 (l, c) / -1 (s, l^a c^b s^g)</span>"
        f'<span style="display:inline-block;width:14em;height:.9em;background:linear-gradient(to right, {stops})"></span>'
        "<span>1</span></div>"
    )


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


def explorer_html(
    x: np.ndarray, y: np.ndarray, data_range: float, cfg: SSIMConfig = SSIMConfig(), scale: int = 2
) -> str:
    """A self-contained HTML explorer of two 2D slices; recomputes SSIM in the browser."""
    _check_pair(x, y)
    uid = f"ssim-explorer-{uuid.uuid4().hex[:8]}"
    spec = {"x": _b64(x), "y": _b64(y), "shape": list(np.shape(x)), "data_range": float(data_range), "ramp": RAMP}
    rows = []
    for name, (lo, hi, step) in CONTROLS.items():
        value = getattr(cfg, name)
        rows.append(
            f'<tr><td style="padding:0 .5em"><code>{name}</code></td><td style="padding:0"><input type="range" data-param="{name}" '
            f'min="{lo}" max="{hi}" step="{step}" value="{value}" style="width:14em"></td>'
            f'<td style="padding:0 .5em;min-width:4em"><span data-show="{name}">{value}</span></td></tr>'
        )
    h, w = np.shape(x)
    titles = {
        "x": "x (reference)",
        "y": "y (other scanner)",
        "l": "luminance l",
        "c": "contrast c",
        "s": "structure s",
        "ssim": "l^a c^b s^g",
    }
    canvases = "".join(
        f'<figure style="display:inline-block;margin:2px;text-align:center"><canvas data-map="{k}" '
        f'style="width:{scale * h}px;height:{scale * w}px;image-rendering:pixelated"></canvas>'
        f'<figcaption style="font-size:80%">{html.escape(t)}</figcaption></figure>'
        for k, t in titles.items()
    )
    return (
        f'<div class="harmlib-ssim-explorer" id="{uid}">'
        f'<script type="application/json">{json.dumps(spec)}</script>'
        f'<table style="border:none;margin:0">{"".join(rows)}</table>'
        f'<p><b class="ssim-value" data-value=""></b></p>'
        f"<div>{canvases}</div>"
        f"{colorbar_html()}"
        f"<p style='font-size:80%'>Maps: viridis, l and c on [0, 1], s and the product on [-1, 1]. "
        f"Computed in your browser by a port of <code>harmlib.ssim</code>.</p>"
        f"<script>{_JS.read_text()}</script></div>"
    )


class StaticExplorer:
    """Displays ``explorer_html`` in a notebook (rich HTML output, kept by the book)."""

    def __init__(self, *args, **kwargs) -> None:
        self.html = explorer_html(*args, **kwargs)

    def _repr_html_(self) -> str:
        return self.html


# --- the offline 3D viewer -------------------------------------------------------------------------------------

_VIEWER_JS = Path(__file__).parent / "static" / "volume_viewer.js"
VIEWER_PERCENTILE = 99  # each version is shown divided by this percentile of its brain: scale-free, like the metrics
VIEWER_TOP = 1.1  # ... and clipped at this multiple of it (white)
VIEWER_WIDTH_PX = 700  # the three views fit side by side in the book's text column (about 750 px)
VIEWER_MAX_VOXELS = 2_500_000  # per version, after the crop to the brain; larger volumes are strided (the page says so)


def _viewer_box(volumes: dict[str, np.ndarray], margin: int = 2) -> tuple[slice, ...]:
    """The bounding box of every version's nonzero voxels, with a margin: the part of the grid worth sending."""
    mask = np.zeros(next(iter(volumes.values())).shape, dtype=bool)
    for v in volumes.values():
        mask |= np.abs(v) > 0
    if not mask.any():
        return tuple(slice(None) for _ in mask.shape)
    idx = np.nonzero(mask)
    return tuple(slice(max(int(i.min()) - margin, 0), int(i.max()) + margin + 1) for i in idx)


def _viewer_bytes(v: np.ndarray) -> np.ndarray:
    """uint8 of one version: divided by its brain's VIEWER_PERCENTILE, clipped at VIEWER_TOP."""
    brain = v[v > 0]
    ref = float(np.percentile(brain, VIEWER_PERCENTILE)) if brain.size else 1.0
    scaled = np.clip(np.nan_to_num(v) / max(ref, 1e-12), 0.0, VIEWER_TOP) / VIEWER_TOP
    return np.round(scaled * 255).astype(np.uint8)


def viewer_html(
    volumes: dict[str, np.ndarray],
    spacing: tuple[float, float, float],
    title: str = "",
    scale: float = 2.0,
    mask: np.ndarray | None = None,
) -> str:
    """A self-contained HTML viewer of versions of one volume (same grid, RAS voxel order): linked axial, coronal
    and sagittal slices, a click moves the crosshair in all three, a slider, buttons and the arrow keys switch
    versions. Each version is scaled by its own brain percentile (the book's metrics are scale-free too). Loads
    nothing: the volumes travel in the page (uint8, zlib, base64). ``mask``: the voxels to show (the head); outside
    it every version is black, which keeps the page small (background noise does not compress)."""
    import zlib

    if not volumes:
        raise ValueError("viewer: give at least one volume")
    shapes = {np.shape(v) for v in volumes.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3:
        raise ValueError(f"viewer: every version must be one 3D volume on the same grid, got shapes {sorted(shapes)}")
    if mask is not None:
        if np.shape(mask) != next(iter(shapes)):
            raise ValueError(f"viewer: the mask's shape {np.shape(mask)} is not the volumes' {next(iter(shapes))}")
        volumes = {k: np.where(mask, v, 0.0) for k, v in volumes.items()}
    box = _viewer_box(volumes)
    crop = {k: np.asarray(v, dtype=np.float32)[box] for k, v in volumes.items()}
    shape = next(iter(crop.values())).shape
    step = max(1, int(np.ceil((np.prod(shape) / VIEWER_MAX_VOXELS) ** (1 / 3))))
    crop = {k: v[::step, ::step, ::step] for k, v in crop.items()}
    shape = next(iter(crop.values())).shape
    uid = f"volume-viewer-{uuid.uuid4().hex[:8]}"
    (nx, ny, _), (sx, sy, _) = shape, spacing
    scale = min(scale, VIEWER_WIDTH_PX / (step * (2 * nx * sx + ny * sy)))  # the three views side by side in a column
    spec = {
        "shape": list(shape),
        "spacing": [float(s) * step for s in spacing],
        "scale": float(scale),
        "percentile": VIEWER_PERCENTILE,
        "top": VIEWER_TOP,
        "versions": [
            {"name": k, "data": base64.b64encode(zlib.compress(_viewer_bytes(v).tobytes(), 9)).decode("ascii")}
            for k, v in crop.items()
        ],
    }
    buttons = "".join(
        f'<button type="button" data-version="{n}" style="margin:1px 2px">{html.escape(k)}</button>'
        for n, k in enumerate(crop)
    )
    canvases = "".join(
        f'<div style="text-align:center;flex:none">'
        f'<canvas data-view="{v}" style="display:block;image-rendering:pixelated;background:#000"></canvas>'
        f'<div style="font-size:80%">{v}</div></div>'
        for v in ("axial", "coronal", "sagittal")
    )
    strided = f" Shown at every {step}th voxel (the volume is large)." if step > 1 else ""
    return (
        f'<div class="harmlib-volume-viewer" id="{uid}" tabindex="0" style="max-width:100%;overflow-x:auto">'
        f'<script type="application/json">{json.dumps(spec)}</script>'
        + (f"<p><b>{html.escape(title)}</b></p>" if title else "")
        + f"<div>{buttons}</div>"
        f'<div style="display:flex;align-items:center;gap:.5em;font-size:90%">'
        f'<input type="range" data-control="version" min="0" max="{len(crop) - 1}" step="1" value="0" style="width:14em">'
        f'<b data-show="version"></b></div>'
        f'<div style="display:flex;gap:4px;align-items:flex-start">{canvases}</div>'
        f'<p style="font-size:80%;margin:0"><span data-show="voxel">loading the volumes...</span></p>'
        f'<p style="font-size:80%">Click a view to move the crosshair in all three; the slider, the buttons or the '
        f"arrow keys switch versions at the same place. Each version is divided by the {VIEWER_PERCENTILE}th "
        f"percentile of its own brain (white at {VIEWER_TOP} times it), so the contrast between tissues is what "
        f"you compare, not the scale. Voxels of {' x '.join(f'{s * step:g}' for s in spacing)} mm.{strided}</p>"
        f"<script>{_VIEWER_JS.read_text()}\nwindow.harmlibVolumeViewer(document.getElementById('{uid}'));</script>"
        "</div>"
    )


class VolumeViewer:
    """Displays ``viewer_html`` in a notebook (rich HTML output, kept by the book); ``save`` writes it as a file."""

    def __init__(self, *args, **kwargs) -> None:
        self.html = viewer_html(*args, **kwargs)

    def _repr_html_(self) -> str:
        return self.html

    def save(self, path: Path) -> Path:
        """Written atomically (`harmlib.data.io.write_text_atomic`): a page that includes it never reads half a viewer."""
        from harmlib.data.io import write_text_atomic

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return write_text_atomic(path, self.html)
