from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import OTHER_SCANNER, as_tensor
from skimage.metrics import structural_similarity

import harmlib
from harmlib.data import apply_appearance, mni_t1
from harmlib.ssim import gaussian_window, signed_pow


def _skimage(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    return structural_similarity(
        a.astype(np.float64),
        b.astype(np.float64),
        data_range=data_range,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_matches_scikit_image_on_brain_slices(brain_pair, axis):
    x, y, dr = brain_pair
    k = x.shape[axis] // 2
    a, b = np.take(x, k, axis), np.take(y, k, axis)
    assert harmlib.ssim(as_tensor(a), as_tensor(b), data_range=dr).item() == pytest.approx(_skimage(a, b, dr), abs=1e-4)


def test_matches_scikit_image_on_brain_volume(brain_pair):
    x, y, dr = brain_pair
    ours = harmlib.ssim(as_tensor(x), as_tensor(y), data_range=dr).item()
    assert ours == pytest.approx(_skimage(x, y, dr), abs=1e-4)
    assert 0.2 < ours < 0.9  # a real, imperfect pair: the test would catch a constant


def test_matches_scikit_image_at_1mm():
    x, _ = mni_t1(1)
    y = apply_appearance(x, OTHER_SCANNER, voxel_mm=1, seed=3)
    dr = float(y.max() - min(x.min(), y.min()))
    a, b = x[:, :, 90], y[:, :, 90]
    assert harmlib.ssim(as_tensor(a), as_tensor(b), data_range=dr).item() == pytest.approx(_skimage(a, b, dr), abs=1e-4)


def test_matches_monai_3d(brain_pair):
    from monai.metrics import SSIMMetric

    x, y, dr = brain_pair
    ref = SSIMMetric(spatial_dims=3, data_range=dr, win_size=11, kernel_sigma=1.5)(as_tensor(x), as_tensor(y)).item()
    assert harmlib.ssim(as_tensor(x), as_tensor(y), data_range=dr).item() == pytest.approx(ref, abs=1e-4)


def test_product_of_components_is_classic_ssim(brain_pair):
    x, y, dr = brain_pair
    tx, ty = as_tensor(x[:, :, 45]), as_tensor(y[:, :, 45])
    comps = harmlib.ssim_components(tx, ty, data_range=dr)
    classic = harmlib.ssim(tx, ty, data_range=dr, reduction="map")
    torch.testing.assert_close(comps.luminance * comps.contrast * comps.structure, classic)
    assert comps.luminance.shape == (1, 1, x.shape[0] - 10, x.shape[1] - 10)


def test_exponents_weight_their_terms(brain_pair):
    x, y, dr = brain_pair
    tx, ty = as_tensor(x), as_tensor(y)
    comps = harmlib.ssim_components(tx, ty, data_range=dr)
    # alpha = 0 removes luminance; only-one-term settings give that term's mean
    assert harmlib.ssim(tx, ty, 1, 0, 0, data_range=dr).item() == pytest.approx(comps.luminance.mean().item(), abs=1e-6)
    assert harmlib.ssim(tx, ty, 0, 0, 1, data_range=dr).item() == pytest.approx(comps.structure.mean().item(), abs=1e-6)
    assert harmlib.ssim(tx, ty, 0, 0, 0, data_range=dr).item() == pytest.approx(1.0)
    # terms below 1 shrink as their exponent grows
    assert (
        harmlib.ssim(tx, ty, 1, 1, 2, data_range=dr)
        < harmlib.ssim(tx, ty, 1, 1, 1, data_range=dr)
        < harmlib.ssim(tx, ty, 1, 1, 0.5, data_range=dr)
    )


def test_identical_images_score_one_with_zero_gradient(brain_pair):
    x, _, dr = brain_pair
    tx = as_tensor(x[:, :, 40]).requires_grad_()
    loss = harmlib.ssim_loss(tx, tx.detach(), 0.5, 1.5, 0.7, data_range=dr)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert tx.grad.abs().max().item() < 1e-3


def test_fractional_exponents_of_negative_structure_are_finite(brain_pair):
    x, _, dr = brain_pair
    a = as_tensor(x[:, :, 45])
    inv = (a.max() - a).requires_grad_()
    comps = harmlib.ssim_components(inv, a, data_range=dr)
    assert (comps.structure < -0.5).any()
    loss = harmlib.ssim_loss(inv, a, 0.5, 0.3, 0.5, data_range=dr)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(inv.grad).all()
    # the odd extension keeps the sign: anti-correlation scores below zero structure
    assert harmlib.ssim(inv, a, 0, 0, 0.5, data_range=dr).item() < 0


def test_signed_pow_rule():
    t = torch.tensor([-0.25, 0.0, 0.25, 1.0])
    torch.testing.assert_close(signed_pow(t, 0.5), torch.tensor([-0.5, 0.0, 0.5, 1.0]))
    torch.testing.assert_close(signed_pow(t, 2.0), torch.tensor([-0.0625, 0.0, 0.0625, 1.0]))
    assert signed_pow(t, 1.0) is t
    torch.testing.assert_close(signed_pow(t, 0.0), torch.ones(4))


@pytest.mark.parametrize("shape", [(2, 1, 16, 16), (1, 2, 12, 13, 14)])
def test_gradients_finite_for_constant_images(shape):
    c = torch.full(shape, 0.3, requires_grad=True)
    d = torch.full(shape, 0.7)
    loss = (
        harmlib.ssim_loss(c, d, 0.3, 0.5, 0.7)
        + harmlib.structural_consistency(c, d)
        + harmlib.luminance_consistency(c, d)
    )
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(c.grad).all()


def test_reductions_and_batch(brain_pair):
    x, y, dr = brain_pair
    tx = torch.cat([as_tensor(x[:, :, 40]), as_tensor(x[:, :, 50])])
    ty = torch.cat([as_tensor(y[:, :, 40]), as_tensor(x[:, :, 50])])
    per = harmlib.ssim(tx, ty, data_range=dr, reduction="none")
    assert per.shape == (2, 1)
    assert per[1].item() == pytest.approx(1.0, abs=1e-6) and per[0].item() < 0.95
    assert harmlib.ssim(tx, ty, data_range=dr).item() == pytest.approx(per.mean().item(), abs=1e-6)


def test_stays_fp32_under_bf16_autocast(brain_pair):
    x, y, dr = brain_pair
    tx, ty = as_tensor(x), as_tensor(y)
    ref = harmlib.ssim(tx, ty, data_range=dr)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = harmlib.ssim(tx.bfloat16(), ty.bfloat16(), data_range=dr)
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(ref.item(), abs=5e-3)  # only the bf16 rounding of the inputs differs


def test_mix_with_l1_and_consistency_terms(brain_pair):
    x, y, dr = brain_pair
    tx, ty = as_tensor(x), as_tensor(y)
    l_ssim = harmlib.ssim_loss(tx, ty, data_range=dr)
    l1 = (tx - ty).abs().mean()
    assert harmlib.ssim_l1_loss(tx, ty, lam=1.0, data_range=dr).item() == pytest.approx(l_ssim.item(), abs=1e-6)
    assert harmlib.ssim_l1_loss(tx, ty, lam=0.0, data_range=dr).item() == pytest.approx(l1.item(), abs=1e-6)
    assert harmlib.ssim_l1_loss(tx, ty, lam=0.3, data_range=dr).item() == pytest.approx(
        0.3 * l_ssim.item() + 0.7 * l1.item(), abs=1e-6
    )
    # structure is blind to a positive affine intensity change, luminance is not
    brighter = 1.5 * tx + 0.1 * (tx > 0)
    assert harmlib.structural_consistency(tx, 1.5 * tx, data_range=dr).item() < 1e-3
    assert harmlib.luminance_consistency(tx, brighter, data_range=dr).item() > 0.02
    assert harmlib.structural_consistency(tx, ty, data_range=dr).item() > 0.03  # blur and noise change structure


def test_gaussian_window_matches_scipy_truncation():
    from scipy.ndimage import gaussian_filter1d

    impulse = np.zeros(21)
    impulse[10] = 1
    ref = gaussian_filter1d(impulse, 1.5, truncate=3.5)[5:16]  # scikit-image's 11-tap window
    np.testing.assert_allclose(gaussian_window(11, 1.5).numpy(), ref, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, x_shape, y_shape, match",
    [
        ({"alpha": -1.0}, (1, 1, 32, 32), (1, 1, 32, 32), "alpha"),
        ({"gamma": float("nan")}, (1, 1, 32, 32), (1, 1, 32, 32), "gamma"),
        ({"win_size": 41}, (1, 1, 32, 32), (1, 1, 32, 32), "win_size=41 is larger"),
        ({"win_size": 8}, (1, 1, 32, 32), (1, 1, 32, 32), "odd integer"),
        ({}, (32, 32), (32, 32), "rank 2"),
        ({}, (1, 1, 32, 32), (1, 1, 32, 30), "same shape"),
        ({"data_range": 0.0}, (1, 1, 32, 32), (1, 1, 32, 32), "data_range"),
        ({"reduction": "sum"}, (1, 1, 32, 32), (1, 1, 32, 32), "reduction"),
        ({"sigma": 0.0}, (1, 1, 32, 32), (1, 1, 32, 32), "sigma"),
    ],
)
def test_bad_input_is_one_clear_line(kwargs, x_shape, y_shape, match):
    with pytest.raises(ValueError, match=match) as err:
        harmlib.ssim(torch.rand(x_shape), torch.rand(y_shape), **kwargs)
    assert "\n" not in str(err.value)


def test_nan_input_is_rejected():
    x = torch.rand(1, 1, 32, 32)
    x[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        harmlib.ssim(x, torch.rand(1, 1, 32, 32))


def test_lambda_out_of_range():
    with pytest.raises(ValueError, match="lam=1.5"):
        harmlib.ssim_l1_loss(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16), lam=1.5)
