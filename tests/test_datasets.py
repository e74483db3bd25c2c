"""Datasets: normalization, padding, label vectors, coronal slices, pairings and their errors."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from harmlib.data.datasets import (
    DomainPairs,
    LabeledUnlabeledPairs,
    Normalizer,
    SliceDataset,
    VolumeDataset,
    crop_pads,
    label_vector,
    pad_to_multiple,
)
from harmlib.data.io import DataError, save_volume
from harmlib.data.manifest import Manifest, write_manifest
from harmlib.data.mni import fsl_grid_affine

SHAPE_4MM = (46, 55, 46)
SITES = [("Intera", "Guys"), ("TrioTim", "SWU"), ("Prisma", "ADNI")]  # sorted domains: Intera, Prisma, TrioTim


def brain(rng: np.random.Generator, shape=SHAPE_4MM, scale: float = 1.0) -> np.ndarray:
    """A positive ellipsoid 'brain' with texture on a zero background."""
    grid = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    mask = sum(g**2 for g in grid) < 0.7
    return (mask * scale * (100 + 30 * rng.random(shape))).astype(np.float32)


def rows(tmp, sites, subjects, shape=SHAPE_4MM, split="train", roles=("labeled", "unlabeled", "labeled")):
    rng, out = np.random.default_rng(0), []
    for k, (scanner, site) in enumerate(sites):
        for s in range(subjects):
            path = save_volume(tmp / f"{scanner}_{site}_{s}.nii.gz", brain(rng, shape, 1 + k), fsl_grid_affine(4))
            out.append(
                {
                    "path": path.name,
                    "subject": f"sub{s}",
                    "session": "1",
                    "dataset": "synthetic",
                    "scanner": scanner,
                    "site": site,
                    "domain": f"{scanner}@{site}",
                    "age": 20 + s,
                    "sex": "F",
                    "diagnosis": "HC" if s else "",
                    "split": split,
                    "role": roles[s % len(roles)] if split == "train" else "test",
                    "truth_path": "",
                }
            )
    return out


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cohort")
    df = pd.DataFrame(rows(tmp, SITES, 3) + rows(tmp, [("Signa", "Held")], 2, split="test"))
    return write_manifest(df, tmp / "manifest.csv")


# ------------------------------------------------------------------ normalization
def test_normalizer_round_trip_in_the_brain_and_range():
    v = brain(np.random.default_rng(1))
    norm = Normalizer()
    x, p = norm.forward(v)
    assert x.dtype == np.float32 and x.min() == -1.0 and x.max() == 1.0
    assert np.all(x[v == 0] == -1.0)  # background -> -1
    assert p["low"] == 0.0 and p["high"] == pytest.approx(np.percentile(v[v > v.mean()], 99.5))
    kept = v <= p["high"]  # voxels above the percentile are clipped by design
    assert kept.mean() > 0.99
    np.testing.assert_allclose(norm.inverse(x, p)[kept], v[kept], rtol=1e-5, atol=1e-3)
    xt, pt = norm.forward(torch.from_numpy(v))
    assert isinstance(xt, torch.Tensor) and pt == p
    np.testing.assert_allclose(xt.numpy(), x, atol=1e-6)


def test_normalizer_inverse_broadcasts_batched_params_and_serializes():
    norm = Normalizer(percentile=99.0)
    a, b = brain(np.random.default_rng(2)), brain(np.random.default_rng(3), scale=3.0)
    (xa, pa), (xb, pb) = norm.forward(a), norm.forward(b)
    batch = torch.from_numpy(np.stack([xa, xb]))[:, None]
    params = {k: torch.tensor([pa[k], pb[k]]) for k in pa}  # what default_collate makes of "norm"
    back = norm.inverse(batch, params)
    assert back.shape == batch.shape
    np.testing.assert_allclose(back[1, 0].numpy()[b <= pb["high"]], b[b <= pb["high"]], rtol=1e-5, atol=1e-3)
    assert Normalizer.from_dict(norm.to_dict()) == norm and norm.to_dict()["method"] == "percentile"
    with pytest.raises(ValueError, match="percentile=20"):
        Normalizer(percentile=20)
    with pytest.raises(DataError, match="no voxel above 0"):
        norm.forward(np.zeros((4, 4)))


# ------------------------------------------------------------------ padding
@pytest.mark.parametrize(
    "shape,padded", [((182, 218, 182), (184, 224, 184)), ((46, 55, 46), (48, 56, 48)), ((91, 91), (96, 96))]
)
def test_pad_to_multiple_of_8_and_crop_back_exactly(shape, padded):
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    y, pads = pad_to_multiple(x, 8)
    assert y.shape == padded
    assert all(abs(b - a) <= 1 for b, a in pads)  # centred
    np.testing.assert_array_equal(crop_pads(y, pads), x)
    t, tpads = pad_to_multiple(torch.from_numpy(x)[None, None], 8, value=-1.0, spatial=len(shape))
    assert tuple(t.shape) == (1, 1, *padded) and tpads == pads and t.flatten()[0] == -1.0
    assert torch.equal(crop_pads(t, pads)[0, 0], torch.from_numpy(x))


def test_pad_refuses_ambiguous_axes():
    with pytest.raises(ValueError, match="spatial=2 or 3"):
        pad_to_multiple(np.zeros((1, 1, 5, 5)))


# ------------------------------------------------------------------ volumes
def test_volume_dataset_items_labels_and_exact_crop(manifest):
    ds = VolumeDataset(manifest, split="train")
    assert len(ds) == 9 and ds.domains == ["Intera@Guys", "Prisma@ADNI", "TrioTim@SWU"]
    item = ds[4]
    assert item["image"].shape == (1, 48, 56, 48) and item["image"].dtype == torch.float32
    assert item["image"].min() == -1.0 and item["image"].max() == 1.0
    assert torch.all(item["image"][0, 0] == -1) and torch.all(item["image"][0, :, -1] == -1)  # padding = background
    assert ds.manifest.df.at[4, "domain"] == ds.domains[item["domain_index"]] == "TrioTim@SWU"
    assert torch.equal(item["label"], torch.tensor([-1.0, -1.0, 1.0]))
    assert item["index"] == 4 and item["age"] == 21 and item["diagnosis"] == "HC"
    labels = torch.stack([ds[i]["label"] for i in range(len(ds))])
    assert torch.all(labels.sum(1) == 2 - 3) and torch.all(labels.abs() == 1)
    raw = np.asarray(nib.load(str(ds.manifest.path(4))).dataobj)
    back = ds.normalizer.inverse(crop_pads(item["image"][0], ds.pads).numpy(), item["norm"])
    assert back.shape == SHAPE_4MM
    kept = raw <= item["norm"]["high"]
    np.testing.assert_allclose(back[kept], raw[kept], rtol=1e-5, atol=1e-3)
    assert ds[4]["image"] is item["image"]  # cached
    assert np.isnan(ds.ages).sum() == 0 and ds.diagnoses[0] == ""


def test_volume_dataset_role_selection_and_held_out_sites(manifest):
    assert len(VolumeDataset(manifest, split="train", role="labeled")) == 6
    test = VolumeDataset(manifest, split="test", allow_unknown=True)
    assert len(test) == 2 and list(test.domain_indices) == [-1, -1]
    assert torch.equal(test[0]["label"], -torch.ones(3))  # paper 1's all -1 label
    assert torch.equal(label_vector(1, 3), torch.tensor([-1.0, 1.0, -1.0]))


# ------------------------------------------------------------------ slices
def test_slice_dataset_coronal_planes_shapes_and_counts(manifest):
    ds = SliceDataset(manifest, split="train", n_slices=3)
    vol = VolumeDataset(manifest, split="train", pad_multiple=None)
    assert len(ds) == 27
    # MNI y = -18 mm on the 4 mm FSL grid: index (-18 + 124.5) / 4 = 26.6 -> 27; planes 4 mm apart.
    assert ds.slices == [26, 27, 28]
    items = [ds[i] for i in range(3, 6)]  # volume 1
    assert [it["slice"] for it in items] == [26, 27, 28] and {it["index"] for it in items} == {1}
    assert all(it["image"].shape == (1, 48, 48) for it in items)
    assert torch.all(items[0]["image"][0, 0] == -1) and torch.all(items[0]["image"][0, :, -1] == -1)
    x, _ = vol.normalized(1)
    np.testing.assert_array_equal(crop_pads(items[1]["image"][0], ds.pads).numpy(), x[:, 27, :])
    assert torch.equal(items[0]["label"], vol[1]["label"])
    assert list(ds.domain_indices[:6]) == [vol.domain_indices[0]] * 3 + [vol.domain_indices[1]] * 3
    unpadded = SliceDataset(manifest, split="train", n_slices=1, pad_multiple=None)
    assert unpadded[0]["image"].shape == (1, 46, 46) and unpadded.slices == [27]


def test_slice_dataset_refuses_planes_off_the_grid(manifest):
    with pytest.raises(ValueError, match="n_slices=60"):
        SliceDataset(manifest, split="train", n_slices=60)
    with pytest.raises(ValueError, match="at least one voxel"):
        SliceDataset(manifest, split="train", n_slices=3, spacing_mm=1.0)


# ------------------------------------------------------------------ pairs
def test_labeled_unlabeled_pairs_are_deterministic_and_cover_both_sets(manifest):
    lab = SliceDataset(manifest, split="train", role="labeled", n_slices=2)
    unl = SliceDataset(manifest, split="train", role="unlabeled", n_slices=2)
    a, b = LabeledUnlabeledPairs(lab, unl, seed=3), LabeledUnlabeledPairs(lab, unl, seed=3)
    assert len(a) == max(len(lab), len(unl)) == 12
    np.testing.assert_array_equal(a.pairs, b.pairs)
    assert sorted(a.pairs[:, 0]) == list(range(len(lab)))
    assert list(np.bincount(a.pairs[:, 1])) == [2] * len(unl)  # the shorter set: each image once per pass
    first = a.pairs.copy()
    a.set_epoch(1)
    assert not np.array_equal(first, a.pairs)
    a.set_epoch(0)
    np.testing.assert_array_equal(first, a.pairs)
    x_l, x_u = a[0]
    assert torch.equal(x_l["label"], label_vector(x_l["domain_index"], 3)) and x_u["image"].shape == (1, 48, 48)
    assert not np.array_equal(LabeledUnlabeledPairs(lab, unl, seed=4).pairs, first)
    bl, bu = next(iter(torch.utils.data.DataLoader(a, batch_size=4)))  # default collation works
    assert bl["image"].shape == (4, 1, 48, 48) and bl["label"].shape == (4, 3)
    back = lab.normalizer.inverse(crop_pads(bl["image"], lab.pads), bl["norm"])
    assert back.shape == (4, 1, 46, 46) and torch.allclose(back.amax((1, 2, 3)), bl["norm"]["high"].float())


def test_domain_pairs_are_deterministic_and_cross_domains(manifest):
    ds = SliceDataset(manifest, split="train", n_slices=2)
    p, q = DomainPairs(ds, seed=0), DomainPairs(ds, seed=0)
    np.testing.assert_array_equal(p.pairs, q.pairs)
    assert sorted(p.pairs[:, 0]) == list(range(len(ds)))
    assert np.all(ds.domain_indices[p.pairs[:, 0]] != ds.domain_indices[p.pairs[:, 1]])
    x_a, x_b = p[5]
    assert x_a["domain_index"] != x_b["domain_index"]
    assert not np.array_equal(DomainPairs(ds, seed=1).pairs, p.pairs)


# ------------------------------------------------------------------ errors
def test_errors_are_one_line_and_name_the_problem(manifest, tmp_path):
    with pytest.raises(
        DataError, match=r"no volumes with split=test, role=labeled.*roles: labeled, test, unlabeled"
    ) as e:
        VolumeDataset(manifest, split="test", role="labeled")
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match=r"unknown site 'Signa@Held'; known: Intera@Guys, Prisma@ADNI, TrioTim@SWU"):
        VolumeDataset(manifest, split="test")
    with pytest.raises(DataError, match="unknown site 'Intera@Guys'; known: Prisma@ADNI"):
        VolumeDataset(manifest, split="train", domains=["Prisma@ADNI"])
    df = manifest.df
    single = Manifest(df[df["domain"] == "Intera@Guys"].reset_index(drop=True), manifest.root)
    with pytest.raises(DataError, match="at least two domains; found only 'Intera@Guys'"):
        DomainPairs(VolumeDataset(single, domains=manifest.domains("train")))
    df = pd.DataFrame(rows(tmp_path, SITES[:1], 2) + rows(tmp_path, SITES[1:2], 1, shape=(46, 54, 46)))
    odd = write_manifest(df, tmp_path / "m.csv")
    with pytest.raises(
        DataError,
        match=r"TrioTim_SWU_0\.nii\.gz: shape \(46, 54, 46\) differs from \(46, 55, 46\) of .*Intera_Guys_0\.nii\.gz",
    ):
        VolumeDataset(odd)
