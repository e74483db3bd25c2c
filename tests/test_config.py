from __future__ import annotations

import dataclasses

import pytest

from harmlib.config import PROFILES, ConfigError, load_config, parse_overrides, profile_path


@pytest.mark.parametrize("name", PROFILES)
def test_every_profile_loads(name):
    cfg = load_config(name)
    assert cfg.profile == name
    assert str(cfg.run_dir) == f"runs/{name}"


def test_profiles_differ_in_resolution():
    assert [load_config(p).data.voxel_mm for p in ("tiny", "cpu", "paper")] == [4, 2, 1]


def test_overrides_change_single_fields_and_ignore_none():
    cfg = load_config("cpu", {"ssim.alpha": 0.5, "ssim.gamma": 2, "seed": 3, "ssim.beta": None})
    assert (cfg.ssim.alpha, cfg.ssim.beta, cfg.ssim.gamma, cfg.seed) == (0.5, 1.0, 2.0, 3)
    assert isinstance(cfg.ssim.gamma, float)  # papermill passes 2, the field is a float


def test_config_is_frozen_and_replace_makes_a_new_one():
    cfg = load_config("tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.ssim.alpha = 2.0  # type: ignore[misc]
    new = cfg.replace({"ssim.alpha": 2.0})
    assert new.ssim.alpha == 2.0 and cfg.ssim.alpha == 1.0


def test_user_profile_file(tmp_path):
    text = profile_path("cpu").read_text().replace("alpha: 1.0", "alpha: 0.25")
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    assert load_config(path).ssim.alpha == 0.25


def test_parse_overrides():
    assert parse_overrides("ssim.alpha=0.5, seed=3,runtime.device=cpu") == {
        "ssim.alpha": 0.5,
        "seed": 3,
        "runtime.device": "cpu",
    }
    with pytest.raises(ConfigError, match="field=value"):
        parse_overrides("alpha")


@pytest.mark.parametrize(
    "profile, overrides, match",
    [
        ("huge", None, "unknown profile 'huge'; use one of tiny, cpu, paper"),
        ("missing.yaml", None, "profile file missing.yaml does not exist"),
        ("cpu", {"ssim.alpah": 1.0}, "unknown parameter 'ssim.alpah'; known fields in ssim: alpha"),
        ("cpu", {"epochs": 1}, "unknown parameter 'epochs'"),
        ("cpu", {"ssim.alpha": -0.5}, "parameter 'ssim.alpha': exponents must be finite and >= 0"),
        ("cpu", {"ssim.win_size": 10}, "parameter 'ssim.win_size': use an odd integer"),
        ("cpu", {"ssim.lam": 2}, "parameter 'ssim.lam'"),
        ("cpu", {"ssim.gamma": "high"}, "parameter 'ssim.gamma': expected float"),
        ("cpu", {"data.voxel_mm": 3}, "parameter 'data.voxel_mm': use 1, 2 or 4"),
        ("cpu", {"runtime.amp": "fp8"}, "parameter 'runtime.amp'"),
        ("cpu", {"ssim": 3}, "parameter 'ssim' is a section"),
    ],
)
def test_bad_profile_or_parameter_is_one_clear_line(profile, overrides, match):
    with pytest.raises(ConfigError, match=match) as err:
        load_config(profile, overrides)
    assert "\n" not in str(err.value)


def test_broken_yaml_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("ssim: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_config(bad)


def test_cli_reports_a_bad_profile_in_one_line(capsys):
    from harmlib.cli import main

    assert main(["reproduce", "--profile", "huge", "--no-book"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "harmlib: error: unknown profile 'huge'; use one of tiny, cpu, paper or the path of a YAML profile"


def test_exponent_without_a_dot_is_a_float():
    """YAML 1.1 reads 1e-3 as a string; a learning rate written that way is still a number."""
    cfg = load_config("cpu", parse_overrides("harmonizer.train.lr=1e-3"))
    assert cfg.harmonizer.train.lr == pytest.approx(1e-3)


def _ruled_leaves(cls, prefix=""):
    """(dotted path, field) of every field with a rule, in every section of the config."""
    import typing

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _ruled_leaves(hints[f.name], f"{prefix}{f.name}.")
        elif "rule" in f.metadata:
            yield f"{prefix}{f.name}", f, hints[f.name]


def test_every_ruled_field_names_its_full_path_when_broken():
    """A bad value anywhere (drit.train.iterations, gmvae.weights.rec, ...) is named by its full dotted path,
    whichever section the field's class serves (TrainConfig serves three)."""
    from harmlib.config import Config

    leaves = list(_ruled_leaves(Config))
    assert len(leaves) > 60 and {"drit.train.iterations", "gmvae.train.iterations", "harmonizer.weights.rec"} <= {
        p for p, _, _ in leaves
    }
    for path, f, typ in leaves:
        ok, _ = f.metadata["rule"]
        candidates = {int: [0, -1, 3, 10**9], float: [-1.0, 0.0, 1e9, float("nan")], str: ["nope", ""]}[typ]
        bad = next(v for v in candidates if not ok(v))
        with pytest.raises(ConfigError, match=rf"parameter '{path}':"):
            load_config("tiny", {path: bad})


@pytest.mark.parametrize(
    "override, path",
    [
        ({"drit.train.warmup": 10**6}, "drit.train.warmup"),
        ({"harmonizer.landmark_curve": True, "harmonizer.residual": False}, "harmonizer.landmark_curve"),
        ({"drit.site_field_mm": 0, "drit.weights.field": 1.0}, "drit.weights.field"),
        ({"gmvae.temp_min": 2.0}, "gmvae.temp_min"),
        ({"gmvae.field_mm": 12.0}, "gmvae.field_mm"),
    ],
)
def test_a_rule_across_fields_names_the_full_path(override, path):
    with pytest.raises(ConfigError, match=rf"parameter '{path}':"):
        load_config("tiny", override)
