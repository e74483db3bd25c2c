"""MR physics of the synthetic cohort (version 2): a scanner-site is an acquisition, not a look.

A T1-weighted image is the signal of each tissue under a sequence, mixed by partial volume, then acquired:

* **tissues** (:data:`TISSUES`): CSF, cortical GM, WM, the deep grey nuclei (caudate, putamen, pallidum, thalamus)
  and WM lesions, each with its own T1, T2* and proton density (PD). Reference values at 1.5 T are BrainWeb's
  (Kwan, Evans, Pike 1999; CSF 2569/58/1.0, GM 833/69/0.86, WM 500/61/0.77 ms, ms, a.u.); at 3 T the ranges
  reported for cortex (T1 ~1300-1450 ms) and WM (~800-900 ms) (Wansapura 1999, Stanisz 2005). The nuclei sit
  between GM and WM by their myelin and iron content, with shorter T2* where iron is (pallidum shortest, then
  putamen); lesions have a longer T1 than WM. Each site draws its own values around its field's table (a few
  per cent: scanners, coils and the fitting of relaxometry differ), so no single table is *the* truth.
* **sequences** (:class:`Sequence`): spoiled gradient echo (SPGR / FLASH / T1-FFE), and inversion-prepared
  gradient-echo trains (MPRAGE, IR-SPGR / BRAVO, Philips' T1-TFE), whose signal at the k-space centre is
  computed by following the longitudinal magnetization through inversion, recovery and the readout train
  to its steady state (every flip of the train reduces Mz, so the effective contrast is not the ideal
  inversion recovery's). A tissue's signal is PD * sin(flip) * Mz * exp(-TE / T2*).
* **acquisition** (:func:`acquire`): the acquired voxel size per axis (k-space truncated where it is coarser
  than the grid: blur and Gibbs ringing, as a Fourier-encoded 3D acquisition has them), each scan's own smooth
  residual bias (as N4 leaves it) with a small share of a site pattern, Rician noise at the site's SNR (per
  acquired voxel; a coarser grid averages it down), and the scale and offset the scanner stores.

Nothing here is fitted to a harmonizer: the same physics renders every site, seen and unseen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TISSUES = ("csf", "gm", "wm", "caudate", "putamen", "pallidum", "thalamus", "lesion")
NUCLEI = ("caudate", "putamen", "pallidum", "thalamus")

# (T1 ms, T2* ms, PD) of the three main tissues at each field strength.
_BASE = {
    1.5: {"csf": (2569.0, 58.0, 1.00), "gm": (833.0, 69.0, 0.86), "wm": (500.0, 61.0, 0.77)},
    3.0: {"csf": (4000.0, 300.0, 1.00), "gm": (1380.0, 50.0, 0.82), "wm": (850.0, 45.0, 0.70)},
}
# The nuclei between GM (0) and WM (1) in T1 and PD by their myelination, and their T2* shortened by iron.
_NUCLEI = {"caudate": (0.15, 0.85), "putamen": (0.30, 0.65), "thalamus": (0.55, 0.90), "pallidum": (0.85, 0.45)}
_LESION = (1.6, 1.3, 1.10)  # WM lesions: T1, T2* and PD as multiples of WM's


def tissue_table(field_t: float) -> dict[str, tuple[float, float, float]]:
    """(T1, T2*, PD) of every tissue at 1.5 or 3 T (the reference the sites vary around)."""
    base = dict(_BASE[field_t])
    (g1, g2, gp), (w1, w2, wp) = base["gm"], base["wm"]
    for name, (w, iron) in _NUCLEI.items():
        base[name] = (g1 + w * (w1 - g1), iron * (g2 + w * (w2 - g2)), gp + w * (wp - gp))
    base["lesion"] = (w1 * _LESION[0], w2 * _LESION[1], min(1.0, wp * _LESION[2]))
    return {t: base[t] for t in TISSUES}


@dataclass(frozen=True)
class Sequence:
    """A T1-weighted sequence. ``kind``: ``spgr`` (spoiled gradient echo: ``tr`` between excitations) or ``ir``
    (an inversion-prepared gradient-echo train: MPRAGE, IR-SPGR, T1-TFE; ``tr`` between inversions, ``ti`` from
    the inversion to the k-space centre, ``n_readout`` excitations ``esp`` apart, centre-ordered). Times in ms,
    ``flip`` in degrees."""

    kind: str
    tr: float
    te: float
    flip: float
    ti: float = 0.0
    esp: float = 0.0
    n_readout: int = 0

    def problems(self) -> list[tuple[str, str]]:
        """(field, why) for every non-physical setting."""
        out = []
        if self.kind not in ("spgr", "ir"):
            out.append(("kind", f"'{self.kind}' is not spgr or ir"))
        if not 0 < self.flip <= 180:
            out.append(("flip", f"{self.flip} degrees is outside (0, 180]"))
        if self.tr <= 0 or self.te < 0 or self.te >= self.tr:
            out.append(("tr/te", f"TR {self.tr} ms and TE {self.te} ms need 0 <= TE < TR"))
        if self.kind == "ir":
            half = self.n_readout / 2 * self.esp
            if self.ti >= self.tr:
                out.append(("ti", f"TI {self.ti} ms is not shorter than TR {self.tr} ms"))
            elif self.n_readout < 1 or self.esp <= 0:
                out.append(("n_readout/esp", "an inversion-prepared train needs n_readout >= 1 and esp > 0"))
            elif self.ti < half or self.tr < self.ti + half:
                out.append(("ti", f"TI {self.ti} ms and TR {self.tr} ms do not hold a readout of {2 * half:.0f} ms"))
        return out

    def signal(self, t1: np.ndarray, t2s: np.ndarray, pd: np.ndarray) -> np.ndarray:
        """The signal of tissues with these parameters (arrays of one shape), at the k-space centre."""
        a = math.radians(self.flip)
        if self.kind == "spgr":
            e1 = np.exp(-self.tr / t1)
            mz = (1 - e1) / (1 - math.cos(a) * e1)
        else:
            mz = np.abs(self._ir_mz(t1, a))
        return pd * math.sin(a) * mz * np.exp(-self.te / t2s)

    def _ir_mz(self, t1: np.ndarray, a: float) -> np.ndarray:
        """Mz / M0 just before the centre excitation of the train, at steady state (followed through 30 cycles:
        inversion, recovery to the train, the train's flips and recoveries, recovery to the next inversion)."""
        half = self.n_readout // 2
        before = self.ti - half * self.esp
        after = self.tr - self.ti - (self.n_readout - half) * self.esp
        e_esp, c = np.exp(-self.esp / t1), math.cos(a)
        m = np.ones_like(t1)
        centre = m
        for _ in range(30):
            m = 1 - (1 - (-m)) * np.exp(-before / t1)  # inversion, then recovery until the train starts
            for k in range(self.n_readout):
                if k == half:
                    centre = m
                m = 1 - (1 - m * c) * e_esp
            m = 1 - (1 - m) * np.exp(-max(after, 0.0) / t1)
        return centre


@dataclass(frozen=True)
class Acquisition:
    """How a site acquires: field strength, sequence, acquired voxel size (x, y, z mm), SNR of WM per acquired
    voxel, residual bias (peak-to-peak of each scan's smooth field; ``site_bias``: the share of it that is one
    pattern for every scan at the site), the stored scale and offset, and how much its tissue parameters depart
    from the field's table (``spread``, relative SD)."""

    field_t: float
    sequence: Sequence
    voxel: tuple[float, float, float] = (1.0, 1.0, 1.0)
    snr: float = 30.0
    bias: float = 0.10
    site_bias: float = 0.2
    scale: float = 1.0
    offset: float = 0.0
    spread: float = 0.03
    bias_fwhm_mm: float = 90.0

    def problems(self) -> list[tuple[str, str]]:
        out = [(f"sequence.{f}", why) for f, why in self.sequence.problems()]
        if self.field_t not in _BASE:
            out.append(("field_t", f"{self.field_t} T has no tissue table; use 1.5 or 3.0"))
        if min(self.voxel) <= 0:
            out.append(("voxel", f"{self.voxel} mm: every size must be positive"))
        if self.snr <= 0 or self.bias < 0 or not 0 <= self.site_bias <= 1 or self.scale <= 0:
            out.append(("snr/bias/scale", "need snr > 0, bias >= 0, site_bias in [0, 1], scale > 0"))
        if not 0 <= self.spread <= 0.2:
            out.append(("spread", f"{self.spread}: a site's tissue parameters vary by a relative SD in [0, 0.2]"))
        return out

    def tissues(self, seed: int) -> dict[str, tuple[float, float, float]]:
        """This site's own (T1, T2*, PD) per tissue: the field's table, each value varied by ``spread`` (seeded)."""
        rng = np.random.default_rng([seed, 7])
        table = tissue_table(self.field_t)
        out = {}
        for t in TISSUES:
            f = np.clip(1 + self.spread * rng.standard_normal(3), 1 - 2.5 * self.spread, 1 + 2.5 * self.spread)
            out[t] = tuple(float(v * k) for v, k in zip(table[t], f))
        return out

    def tissue_signals(self, seed: int) -> dict[str, float]:
        """The signal of each tissue at this site (before scale), from its own relaxation times."""
        tab = self.tissues(seed)
        t1, t2s, pd = (np.array([tab[t][i] for t in TISSUES]) for i in range(3))
        return dict(zip(TISSUES, (float(v) for v in self.sequence.signal(t1, t2s, pd))))


def truncate_kspace(img: np.ndarray, grid_mm: float, voxel: tuple[float, float, float]) -> np.ndarray:
    """Keep only the spatial frequencies an acquisition of ``voxel`` (x, y, z mm) encodes: along each axis where the
    acquired voxel is coarser than the grid, the k-space beyond 1 / (2 voxel) is cut (a hard edge: the blur and the
    Gibbs ringing of a truncated Fourier acquisition)."""
    out = img
    for axis, v in enumerate(voxel):
        n = img.shape[axis]
        if v <= grid_mm * 1.001 or n < 4:
            continue
        f = np.fft.rfftfreq(n, d=grid_mm)
        keep = (np.abs(f) <= 1.0 / (2.0 * v)).astype(np.float32)
        spec = np.fft.rfft(out, axis=axis)
        shape = [1] * img.ndim
        shape[axis] = len(f)
        out = np.fft.irfft(spec * keep.reshape(shape), n=n, axis=axis).astype(np.float32)
    return out


def noise_sd(acq: Acquisition, wm_signal: float, grid_mm: float) -> float:
    """Rician noise SD on the grid: the WM signal over the site's SNR per acquired voxel, averaged over the acquired
    voxels a grid voxel holds (a grid finer than the acquisition keeps the acquired voxel's noise)."""
    ratio = max(1.0, grid_mm**3 / float(np.prod(acq.voxel)))
    return wm_signal / acq.snr / math.sqrt(ratio)


def rician(img: np.ndarray, sd: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise of SD ``sd``."""
    return np.sqrt((img + sd * rng.standard_normal(img.shape)) ** 2 + (sd * rng.standard_normal(img.shape)) ** 2)
