"""Presets, --set overrides and config files."""

import pytest

from vlvae.config import PRESETS, apply_overrides, load_config, preset, save_config
from vlvae.errors import VLVAEError


def test_paper_preset_is_spec_section_5():
    cfg = preset("paper")
    assert cfg.model.image_size == 112 and cfg.model.latent_dim == 50
    v = cfg.stage1
    assert (v.batch_size, v.steps, v.lr, v.weight_decay, v.lr_decay, v.kl_warmup_steps) == (
        20,
        400_000,
        4e-4,
        1e-7,
        0.999995,
        20_000,
    )
    assert (v.w_x, v.w_y) == (0.02, 200.0)
    assert cfg.model.flow_steps == 6 and cfg.model.flow_hidden == 50


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_yaml(tmp_path, name):
    cfg = preset(name)
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


def test_presets_are_fresh_copies():
    a = preset("cpu")
    a.stage1.steps = 1
    assert preset("cpu").stage1.steps != 1


def test_overrides_set_typed_values():
    cfg = apply_overrides(
        preset("tiny"),
        [
            "stage1.steps=42",
            "model.latent_dim=6",
            "stage1.w_x=0.5",
            "text_posterior.posterior_family=gaussian",
        ]
        + ["seed=3", "vlvae.batch_size=7", "prior.kind=gaussian"],  # the old names, read as the new ones
    )
    assert cfg.stage1.steps == 42 and cfg.model.latent_dim == 6 and cfg.stage1.w_x == 0.5
    assert cfg.text_posterior.posterior_family == "gaussian" and cfg.seed == 3
    assert cfg.stage1.batch_size == 7 and cfg.prior.posterior_family == "gaussian"


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("vlvae.stepz=3", "unknown configuration key 'stage1.stepz'"),
        ("nosuch=1", "unknown configuration key 'nosuch'"),
        ("vlvae.steps=abc", "needs an integer"),
        ("vlvae.steps", "needs key=value"),
        ("vlvae=3", "is a section"),
    ],
)
def test_bad_overrides_raise_one_clear_error(override, fragment):
    with pytest.raises(VLVAEError, match=fragment):
        apply_overrides(preset("tiny"), [override])


def test_unknown_preset():
    with pytest.raises(VLVAEError, match="unknown preset 'gpu'"):
        preset("gpu")


def test_corrupt_config_file(tmp_path):
    (tmp_path / "config.yaml").write_text("vlvae: [unclosed")
    with pytest.raises(VLVAEError, match="not a readable config"):
        load_config(tmp_path / "config.yaml")
    with pytest.raises(VLVAEError, match="missing"):
        load_config(tmp_path / "nothing.yaml")


# ----------------------------------------------------------------------------- a method's own knobs


def test_a_methods_knobs_are_read_checked_and_saved_under_method(tmp_path):
    from vlvae.methods.jmvae import JMVAEConfig

    cfg = apply_overrides(preset("tiny"), ["method.name=jmvae", "method.alpha=0.3"])
    assert cfg.method == JMVAEConfig(name="jmvae", alpha=0.3)
    save_config(cfg, tmp_path / "config.yaml")
    assert "alpha: 0.3" in (tmp_path / "config.yaml").read_text()
    assert load_config(tmp_path / "config.yaml") == cfg
    with pytest.raises(VLVAEError, match=r"'method.alpha' must be at least 0, got -1"):
        apply_overrides(preset("tiny"), ["method.name=jmvae", "method.alpha=-1"])
    # The paper's VLVAE declares no knob: one line naming the keys there are.
    with pytest.raises(VLVAEError, match=r"unknown configuration key 'method.alpha'.*declares no knob"):
        apply_overrides(preset("tiny"), ["method.alpha=0.3"])
    assert "alpha" not in str(preset("tiny").method)


def test_old_configs_with_every_methods_alpha_keep_loading(tmp_path):
    """Before methods declared their knobs, every run's method section held JMVAE's alpha."""
    save_config(preset("tiny"), tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text()
    assert "method:\n  name: vlvae\n" in text
    for name, kept in (("vlvae", False), ("telbo", False), ("jmvae", True)):
        (tmp_path / f"{name}.yaml").write_text(
            text.replace("method:\n  name: vlvae\n", f"method:\n  name: {name}\n  alpha: 0.25\n")
        )
        method = load_config(tmp_path / f"{name}.yaml").method
        assert method.name == name and (getattr(method, "alpha", None) == 0.25) == kept


def test_with_method_gives_each_method_the_knobs_it_declares():
    from vlvae.config import split_method_overrides, with_method

    knobs, rest = split_method_overrides(["method.alpha=0.5", "vlvae.steps=3", "method.name=telbo"])
    assert knobs == ["method.alpha=0.5"] and rest == ["vlvae.steps=3", "method.name=telbo"]
    base = preset("tiny")
    assert with_method(base, "jmvae", knobs).method.alpha == 0.5
    assert with_method(base, "telbo", knobs).method.name == "telbo"
    assert base.method.name == "vlvae"  # the original is not changed
