"""Presets, --set overrides and config files."""

import subprocess
import sys

import lightning as L
import pytest
from lightning.pytorch.accelerators import AcceleratorRegistry
from lightning.pytorch.strategies import StrategyRegistry
from omegaconf import OmegaConf

from vlvae.config import (
    ACCELERATORS,
    HARDWARE_KEYS,
    PRECISIONS,
    PRESETS,
    STRATEGIES,
    apply_hardware_overrides,
    apply_overrides,
    identity_differences,
    load_config,
    preset,
    save_config,
    split_method_overrides,
    with_hardware,
    with_method,
    world_size_of,
)
from vlvae.errors import VLVAEError
from vlvae.methods.jmvae import JMVAEConfig


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


def test_old_configs_without_a_caption_judge_section_read_the_classifiers(tmp_path):
    """Before the caption judge had a section, it trained with the ``classifier`` one: an old
    config.yaml reads that back; a config that has the section keeps its own."""
    cfg = preset("cpu")
    assert cfg.caption_judge != cfg.classifier
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    old = OmegaConf.load(tmp_path / "config.yaml")
    del old["caption_judge"]
    OmegaConf.save(old, tmp_path / "old.yaml")
    assert "caption_judge" not in (tmp_path / "old.yaml").read_text()
    loaded = load_config(tmp_path / "old.yaml")
    assert loaded.caption_judge == cfg.classifier and loaded.classifier == cfg.classifier


def test_a_judges_precision_is_run_or_one_of_lightnings(tmp_path):
    """``classifier.precision`` defaults to the run's (``run``); a Lightning precision is kept and saved;
    anything else is refused naming the allowed values; a config saved without the key (before it
    existed) loads with ``run``."""
    cfg = apply_overrides(preset("tiny"), ["caption_judge.precision=bf16-mixed"])
    assert cfg.caption_judge.precision == "bf16-mixed" and preset("tiny").classifier.precision == "run"
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    with pytest.raises(VLVAEError, match="classifier.precision.*32-true"):
        apply_overrides(cfg, ["classifier.precision=fp8"])
    old = OmegaConf.load(tmp_path / "config.yaml")
    del old["caption_judge"]["precision"]
    OmegaConf.save(old, tmp_path / "old.yaml")
    assert load_config(tmp_path / "old.yaml").caption_judge.precision == "run"


@pytest.mark.parametrize("key", ["refine_channels", "encoder_channels"])
def test_old_configs_without_a_later_model_key_load_as_the_same_run(tmp_path, key):
    """A run folder written before a later model key (``refine_channels``, ``encoder_channels``) existed
    has no such key: it loads with the key's default (off), and the run's identity is unchanged, so
    ``reproduce`` still continues it."""
    cfg = preset("cpu")
    save_config(cfg, tmp_path / "config.yaml")
    old = OmegaConf.load(tmp_path / "config.yaml")
    del old["model"][key]
    OmegaConf.save(old, tmp_path / "old.yaml")
    assert key not in (tmp_path / "old.yaml").read_text()
    loaded = load_config(tmp_path / "old.yaml")
    assert getattr(loaded.model, key) == 0 and identity_differences(loaded, cfg) == []
    changed = apply_overrides(cfg, [f"model.{key}=8"])
    assert identity_differences(loaded, changed) == [f"model.{key}: 0 in the run, 8 now"]


def test_with_method_gives_each_method_the_knobs_it_declares():
    knobs, rest = split_method_overrides(["method.alpha=0.5", "vlvae.steps=3", "method.name=telbo"])
    assert knobs == ["method.alpha=0.5"] and rest == ["vlvae.steps=3", "method.name=telbo"]
    base = preset("tiny")
    assert with_method(base, "jmvae", knobs).method.alpha == 0.5
    assert with_method(base, "telbo", knobs).method.name == "telbo"
    assert base.method.name == "vlvae"  # the original is not changed


# ----------------------------------------------------------------------------- hardware keys


def _trainer(**kwargs):
    return L.Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_stated_precision_builds_a_lightning_trainer(precision):
    """The project's list of precisions (no private Lightning names) is what Lightning accepts."""
    assert _trainer(accelerator="cpu", devices=1, precision=precision).precision is not None


def test_a_precision_lightning_refuses_is_refused_by_its_trainer_too():
    """The check above can fail: Lightning's Trainer refuses a name it does not know."""
    with pytest.raises(ValueError, match="is invalid"):
        _trainer(accelerator="cpu", devices=1, precision="12-bits")


def test_every_stated_accelerator_and_strategy_is_lightnings():
    registered = AcceleratorRegistry.available_accelerators()
    # "gpu" is Lightning's alias of the GPU it finds (cuda or mps), "auto" its choice: not registry names.
    assert set(ACCELERATORS) - {"auto", "gpu"} <= set(registered)
    assert set(STRATEGIES) - {"auto"} <= set(StrategyRegistry.available_strategies())
    for strategy in STRATEGIES:
        trainer = _trainer(accelerator="cpu", devices=2, strategy=strategy)
        assert trainer.world_size == 2


def test_reading_a_config_needs_no_lightning():
    code = "import sys, vlvae.config; print('lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_devices_take_a_number_or_auto_and_the_hardware_keys_round_trip(tmp_path):
    cfg = apply_overrides(
        preset("tiny"), ["devices=auto", "num_nodes=2", "strategy=ddp", "precision=bf16-mixed"]
    )
    assert (cfg.devices, cfg.num_nodes, cfg.strategy, cfg.precision) == ("auto", 2, "ddp", "bf16-mixed")
    assert world_size_of(cfg) is None
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    cfg = apply_overrides(preset("tiny"), ["devices=4", "num_nodes=2"])
    assert cfg.devices == 4 and world_size_of(cfg) == 8
    (tmp_path / "quoted.yaml").write_text(
        (tmp_path / "config.yaml").read_text().replace("devices: auto", "devices: '2'")
    )
    assert load_config(tmp_path / "quoted.yaml").devices == 2


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("devices=0", "'devices' must be at least 1, got 0"),
        ("devices=many", "'devices' must be an integer at least 1 or auto, got 'many'"),
        ("devices=2.5", "'devices' must be an integer at least 1 or auto, got 2.5"),
        ("devices=true", "'devices' must be an integer at least 1 or auto, got True"),
        ("num_nodes=0", "'num_nodes' must be at least 1"),
        ("num_nodes=1.5", "'num_nodes' needs an integer"),
        ("strategy=fsdp", "'strategy' must be one of auto, ddp, ddp_find_unused_parameters_true"),
        ("strategy=ddp_spawn", "'strategy' must be one of"),
        ("precision=transformer-engine", "'precision' must be one of"),
        ("precision=64-true", "'precision' must be one of 32-true, bf16-mixed, 16-mixed"),
        ("accelerator=quantum", "'accelerator' must be one of auto, cpu, gpu"),
    ],
)
def test_bad_hardware_keys_are_refused_in_one_line(override, fragment):
    with pytest.raises(VLVAEError) as exc:
        apply_overrides(preset("tiny"), [override])
    assert fragment in str(exc.value) and "\n" not in str(exc.value)


def test_a_global_batch_that_does_not_split_over_the_processes_is_refused():
    """batch_size is the global batch: 20 (the paper's) splits over 4 processes, not over 3 or 2 x 3."""
    assert apply_overrides(preset("paper"), ["devices=4"]).stage1.batch_size == 20
    with pytest.raises(VLVAEError) as exc:
        apply_overrides(preset("paper"), ["devices=3"])
    message = str(exc.value)
    assert message == (
        "configuration key 'stage1.batch_size' is the global batch, split over 3 processes (devices=3 x "
        "num_nodes=1), but 20 is not a multiple of 3; set stage1.batch_size to a multiple of 3 (e.g. 18 "
        "or 21), or choose devices and num_nodes whose product divides 20"
    )
    with pytest.raises(
        VLVAEError, match=r"'prior.batch_size' .* split over 6 processes \(devices=2 x num_nodes=3\)"
    ):
        apply_overrides(
            preset("tiny"),
            ["devices=2", "num_nodes=3", "stage1.batch_size=12", "text_posterior.batch_size=6"],
        )
    # The judge fits in one process: its batch is not split.
    assert (
        apply_overrides(preset("tiny"), ["devices=2", "classifier.batch_size=7"]).classifier.batch_size == 7
    )
    # Fixed in the same command: the new batch is checked against the new world size.
    assert apply_overrides(
        preset("paper"), ["devices=3", *(f"{s}.batch_size=21" for s in ("stage1", "text_posterior", "prior"))]
    )


def test_identity_leaves_out_only_the_hardware_keys():
    assert set(HARDWARE_KEYS) == {
        "accelerator",
        "devices",
        "num_nodes",
        "strategy",
        "precision",
        "num_workers",
        "logger",
    }
    tiny = preset("tiny")
    moved = apply_overrides(
        tiny,
        ["devices=4", "num_nodes=2", "strategy=ddp", "precision=bf16-mixed", "num_workers=3", "logger=wandb"],
    )
    assert identity_differences(tiny, moved) == []
    other = apply_overrides(moved, ["stage1.steps=9", "seed=4"])
    assert identity_differences(tiny, other) == [
        "seed: 0 in the run, 4 now",
        "stage1.steps: 6 in the run, 9 now",
    ]
    assert identity_differences(tiny, apply_overrides(tiny, ["method.name=jmvae"])) == [
        "method.name: 'vlvae' in the run, 'jmvae' now",
        "method.alpha: (absent) in the run, 0.1 now",
    ]
    assert with_hardware(tiny, moved).devices == 4 and with_hardware(tiny, moved).stage1 == tiny.stage1


def test_hardware_overrides_refuse_every_other_key():
    cfg = apply_hardware_overrides(preset("tiny"), ["devices=2", "precision=bf16-mixed"])
    assert (cfg.devices, cfg.precision) == (2, "bf16-mixed")
    with pytest.raises(VLVAEError, match="--set stage1.steps would change what the run computes"):
        apply_hardware_overrides(preset("tiny"), ["devices=2", "stage1.steps=3"])
